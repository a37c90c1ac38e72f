package remote_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/kmsctl/kmsctl/tasks"
	"github.com/rs/zerolog"
)

// The client and every decorator satisfy the task engine's seam.
var (
	_ tasks.Conn  = (*remote.Client)(nil)
	_ tasks.Conn  = remote.Become(nil, "root")
	_ tasks.Conn  = remote.Redact(nil, nil)
	_ tasks.Conn  = remote.Trace(nil, zerolog.Nop())
	_ remote.Conn = tasks.Conn(nil)
)

// env is an isolated client environment: HOME in a temp dir (so the
// developer's ~/.ssh is never read), no agent, a client key the test
// servers accept, and a known_hosts file.
type env struct {
	t          *testing.T
	home       string
	key        *sshtest.Key
	keyFile    string
	knownHosts string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	key := sshtest.GenerateKey(t)
	return &env{t: t, home: home, key: key, keyFile: sshtest.ClientKeyFile(t, key, ""), knownHosts: filepath.Join(home, "known_hosts")}
}

// server starts a test server accepting the env's key.
func (e *env) server(cfg sshtest.Config) *sshtest.Server {
	e.t.Helper()
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, e.key.PublicKey())
	return sshtest.Start(e.t, cfg)
}

// trust writes known_hosts lines to the env's known_hosts file.
func (e *env) trust(lines ...string) {
	e.t.Helper()
	sshtest.WriteKnownHosts(e.t, e.knownHosts, lines...)
}

// opts returns Options reaching s with the env's key and known_hosts file.
func (e *env) opts(s *sshtest.Server) remote.Options {
	return remote.Options{
		Alias:           "target",
		HostName:        "127.0.0.1",
		Port:            s.Port(),
		User:            "tester",
		IdentityFiles:   []string{e.keyFile},
		SSHConfigFile:   "none",
		KnownHostsFiles: []string{e.knownHosts},
		AgentSocket:     "none",
		ConnectTimeout:  10 * time.Second,
	}
}

// dial dials with o and registers Close.
func (e *env) dial(o remote.Options) *remote.Client {
	e.t.Helper()
	c, err := remote.Dial(ctx(e.t), o)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// connected starts a trusted server and returns it with a client.
func connected(t *testing.T, cfg sshtest.Config) (*env, *sshtest.Server, *remote.Client) {
	t.Helper()
	e := newEnv(t)
	s := e.server(cfg)
	e.trust(s.KnownHostsLine())
	return e, s, e.dial(e.opts(s))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// run runs cmd and returns stdout, stderr and the error.
func run(t *testing.T, c remote.Conn, cmd, stdin string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	var in *strings.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	var err error
	if in != nil {
		err = c.Run(ctx(t), cmd, in, &out, &errb)
	} else {
		err = c.Run(ctx(t), cmd, nil, &out, &errb)
	}
	return out.String(), errb.String(), err
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tempFiles lists upload temp files left in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.kmsctl-tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
