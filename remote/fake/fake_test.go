package fake_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

var _ tasks.Conn = (*fake.Conn)(nil)

// recorder is a testing.TB that records failures instead of failing, and
// runs cleanups when asked, so that the fake's own failure reporting can be
// tested.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

type exitStatuser interface{ ExitStatus() int }
type unreachabler interface{ Unreachable() bool }

func run(c *fake.Conn, cmd, stdin string) (string, string, error) {
	var out, errb bytes.Buffer
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	err := c.Run(context.Background(), cmd, in, &out, &errb)
	return out.String(), errb.String(), err
}

func TestScriptedCommands(t *testing.T) {
	c := fake.New(t, "node1")
	c.Expect("systemctl is-active minkms").Stdout("active\n")
	c.Expect("false").Stderr("boom\n").Exit(3)
	c.ExpectMatch(`^cat > /etc/`).Do(func(stdin []byte) (string, string, int) {
		return "got " + string(stdin), "", 0
	})

	if out, _, err := run(c, "systemctl is-active minkms", ""); err != nil || out != "active\n" {
		t.Errorf("is-active: %q %v", out, err)
	}
	out, errOut, err := run(c, "false", "")
	var xs exitStatuser
	if !errors.As(err, &xs) || xs.ExitStatus() != 3 {
		t.Fatalf("false: err %v, want exit status 3", err)
	}
	var xe *fake.ExitError
	if !errors.As(err, &xe) || xe.Cmd != "false" || xe.Stderr != "boom\n" || xe.Host != "node1" {
		t.Errorf("ExitError = %+v", xe)
	}
	if out != "" || errOut != "boom\n" {
		t.Errorf("false: stdout %q stderr %q", out, errOut)
	}
	if out, _, err := run(c, "cat > /etc/x", "secret-on-stdin"); err != nil || out != "got secret-on-stdin" {
		t.Errorf("Do: %q %v", out, err)
	}
	calls := c.Calls()
	if len(calls) != 3 || calls[2].Kind != fake.KindRun || string(calls[2].Stdin) != "secret-on-stdin" || calls[1].Err == nil {
		t.Errorf("Calls() = %+v", calls)
	}
	if got := c.Commands(); strings.Join(got, "|") != "systemctl is-active minkms|false|cat > /etc/x" {
		t.Errorf("Commands() = %q", got)
	}
}

func TestDoCommand(t *testing.T) {
	c := fake.New(t, "node1")
	c.ExpectMatch(`^systemctl (start|stop) `).Times(2).DoCommand(func(cmd string, _ []byte) (string, string, int) {
		return "did " + strings.Fields(cmd)[1] + "\n", "", 0
	})
	for _, verb := range []string{"start", "stop"} {
		if out, _, err := run(c, "systemctl "+verb+" minkms", ""); err != nil || out != "did "+verb+"\n" {
			t.Errorf("%s: %q %v", verb, out, err)
		}
	}
}

func TestUnexpectedAndUnmetExpectations(t *testing.T) {
	r := &recorder{TB: t}
	c := fake.New(r, "node1")
	c.ExpectMatch(`^deploy `).Times(2)
	c.Expect("never run")
	c.Expect("optional").AnyTimes()

	for i := 0; i < 2; i++ {
		if _, _, err := run(c, fmt.Sprintf("deploy %d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := run(c, "deploy 3", "")
	var ue *fake.UnexpectedError
	if !errors.As(err, &ue) || ue.Cmd != "deploy 3" {
		t.Errorf("third deploy: %v, want *UnexpectedError", err)
	}
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], `unexpected command "deploy 3"`) || !strings.Contains(r.errs[0], `"never run"`) {
		t.Errorf("test failures = %q, want one naming the command and listing expectations", r.errs)
	}
	r.finish()
	if len(r.errs) != 2 || !strings.Contains(r.errs[1], `expected command not run: "never run"`) {
		t.Errorf("after cleanup: %q, want the unmet expectation reported (and only it)", r.errs)
	}
}

func TestUnreachableAndClosed(t *testing.T) {
	c := fake.New(t, "node2")
	c.SetUnreachable(true)
	ctx := context.Background()
	_, err1 := c.Stat(ctx, "/x")
	err2 := c.Run(ctx, "true", nil, nil, nil)
	_, err3 := c.Upload(ctx, "/x", strings.NewReader("a"), "", 0o600, "")
	for i, err := range []error{err1, err2, err3} {
		var u unreachabler
		if !errors.As(err, &u) || !u.Unreachable() {
			t.Errorf("call %d: %v, want an Unreachable() error", i, err)
		}
	}
	if _, ok := c.File("/x"); ok {
		t.Error("upload to an unreachable host created the file")
	}
	c.SetUnreachable(false)
	c.Close()
	if err := c.Run(ctx, "true", nil, nil, nil); !errors.Is(err, fake.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	c.Reopen()
	if err := c.Run(ctx, "true", nil, nil, nil); err != nil {
		t.Errorf("after Reopen: %v", err)
	}
}

type failingReader struct {
	data string
	read bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.read {
		r.read = true
		return copy(p, r.data), nil
	}
	return 0, errors.New("disk on fire")
}

func TestFiles(t *testing.T) {
	c := fake.New(t, "node1")
	ctx := context.Background()
	data := "config: 1\n"
	sum, err := c.Upload(ctx, "/etc/minkms/config.yaml", strings.NewReader(data), "", 0o640, "minkms-user:minkms-user")
	want := sha256.Sum256([]byte(data))
	if err != nil || sum != hex.EncodeToString(want[:]) {
		t.Fatalf("Upload = %q, %v", sum, err)
	}
	f, ok := c.Files()["/etc/minkms/config.yaml"]
	if !ok || f.Content != data || f.Mode != 0o640 || f.Owner != "minkms-user" || f.Group != "minkms-user" {
		t.Errorf("file = %+v", f)
	}
	fi, err := c.Stat(ctx, "/etc/minkms/config.yaml")
	if err != nil || fi.Size() != int64(len(data)) || fi.Mode() != 0o640 || fi.Name() != "config.yaml" || fi.IsDir() {
		t.Errorf("Stat = %v, %v", fi, err)
	}
	if got, err := c.Checksum(ctx, "/etc/minkms/config.yaml"); err != nil || got != sum {
		t.Errorf("Checksum = %q, %v", got, err)
	}
	var buf bytes.Buffer
	if err := c.Download(ctx, "/etc/minkms/config.yaml", &buf); err != nil || buf.String() != data {
		t.Errorf("Download = %q, %v", buf.String(), err)
	}

	// A failing source leaves the previous file as it was.
	if _, err := c.Upload(ctx, "/etc/minkms/config.yaml", &failingReader{data: "partial"}, "", 0o600, ""); err == nil {
		t.Error("upload from a failing reader succeeded")
	}
	if f2, _ := c.File("/etc/minkms/config.yaml"); f2 != f {
		t.Errorf("failed upload changed the file: %+v", f2)
	}
	// owner "" gives the new file to the connection's user, as over SSH
	// (the upload renames a new file over the old one).
	c.Upload(ctx, "/etc/minkms/config.yaml", strings.NewReader("v2"), "", 0o600, "")
	if f2, _ := c.File("/etc/minkms/config.yaml"); f2.Owner != "root" || f2.Group != "root" || f2.Content != "v2" || f2.Mode != 0o600 {
		t.Errorf("re-upload: %+v", f2)
	}
	if _, err := c.Upload(ctx, "relative", strings.NewReader("x"), "", 0o600, ""); err == nil {
		t.Error("relative upload path accepted")
	}

	if err := c.Remove(ctx, "/etc/minkms/config.yaml"); err != nil {
		t.Fatal(err)
	}
	_, e1 := c.Stat(ctx, "/etc/minkms/config.yaml")
	_, e2 := c.Checksum(ctx, "/etc/minkms/config.yaml")
	e3 := c.Download(ctx, "/etc/minkms/config.yaml", io.Discard)
	e4 := c.Remove(ctx, "/etc/minkms/config.yaml")
	for i, err := range []error{e1, e2, e3, e4} {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing file, op %d: %v, want fs.ErrNotExist", i, err)
		}
	}

	c.SetFile("/usr/local/bin/minkms", "ELF", 0o755)
	if got := c.Paths(); len(got) != 1 || got[0] != "/usr/local/bin/minkms" {
		t.Errorf("Paths() = %q", got)
	}
	kinds := []fake.Kind{}
	for _, call := range c.Calls() {
		kinds = append(kinds, call.Kind)
	}
	if fmt.Sprint(kinds) != "[upload stat checksum download upload upload upload remove stat checksum download remove]" {
		t.Errorf("call kinds = %v", kinds)
	}
}

func TestHangUntilCancel(t *testing.T) {
	c := fake.New(t, "node1")
	c.Expect("sleep 600").Hang()
	ctx, cancel := context.WithCancel(context.Background())
	// Reading stdin happens after the context check and before matching:
	// cancelling there proves Hang waits for the context.
	stdin := readerFunc(func([]byte) (int, error) { cancel(); return 0, io.EOF })
	if err := c.Run(ctx, "sleep 600", stdin, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestFailAndDialTCP(t *testing.T) {
	c := fake.New(t, "node1")
	lost := errors.New("connection lost")
	c.Expect("systemctl restart minkms").Fail(lost)
	if err := c.Run(context.Background(), "systemctl restart minkms", nil, nil, nil); !errors.Is(err, lost) {
		t.Errorf("Fail: %v", err)
	}
	if _, err := c.DialTCP(context.Background(), "127.0.0.1:7373"); err == nil {
		t.Error("DialTCP without a dialer succeeded")
	}
	c.SetDialTCP(func(ctx context.Context, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() { io.WriteString(b, "hello "+addr); b.Close() }()
		return a, nil
	})
	nc, err := c.DialTCP(context.Background(), "127.0.0.1:7373")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if b, _ := io.ReadAll(nc); string(b) != "hello 127.0.0.1:7373" {
		t.Errorf("tunnel read %q", b)
	}
	calls := c.Calls()
	if last := calls[len(calls)-1]; last.Kind != fake.KindDialTCP || last.Addr != "127.0.0.1:7373" {
		t.Errorf("last call = %+v", last)
	}
}

func TestEmulatedCommands(t *testing.T) {
	c := fake.New(t, "node1")
	for _, cmd := range []string{
		"mkdir -p -- /opt/minkms/bin '/var/lib/with space'",
		"touch -- /opt/minkms/bin/minkms",
		"chmod 0750 -- /opt/minkms/bin/minkms",
		`chown -R "minkms:minkms" -- /opt/minkms`,
		"cd /opt/minkms && chgrp root -- bin",
	} {
		if err := c.Run(context.Background(), cmd, nil, nil, nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	f, ok := c.File("/opt/minkms/bin/minkms")
	if !ok || f.Dir || f.Mode != 0o750 || f.Owner != "minkms" || f.Group != "minkms" {
		t.Errorf("file = %+v, %v", f, ok)
	}
	if d, _ := c.File("/opt/minkms/bin"); !d.Dir || d.Owner != "minkms" || d.Group != "root" {
		t.Errorf("dir = %+v", d)
	}
	if d, ok := c.File("/var/lib/with space"); !ok || !d.Dir {
		t.Errorf("quoted operand: %+v, %v", d, ok)
	}
	out, _, err := run(c, "find /opt/minkms \\( ! -user minkms -o ! -group minkms \\) -print -quit", "")
	if err != nil || out != "/opt/minkms/bin\n" {
		t.Errorf("find = %q, %v", out, err)
	}
	_, errOut, err := run(c, "rm -- /opt/minkms", "")
	var xe *fake.ExitError
	if !errors.As(err, &xe) || xe.Status != 1 || !strings.Contains(errOut, "Is a directory") {
		t.Errorf("rm of a directory = %v, stderr %q", err, errOut)
	}
	if _, _, err := run(c, "rm -rf -- /opt/minkms", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.File("/opt/minkms/bin/minkms"); ok {
		t.Error("rm -rf left the tree")
	}
}

func TestCommandsNotEmulated(t *testing.T) {
	for _, cmd := range []string{
		"echo hi; rm -rf /opt",    // a list
		"rm -rf -- /opt/*",        // a glob
		"rm -rf -- $HOME",         // an expansion
		"mkdir -p -- relative",    // a relative path without cd
		"chmod u+x -- /opt",       // a symbolic mode
		"stat -c %Y -- /opt",      // a format directive not emulated
		"rm -rf -- /opt | cat",    // a pipe
		"cat > /etc/minkms/x",     // a redirection
		"ls /",                    // a command not emulated
		"find /opt -name x",       // a find primary not emulated
		"systemctl status minkms", // a systemctl verb not emulated
	} {
		r := &recorder{TB: t}
		c := fake.New(r, "node1")
		before := c.Snapshot()
		var ue *fake.UnexpectedError
		if _, _, err := run(c, cmd, ""); !errors.As(err, &ue) || len(r.errs) != 1 {
			t.Errorf("%s: %v (test failures %q), want an unexpected command", cmd, err, r.errs)
		}
		if c.Snapshot() != before {
			t.Errorf("%s changed the host", cmd)
		}
	}
}

func TestAllowUnscripted(t *testing.T) {
	c := fake.New(t, "node1")
	c.AllowUnscripted()
	if out, errOut, err := run(c, "deploy --now | tee /tmp/log", ""); err != nil || out != "" || errOut != "" {
		t.Errorf("unscripted command = %q, %q, %v; want silent success", out, errOut, err)
	}
	if _, _, err := run(c, "mkdir -p -- /opt/x", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.File("/opt/x"); !ok {
		t.Error("an emulated command is no longer emulated after AllowUnscripted")
	}
}

func TestDoContextAndSnapshot(t *testing.T) {
	c := fake.New(t, "node1")
	lost := errors.New("connection lost")
	// The second Run is cancelled only once the handler runs: cancelling
	// sooner makes Run return the context's error before the handler.
	started := make(chan struct{})
	var startOnce sync.Once
	c.Expect("minkms wait").DoContext(func(ctx context.Context, cmd string, stdin []byte) (string, string, int, error) {
		startOnce.Do(func() { close(started) })
		<-ctx.Done()
		return "", "", 0, fmt.Errorf("%s: %w", cmd, lost)
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx, "minkms wait", nil, nil, nil); err == nil {
		t.Error("Run on a cancelled context succeeded")
	}
	if err := c.Run(context.Background(), "true", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	if err := c.Run(ctx, "minkms wait", nil, nil, nil); !errors.Is(err, lost) {
		t.Errorf("DoContext error = %v, want it returned as is", err)
	}

	before := c.Snapshot()
	if !strings.Contains(before, "dir  /etc/minkms 0755 root:root\n") {
		t.Errorf("Snapshot of a new fake lacks /etc/minkms:\n%s", before)
	}
	c.SetFile("/etc/minkms/config.yaml", "a: 1\n", 0o640)
	c.SetFileOwner("/etc/minkms/config.yaml", "minkms:minkms")
	if after := c.Snapshot(); !strings.Contains(after, `file /etc/minkms/config.yaml 0640 minkms:minkms "a: 1\n"`) {
		t.Errorf("Snapshot after SetFile:\n%s", after)
	}
}

func TestForwardPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if nc, err := ln.Accept(); err == nil {
			io.WriteString(nc, "minkms")
			nc.Close()
		}
	}()
	c := fake.New(t, "node1")
	c.ForwardPort("127.0.0.1:7373", ln.Addr().String())
	nc, err := c.DialTCP(context.Background(), "127.0.0.1:7373")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if b, _ := io.ReadAll(nc); string(b) != "minkms" {
		t.Errorf("read %q through the forwarded port", b)
	}
	if _, err := c.DialTCP(context.Background(), "127.0.0.1:7374"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("DialTCP to a port not forwarded = %v, want connection refused", err)
	}
}

func TestCallString(t *testing.T) {
	c := fake.New(t, "node1")
	ctx := context.Background()
	c.Run(ctx, "true", nil, nil, nil)
	c.Upload(ctx, "/tmp/x", strings.NewReader("x"), "", 0o600, "")
	c.DialTCP(ctx, "127.0.0.1:7373")
	c.Close()
	var got []string
	for _, call := range c.Calls() {
		got = append(got, call.String())
	}
	if want := "true|upload /tmp/x|dialtcp 127.0.0.1:7373|close"; strings.Join(got, "|") != want {
		t.Errorf("calls = %q, want %q", strings.Join(got, "|"), want)
	}
}
