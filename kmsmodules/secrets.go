package kmsmodules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// keySource says where one key is, in the order of precedence: the
// environment variable, then a file (the command line's, then the
// inventory's), then a command. The environment comes first because it is
// what the vendor's own CLI reads, and a value set for one shell is the
// most specific choice an operator can make; a file comes before a command
// because it needs nothing to run.
type keySource struct {
	what    string   // "admin API key", "HSM key"
	env     string   // environment variable name
	envVal  string   // its value ("" = unset)
	flag    string   // the command line's file ("" = unset)
	file    string   // the inventory's file ("" = unset)
	fileVar string   // the variable naming file
	command []string // the inventory's command (nil = unset)
	cmdVar  string   // the variable naming command
}

// apiKeySource is where host's admin API key is.
func (m *mods) apiKeySource(n inventory.KMSNode) keySource {
	return keySource{what: "admin API key", env: inventory.EnvAPIKey, envVal: m.getenv(inventory.EnvAPIKey), flag: m.o.APIKeyFile,
		file: n.APIKeyFile, fileVar: inventory.VarAPIKeyFile, command: n.APIKeyCommand, cmdVar: inventory.VarAPIKeyCommand}
}

// hsmKeySource is where host's HSM key is.
func (m *mods) hsmKeySource(n inventory.KMSNode) keySource {
	return keySource{what: "HSM key", env: inventory.EnvHSMKey, envVal: m.getenv(inventory.EnvHSMKey),
		file: n.HSMKeyFile, fileVar: inventory.VarHSMKeyFile, command: n.HSMKeyCommand, cmdVar: inventory.VarHSMKeyCommand}
}

func (m *mods) getenv(name string) string {
	if m.o.Getenv == nil {
		return ""
	}
	return m.o.Getenv(name)
}

// memoKey identifies a key read once per run (Env.Memo): the same file or
// command is read or run once for every host.
type memoKey struct{ what, where string }

type memoEntry struct {
	once  sync.Once
	value string
	err   error
}

// read returns the key's text and where it came from. A file or command is
// read once per run when env has a Memo.
func (s keySource) read(ctx context.Context, env *tasks.Env) (string, string, error) {
	var where string
	var get func() (string, error)
	switch {
	case s.envVal != "":
		v := strings.TrimSpace(s.envVal)
		addKey(env, v)
		return v, "$" + s.env, nil
	case s.flag != "":
		where = "--api-key-file " + s.flag
		get = func() (string, error) { return readKeyFile(s.flag) }
	case s.file != "":
		where = s.fileVar + " " + s.file
		get = func() (string, error) { return readKeyFile(s.file) }
	case len(s.command) > 0:
		where = s.cmdVar + " (" + s.command[0] + ")"
		get = func() (string, error) { return runKeyCommand(ctx, s.command) }
	default:
		return "", "", fmt.Errorf("no %s: export %s, or name a file only you can read (chmod 600 FILE) with %s, or a command printing it with %s",
			s.what, s.env, s.fileVar, s.cmdVar)
	}
	// Masked from the moment it is read: the run's redactor knows only the
	// environment's keys and the inventory's secrets.
	getSecret := func() (string, error) {
		v, err := get()
		addKey(env, v)
		return v, err
	}
	if env.Memo == nil {
		v, err := getSecret()
		return v, where, wrapKeyErr(s.what, where, err)
	}
	e, _ := env.Memo.LoadOrStore(memoKey{s.what, where}, &memoEntry{})
	me := e.(*memoEntry)
	me.once.Do(func() { me.value, me.err = getSecret() })
	return me.value, where, wrapKeyErr(s.what, where, me.err)
}

// addKey registers a key's text with the run's masking (Env.AddSecret),
// and its payload without the type prefix ("k1:", "hsm:aes256:"), which a
// task could show on its own. Registered as soon as it is read, even
// though no module shows a key, so that nothing that quotes it later (a
// task printing the file, a command's output, a debug) can show it.
func addKey(env *tasks.Env, text string) {
	env.AddSecret(text)
	if i := strings.LastIndexByte(text, ':'); i >= 0 {
		env.AddSecret(text[i+1:])
	}
}

func wrapKeyErr(what, where string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("read the %s from %s: %w", what, where, err)
}

// readKeyFile reads a key from a regular file that only its owner may read
// or write (0600 or stricter); anything else is refused.
func readKeyFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", name)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", &refusal{fmt.Sprintf("%s has mode %04o: others may read the key; run chmod 600 %s", name, perm, name)}
	}
	b, err := readLimited(f)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}

// maxKeyText bounds what is read from a key file or command.
const maxKeyText = 64 << 10

func readLimited(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxKeyText+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyText {
		return nil, fmt.Errorf("more than %d bytes: not a key", maxKeyText)
	}
	return b, nil
}

// runKeyCommand runs argv on this machine, without a shell and with no
// secret in its arguments, and returns its standard output trimmed. Its
// standard error is shown on failure (the key is its standard output).
func runKeyCommand(ctx context.Context, argv []string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		if msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	if stdout.Len() > maxKeyText {
		return "", fmt.Errorf("printed more than %d bytes: not a key", maxKeyText)
	}
	s := strings.TrimSpace(stdout.String())
	if s == "" {
		return "", errors.New("printed nothing")
	}
	return s, nil
}

// apiKey returns the admin API key for host n.
func (m *mods) apiKey(ctx context.Context, env *tasks.Env, n inventory.KMSNode) (kms.APIKey, error) {
	text, where, err := m.apiKeySource(n).read(ctx, env)
	if err != nil {
		return kms.APIKey{}, err
	}
	k, err := kms.ParseAPIKey(text)
	if err != nil {
		return kms.APIKey{}, fmt.Errorf("admin API key from %s: %w", where, err)
	}
	return k, nil
}

// hsmKey returns the operator's HSM key for host n.
func (m *mods) hsmKey(ctx context.Context, env *tasks.Env, n inventory.KMSNode) (hsm.Key, error) {
	text, where, err := m.hsmKeySource(n).read(ctx, env)
	if err != nil {
		return hsm.Key{}, err
	}
	k, err := hsm.Parse(text)
	if err != nil {
		return hsm.Key{}, fmt.Errorf("HSM key from %s: %w", where, err)
	}
	return k, nil
}

// CheckAPIKey reads and parses node n's admin API key where the modules
// look for it (the environment, --api-key-file, the inventory's
// kms_api_key_file), so that a key that is missing, unreadable, malformed
// or in a file others may read (a refusal) is found on this machine before
// any host is asked, instead of looking like a node whose API is down. A
// key given by kms_api_key_command is not run here: the first module that
// needs it runs it once.
func CheckAPIKey(o Options, n inventory.KMSNode) error {
	m := &mods{o: o}
	s := m.apiKeySource(n)
	if s.envVal == "" && s.flag == "" && s.file == "" && len(s.command) > 0 {
		return nil
	}
	_, err := m.apiKey(context.Background(), &tasks.Env{}, n)
	return err
}

// OperatorHSMFingerprint reads the operator's HSM key for node n where the
// modules look for it (MINIO_KMS_HSM_KEY, kms_hsm_key_file,
// kms_hsm_key_command, run once here) and returns its fingerprint only:
// the key stays in this function.
func OperatorHSMFingerprint(ctx context.Context, o Options, n inventory.KMSNode) (string, error) {
	m := &mods{o: o}
	k, err := m.hsmKey(ctx, &tasks.Env{}, n)
	if err != nil {
		return "", err
	}
	return k.Fingerprint(), nil
}
