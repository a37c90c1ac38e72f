package runlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
)

func TestCreate(t *testing.T) {
	const secret = "hsm:aes256:SENTINELSENTINEL"
	dir := filepath.Join(t.TempDir(), "kmsctl")
	if err := os.MkdirAll(dir, 0o755); err != nil { // an existing, too open directory
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	l, err := Create(dir, now, redact.New(secret))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(l.Path), "20261127T050000Z-") || !strings.HasSuffix(l.Path, ".log") || filepath.Dir(l.Path) != filepath.Join(dir, "runs") {
		t.Errorf("path %s", l.Path)
	}
	// A secret split across writes is still masked.
	for _, s := range []string{`{"msg":"key hsm:aes256:SENT`, `INELSENTINEL end"}` + "\n"} {
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"msg":"key [REDACTED] end"}`+"\n" {
		t.Errorf("log = %q", b)
	}
	for path, want := range map[string]os.FileMode{l.Path: 0o600, dir: 0o700, filepath.Dir(l.Path): 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	// Two runs in the same second get different files.
	l2, err := Create(dir, now, redact.New())
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if l2.Path == l.Path {
		t.Error("two runs share a log file")
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"20261125T000000Z-aa", "20261126T000000Z-bb", "20261127T000000Z-cc", "20261127T000001Z-dd"} {
		if err := os.WriteFile(filepath.Join(dir, n+".log"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := prune(dir, 2); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(left) != 2 || filepath.Base(left[0]) != "20261127T000000Z-cc.log" || filepath.Base(left[1]) != "20261127T000001Z-dd.log" {
		t.Errorf("left %q, want the two newest", left)
	}
}

// TestWriteAfterClose: once closed (a second Ctrl-C closes the log while
// the run's goroutines may still log), writes are dropped without error
// and a second Close does nothing.
func TestWriteAfterClose(t *testing.T) {
	l, err := Create(t.TempDir(), time.Now(), redact.New())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Write([]byte("after\n")); n != 6 || err != nil {
		t.Errorf("write after close: %d, %v", n, err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if b, _ := os.ReadFile(l.Path); string(b) != "before\n" {
		t.Errorf("log holds %q", b)
	}
}

// TestContinue: a resumed run appends to its own log, masked; an ID that
// is a path is refused.
func TestContinue(t *testing.T) {
	const secret = "hsm:aes256:SENTINELSENTINEL"
	dir := t.TempDir()
	l, err := Create(dir, time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC), redact.New(secret))
	if err != nil {
		t.Fatal(err)
	}
	l.Write([]byte("first\n"))
	l.Close()
	c, err := Continue(dir, l.ID, redact.New(secret))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("second " + secret + "\n"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(l.Path); c.Path != l.Path || string(b) != "first\nsecond [REDACTED]\n" {
		t.Errorf("%s: %q", c.Path, b)
	}
	if _, err := Continue(dir, "../x", redact.New()); err == nil {
		t.Errorf("Continue with a path for an ID succeeded")
	}
}
