package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/rs/zerolog"
)

func TestBecomeWrapsCommandsInSudo(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	root := remote.Become(c, "")
	if out, _, err := run(t, root, "echo 'as root'", ""); err != nil || out != "as root\n" {
		t.Fatalf("become root: %q %v", out, err)
	}
	other := remote.Become(c, "minkms-user")
	if _, _, err := run(t, other, "true", ""); err != nil {
		t.Fatal(err)
	}
	cmds := s.Commands()
	if want := `sudo -n -- sh -c 'echo '\''as root'\'''`; cmds[0] != want {
		t.Errorf("root command = %q, want %q", cmds[0], want)
	}
	if want := "sudo -n -u minkms-user -- sh -c true"; cmds[1] != want {
		t.Errorf("user command = %q, want %q", cmds[1], want)
	}
}

func TestBecomePasswordRequired(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoPasswordRequired})
	_, _, err := run(t, remote.Become(c, "root"), "true", "")
	var be *remote.BecomeError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "NOPASSWD") || !strings.Contains(err.Error(), "a password is required") {
		t.Fatalf("sudo needing a password = %v", err)
	}
	var st interface{ ExitStatus() int }
	if !errors.As(err, &st) || st.ExitStatus() != 1 {
		t.Error("become error lost the exit status")
	}
	var bf interface{ BecomeFailed() bool } // the marker tasks checks before the exit status
	if !errors.As(err, &bf) || !bf.BecomeFailed() {
		t.Error("become error does not report BecomeFailed")
	}
}

func TestBecomeFileOperations(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	b := remote.Become(c, "root")
	dir := t.TempDir()
	target := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 200<<10)
	sum, err := b.Upload(ctx(t), target, bytes.NewReader(data), 0o640, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum != sha(data) {
		t.Errorf("sum = %s", sum)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v", fi.Mode())
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	staged, _ := filepath.Glob("/tmp/.kmsctl-stage-*")
	for _, p := range staged {
		if got, _ := os.ReadFile(p); bytes.Equal(got, data) {
			t.Errorf("staging copy %s left behind", p)
		}
	}
	installed := false
	for _, cmd := range s.Commands() {
		installed = installed || (strings.HasPrefix(cmd, "sudo -n -- sh -c ") && strings.Contains(cmd, "mv -f"))
	}
	if !installed {
		t.Errorf("no sudo install step among %q", s.Commands())
	}

	fi, err := b.Stat(ctx(t), target)
	if err != nil || fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o640 || fi.Name() != "config.yaml" {
		t.Fatalf("stat = %+v %v", fi, err)
	}
	if got, err := b.Checksum(ctx(t), target); err != nil || got != sum {
		t.Fatalf("checksum = %s %v", got, err)
	}
	var buf bytes.Buffer
	if err := b.Download(ctx(t), target, &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %v", err)
	}
	if err := b.Remove(ctx(t), target); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx(t), target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of removed file = %v", err)
	}
	if err := b.Remove(ctx(t), target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("remove of missing file = %v", err)
	}
}

func TestBecomeOtherUserUploadStreamsThroughSudo(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	b := remote.Become(c, "minkms-user")
	dir := t.TempDir()
	target := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".config.yaml.kmsctl-tmp-stale")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 300<<10)
	sum, err := b.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	if sum != sha(data) {
		t.Errorf("sum = %s", sum)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode())
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	for _, cmd := range s.Commands() {
		if !strings.HasPrefix(cmd, "sudo -n -u minkms-user -- sh -c ") {
			t.Errorf("command not run as the become user: %q", cmd)
		}
	}
}

func TestBecomeUploadChecksumMismatch(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	// The sudo step verifies against the hash of the source; corrupt the
	// staged copy between staging and install by wrapping the Conn.
	dir := t.TempDir()
	target := filepath.Join(dir, "t")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := remote.Become(corruptStage{c}, "root")
	_, err := b.Upload(ctx(t), target, strings.NewReader("the real content"), 0o600, "")
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("upload = %v", err)
	}
	if readFile(t, target) != "old" {
		t.Error("target replaced despite mismatch")
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// corruptStage appends a byte to every staged file after it was uploaded.
type corruptStage struct{ remote.Conn }

func (c corruptStage) Upload(ctx context.Context, p string, src io.Reader, perm fs.FileMode, owner string) (string, error) {
	sum, err := c.Conn.Upload(ctx, p, src, perm, owner)
	if err == nil {
		f, ferr := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if ferr != nil {
			return "", ferr
		}
		f.WriteString("!")
		f.Close()
	}
	return sum, err
}

// TestSecretNeverLeaks pushes a sentinel secret through Trace(Redact(Become))
// on stdin and by upload, and checks captured output, errors, trace logs
// and every command line the server received.
func TestSecretNeverLeaks(t *testing.T) {
	const secret = "SENTINEL-hsm:aes256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	_, s, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	var logs bytes.Buffer
	log := zerolog.New(&logs).Level(zerolog.DebugLevel)
	conn := remote.Trace(remote.Redact(remote.Become(c, "root"), redact.New(secret)), log)

	var out, errb bytes.Buffer
	if err := conn.Run(ctx(t), "cat; cat >&2 </dev/null; echo done", strings.NewReader(secret), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), redact.Mask) || !strings.Contains(out.String(), "done") {
		t.Errorf("stdout = %q, want the mask and the rest", out.String())
	}
	// A failing command that echoes the secret to stderr.
	out.Reset()
	errb.Reset()
	err := conn.Run(ctx(t), "cat >&2; exit 3", strings.NewReader(secret), &out, &errb)
	var xe *remote.ExitError
	if !errors.As(err, &xe) || xe.ExitStatus() != 3 {
		t.Fatalf("failing command = %v", err)
	}
	// An upload of the secret as file content.
	dir := t.TempDir()
	if _, err := conn.Upload(ctx(t), filepath.Join(dir, "env"), strings.NewReader("MINIO_KMS_HSM_KEY="+secret+"\n"), 0o600, ""); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"stdout": out.String(), "stderr": errb.String(), "error": err.Error(),
		"exit error stderr": xe.Stderr, "trace log": logs.String(),
		"server commands": strings.Join(s.Commands(), "\n"),
	} {
		if strings.Contains(text, secret) || strings.Contains(text, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=") {
			t.Errorf("secret leaked into %s: %q", name, text)
		}
	}
	if !strings.Contains(errb.String(), redact.Mask) {
		t.Errorf("stderr = %q, want the mask", errb.String())
	}
	if !strings.Contains(logs.String(), `"cmd":"cat >&2; exit 3"`) || !strings.Contains(logs.String(), `"exit":3`) {
		t.Errorf("trace log lacks the command or its exit status: %s", logs.String())
	}
	if got := readFile(t, filepath.Join(dir, "env")); !strings.Contains(got, secret) {
		t.Error("uploaded file lost its content (redaction must not touch file data)")
	}
}

func TestTraceMasksCommandLines(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	var logs bytes.Buffer
	conn := remote.Trace(remote.Redact(c, redact.New("tok-123456")), zerolog.New(&logs).Level(zerolog.DebugLevel))
	_, _, err := run(t, conn, "echo tok-123456 >&2; exit 1", "")
	if err == nil || strings.Contains(err.Error(), "tok-123456") {
		t.Errorf("error = %v", err)
	}
	if strings.Contains(logs.String(), "tok-123456") || !strings.Contains(logs.String(), redact.Mask) {
		t.Errorf("trace log = %s", logs.String())
	}
	// The other order, Redact over Trace, masks the trace log as well.
	logs.Reset()
	conn = remote.Redact(remote.Trace(c, zerolog.New(&logs).Level(zerolog.DebugLevel)), redact.New("tok-123456"))
	if _, _, err := run(t, conn, "echo tok-123456 >&2; exit 1", ""); err == nil || strings.Contains(err.Error(), "tok-123456") {
		t.Errorf("error = %v", err)
	}
	if strings.Contains(logs.String(), "tok-123456") || !strings.Contains(logs.String(), redact.Mask) {
		t.Errorf("trace log under Redact = %s", logs.String())
	}
	// Trace at info level logs nothing.
	logs.Reset()
	quiet := remote.Trace(c, zerolog.New(&logs).Level(zerolog.InfoLevel))
	run(t, quiet, "true", "")
	if logs.Len() != 0 {
		t.Errorf("trace logged above debug: %s", logs.String())
	}
}

// lostAfterUpload is a Conn whose connection "drops" after an upload: every
// later command and removal fails, as when the network goes mid-way.
type lostAfterUpload struct{ remote.Conn }

func (lostAfterUpload) Run(context.Context, string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("connection lost")
}
func (lostAfterUpload) Remove(context.Context, string) error { return errors.New("connection lost") }

// A become-root upload interrupted after staging (the staging copy in /tmp
// could not be installed nor removed) leaves no staging copy behind after
// the next upload of the same target: it may hold a secret.
func TestBecomeRootUploadRemovesStagingCopyOfAnInterruptedRun(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	target := filepath.Join(t.TempDir(), "api.key")
	first := randomBytes(t, 4<<10)
	if _, err := remote.Become(lostAfterUpload{c}, "root").Upload(ctx(t), target, bytes.NewReader(first), 0o600, ""); err == nil {
		t.Fatal("upload over a lost connection succeeded")
	}
	if _, err := remote.Become(c, "root").Upload(ctx(t), target, bytes.NewReader([]byte("second")), 0o600, ""); err != nil {
		t.Fatal(err)
	}
	staged, _ := filepath.Glob("/tmp/.kmsctl-stage-*")
	for _, p := range staged {
		if got, _ := os.ReadFile(p); bytes.Equal(got, first) {
			os.Remove(p)
			t.Errorf("staging copy %s of the interrupted upload left behind", p)
		}
	}
}

// TestBecomeOverRedactDownloadsFileDataUnmasked: cmd/kmsctl stacks
// Become(Redact(Trace(client))). Become streams a download through the
// stdout of `cat`; that stream is file data, not output, and must arrive
// unmasked (as Redact's own Download promises), or a fetched file that
// holds a registered secret is corrupted.
func TestBecomeOverRedactDownloadsFileDataUnmasked(t *testing.T) {
	const secret = "SENTINEL-api-key-0123456789"
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	conn := remote.Become(remote.Redact(remote.Trace(c, zerolog.Nop()), redact.New(secret)), "root")
	p := filepath.Join(t.TempDir(), "env")
	data := "MINIO_KMS_API_KEY=" + secret + "\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := conn.Download(ctx(t), p, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != data {
		t.Errorf("downloaded %d bytes that differ from the file (masked?)", buf.Len())
	}
	// Command output is still masked.
	var out bytes.Buffer
	if err := conn.Run(ctx(t), "cat -- "+remote.Quote(p), nil, &out, nil); err != nil || strings.Contains(out.String(), secret) {
		t.Errorf("command output not masked: %v", err)
	}
	// A failing download still reports fs.ErrNotExist.
	if err := conn.Download(ctx(t), p+".missing", io.Discard); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("download of a missing file = %v", err)
	}
}
