package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	sum, err := b.Upload(ctx(t), target, bytes.NewReader(data), "", 0o640, "")
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
	sum, err := b.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", 0o600, "")
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
	// The temp file is checked against the hash of the source; corrupt the
	// bytes on their way to it by wrapping the Conn.
	for _, user := range []string{"root", "minkms-user"} {
		dir := t.TempDir()
		target := filepath.Join(dir, "t")
		if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		b := remote.Become(corruptStdin{c}, user)
		_, err := b.Upload(ctx(t), target, strings.NewReader("the real content"), "", 0o600, "")
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("upload as %s = %v", user, err)
		}
		if readFile(t, target) != "old" {
			t.Errorf("target replaced despite mismatch (as %s)", user)
		}
		if left := tempFiles(t, dir); len(left) != 0 {
			t.Errorf("temp files left (as %s): %v", user, left)
		}
	}
}

// corruptStdin appends a byte to the stdin of every command.
type corruptStdin struct{ remote.Conn }

func (c corruptStdin) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if stdin != nil {
		stdin = io.MultiReader(stdin, strings.NewReader("!"))
	}
	return c.Conn.Run(ctx, cmd, stdin, stdout, stderr)
}

// A sum known in advance is not trusted blindly as become user either: the
// temp file must have it (a local file that changed after it was hashed
// fails the upload), and it is returned in lower case.
func TestBecomeUploadKnownSum(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	for _, user := range []string{"root", "minkms-user"} {
		b := remote.Become(c, user)
		target := filepath.Join(t.TempDir(), "minkms")
		data := randomBytes(t, 10<<10)
		sum, err := b.Upload(ctx(t), target, bytes.NewReader(data), strings.ToUpper(sha(data)), 0o755, "")
		if err != nil || sum != sha(data) {
			t.Fatalf("upload as %s = %s, %v; want %s", user, sum, err, sha(data))
		}
		changed := append([]byte("changed since hashed"), data...)
		_, err = b.Upload(ctx(t), target, bytes.NewReader(changed), sha(data), 0o755, "")
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("upload as %s of a source that changed since hashed = %v", user, err)
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
			t.Errorf("target replaced by a source that differs from its declared hash (as %s)", user)
		}
	}
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
	if _, err := conn.Upload(ctx(t), filepath.Join(dir, "env"), strings.NewReader("MINIO_KMS_HSM_KEY="+secret+"\n"), "", 0o600, ""); err != nil {
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

// lostAfterWrite is a Conn whose connection "drops" after the first command
// that reads stdin (the write step of a become upload): every later command
// fails, as when the network goes mid-way.
type lostAfterWrite struct {
	remote.Conn
	wrote *bool
}

func (c lostAfterWrite) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if *c.wrote {
		return errors.New("connection lost")
	}
	*c.wrote = stdin != nil
	return c.Conn.Run(ctx, cmd, stdin, stdout, stderr)
}

// A become-root upload cut off between writing and installing leaves its
// data (maybe a secret) only in a 0600 temp file next to the target, never
// in /tmp, and the next upload of the same target removes that file (and
// the private temp directory a plain upload cut off left).
func TestBecomeRootUploadInterruptedLeavesOnlyAPrivateTempFile(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	dir := t.TempDir()
	target := filepath.Join(dir, "api.key")
	first := randomBytes(t, 4<<10)
	wrote := false
	if _, err := remote.Become(lostAfterWrite{c, &wrote}, "root").Upload(ctx(t), target, bytes.NewReader(first), "", 0o600, ""); err == nil {
		t.Fatal("upload over a lost connection succeeded")
	}
	left := tempFiles(t, dir)
	if len(left) != 1 {
		t.Fatalf("temp files after the cut: %v; want the one written", left)
	}
	if fi, err := os.Stat(left[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("temp file of the cut upload: %v %v; want mode 0600", fi, err)
	}
	if p := copiesIn(t, os.TempDir(), first); len(p) != 0 {
		t.Errorf("copies of the data in %s: %v", os.TempDir(), p)
	}
	// A plain upload (without become) cut off too: its private directory.
	plain := filepath.Join(dir, ".api.key.kmsctl-tmp-0123456789abcdef")
	if err := os.Mkdir(plain, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "api.key"), first, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Become(c, "root").Upload(ctx(t), target, bytes.NewReader([]byte("second")), "", 0o600, ""); err != nil {
		t.Fatal(err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files of the cut uploads left behind: %v", left)
	}
}

// copiesIn returns the regular files directly in dir that hold data.
func copiesIn(t *testing.T, dir string, data []byte) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && bytes.Equal(got, data) {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	return found
}

// A become-root upload (the env file with the HSM key travels this way)
// puts its data nowhere a hostile local user could predict, pre-create or
// read: not over SFTP as the login user (whose new files are readable by
// others until chmod'ed), not in /tmp, only in a 0600 temp file next to the
// target. A directory pre-created at the predictable /tmp name that earlier
// versions staged under does not stop the upload either.
func TestBecomeRootUploadStagesNowhereButNextToTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "minkms.env")
	data := []byte("MINIO_KMS_HSM_KEY=hsm:aes256:" + hex.EncodeToString(randomBytes(t, 32)) + "\n")
	var during []string // problems seen while the data was on the host but not installed
	_, s, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow, Exec: func(_ context.Context, cmd string, _ io.Reader, _, _ io.Writer) (int, bool) {
		if !strings.Contains(cmd, "mv -f") {
			return 0, false
		}
		// The install step is about to run: the data has landed.
		during = append(during, copiesIn(t, os.TempDir(), data)...)
		temps := tempFiles(t, dir)
		if len(temps) != 1 {
			during = append(during, fmt.Sprintf("temp files next to the target: %v, want one", temps))
		}
		for _, name := range temps {
			fi, err := os.Stat(name)
			if err != nil || fi.Mode().Perm() != 0o600 {
				during = append(during, fmt.Sprintf("temp file %s: %v %v (want 0600)", name, fi.Mode(), err))
			}
		}
		return 0, false
	}})
	id := sha256.Sum256([]byte("target\x00" + target))
	old := "/tmp/.kmsctl-stage-" + hex.EncodeToString(id[:8])
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(old) })

	if _, err := remote.Become(c, "root").Upload(ctx(t), target, bytes.NewReader(data), "", 0o600, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Error("content differs")
	}
	if len(during) != 0 {
		t.Errorf("before the install step: %q", during)
	}
	for _, op := range s.Ops() {
		if op.Kind == sshtest.OpOpen && op.Write {
			t.Errorf("a file was written over SFTP as the login user: %v", op)
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
