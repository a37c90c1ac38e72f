package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/kmsctl/kmsctl/tasks"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// The fake satisfies the same seam as the client.
var _ tasks.Conn = (*fake.Conn)(nil)

// shellAnswer is what a POSIX shell on the host does with one command line
// of the suite. The real client gets it from /bin/sh; the fake is scripted
// with it, so both sides are held to the same assertions.
type shellAnswer struct {
	stdout, stderr string
	exit           int
	catStdin       bool // stdout is the command's stdin (cat)
	hang           bool // the command writes stdout, then runs until killed
}

// conformanceConn is one connection under test plus what the suite needs to
// drive it.
type conformanceConn struct {
	conn tasks.Conn
	// dir is an absolute directory, empty at the start, for the suite's files.
	dir string
	// script prepares the connection for a command line the next step runs.
	script func(cmd string, a shellAnswer)
	// list returns the names of the files in dir, sorted.
	list func(t *testing.T) []string
	// killed, if set, checks that the process whose PID a cancelled command
	// printed is gone.
	killed func(t *testing.T, pid string)
	// goAway makes the host unreachable (it stops answering SSH).
	goAway func()
	// echoAddr is an address, as seen from the host, of a TCP service that
	// echoes what it receives.
	echoAddr string
	// closedAddr is an address, as seen from the host, of a closed port.
	closedAddr string
	// user and group name whom the connection's commands run as.
	user, group string
}

// runConformance runs the transport contract of tasks.Conn against the
// connections newConn returns (one per subtest).
func runConformance(t *testing.T, newConn func(t *testing.T) conformanceConn) {
	ctxFor := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	run := func(t *testing.T, c conformanceConn, cmd, stdin string, a shellAnswer) (string, string, error) {
		t.Helper()
		c.script(cmd, a)
		var out, errb bytes.Buffer
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		err := c.conn.Run(ctxFor(t), cmd, in, &out, &errb)
		return out.String(), errb.String(), err
	}
	upload := func(t *testing.T, c conformanceConn, p string, data []byte, perm fs.FileMode) string {
		t.Helper()
		sum, err := c.conn.Upload(ctxFor(t), p, bytes.NewReader(data), "", perm, "")
		if err != nil {
			t.Fatalf("Upload %s: %v", p, err)
		}
		return sum
	}
	download := func(t *testing.T, c conformanceConn, p string) []byte {
		t.Helper()
		var b bytes.Buffer
		if err := c.conn.Download(ctxFor(t), p, &b); err != nil {
			t.Fatalf("Download %s: %v", p, err)
		}
		return b.Bytes()
	}

	t.Run("RunSeparatesStdoutAndStderr", func(t *testing.T) {
		c := newConn(t)
		out, errOut, err := run(t, c, "echo out; echo err >&2", "", shellAnswer{stdout: "out\n", stderr: "err\n"})
		if err != nil || out != "out\n" || errOut != "err\n" {
			t.Errorf("Run = stdout %q, stderr %q, err %v; want %q, %q, nil", out, errOut, err, "out\n", "err\n")
		}
	})

	t.Run("RunWithNilStreams", func(t *testing.T) {
		c := newConn(t)
		cmd := "echo ignored; echo ignored >&2; cat"
		c.script(cmd, shellAnswer{stdout: "ignored\n", stderr: "ignored\n"})
		if err := c.conn.Run(ctxFor(t), cmd, nil, nil, nil); err != nil {
			t.Errorf("Run with nil stdin, stdout and stderr = %v", err)
		}
	})

	t.Run("RunPassesStdin", func(t *testing.T) {
		c := newConn(t)
		in := "line one\nline two\n"
		out, _, err := run(t, c, "cat", in, shellAnswer{catStdin: true})
		if err != nil || out != in {
			t.Errorf("cat = %q, %v; want %q", out, err, in)
		}
	})

	t.Run("RunNonZeroExit", func(t *testing.T) {
		c := newConn(t)
		_, errOut, err := run(t, c, "echo failing >&2; exit 3", "", shellAnswer{stderr: "failing\n", exit: 3})
		var xs interface{ ExitStatus() int }
		if !errors.As(err, &xs) || xs.ExitStatus() != 3 {
			t.Fatalf("err = %v, want one with ExitStatus() == 3", err)
		}
		if errOut != "failing\n" {
			t.Errorf("stderr = %q, want %q", errOut, "failing\n")
		}
		var u interface{ Unreachable() bool }
		if errors.As(err, &u) && u.Unreachable() {
			t.Errorf("a failed command reads as unreachable: %v", err)
		}
	})

	t.Run("CancelEndsLongCommand", func(t *testing.T) {
		c := newConn(t)
		cmd := "echo $$; exec sleep 60"
		c.script(cmd, shellAnswer{stdout: "4242\n", hang: true})
		ctx, cancel := context.WithCancel(ctxFor(t))
		defer cancel()
		// Cancel as soon as the command proves it is running.
		out := &confNotifyWriter{notify: cancel}
		err := c.conn.Run(ctx, cmd, nil, out, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want an error wrapping context.Canceled", err)
		}
		if c.killed != nil {
			c.killed(t, strings.TrimSpace(out.String()))
		}
		// The connection stays usable.
		if got, _, err := run(t, c, "echo after", "", shellAnswer{stdout: "after\n"}); err != nil || got != "after\n" {
			t.Errorf("Run after cancel = %q, %v", got, err)
		}
	})

	t.Run("UploadStatChecksumDownload", func(t *testing.T) {
		c := newConn(t)
		data := make([]byte, 1<<20+123) // several SFTP packets, not a round size
		rnd := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		want := sha256.Sum256(data)
		wantSum := hex.EncodeToString(want[:])
		p := path.Join(c.dir, "blob.bin")

		sum, err := c.conn.Upload(ctxFor(t), p, bytes.NewReader(data), "", 0o640, confCurrentUser(t))
		if err != nil {
			t.Fatalf("Upload: %v", err)
		}
		if sum != wantSum {
			t.Errorf("Upload sha256 = %s, want %s", sum, wantSum)
		}
		fi, err := c.conn.Stat(ctxFor(t), p)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o640 || fi.Name() != "blob.bin" || fi.IsDir() || !fi.Mode().IsRegular() {
			t.Errorf("Stat = size %d mode %v name %q dir %v; want %d, -rw-r-----, blob.bin, false", fi.Size(), fi.Mode(), fi.Name(), fi.IsDir(), len(data))
		}
		if got, err := c.conn.Checksum(ctxFor(t), p); err != nil || got != wantSum {
			t.Errorf("Checksum = %q, %v; want %s", got, err, wantSum)
		}
		if got := download(t, c, p); !bytes.Equal(got, data) {
			t.Errorf("Download returned %d bytes differing from the %d uploaded", len(got), len(data))
		}
		if got := c.list(t); strings.Join(got, ",") != "blob.bin" {
			t.Errorf("files in dir = %q, want only blob.bin", got)
		}
	})

	t.Run("UploadReplacesExistingFile", func(t *testing.T) {
		c := newConn(t)
		p := path.Join(c.dir, "config.yaml")
		upload(t, c, p, []byte("old: 1\n"), 0o644)
		newData := []byte("new: 2\nlonger: true\n")
		sum := upload(t, c, p, newData, 0o600)
		if got := download(t, c, p); !bytes.Equal(got, newData) {
			t.Errorf("content after replace = %q, want %q", got, newData)
		}
		fi, err := c.conn.Stat(ctxFor(t), p)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != int64(len(newData)) {
			t.Errorf("Stat after replace = %v, %v; want mode 0600 size %d", fi, err, len(newData))
		}
		if got, err := c.conn.Checksum(ctxFor(t), p); err != nil || got != sum {
			t.Errorf("Checksum = %q, %v; want %s", got, err, sum)
		}
		if got := c.list(t); strings.Join(got, ",") != "config.yaml" {
			t.Errorf("files in dir = %q, want only config.yaml (no temp files)", got)
		}
	})

	t.Run("UploadFailingReaderKeepsOldFile", func(t *testing.T) {
		c := newConn(t)
		p := path.Join(c.dir, "env")
		old := []byte("KEY=old\n")
		oldSum := upload(t, c, p, old, 0o600)
		for _, perm := range []fs.FileMode{0o644, 0o600} {
			src := &confFailAfter{data: bytes.Repeat([]byte("x"), 256<<10), err: errors.New("source broke")}
			if _, err := c.conn.Upload(ctxFor(t), p, src, "", perm, ""); err == nil {
				t.Fatalf("Upload (mode %04o) from a failing reader succeeded", perm)
			}
		}
		if got := download(t, c, p); !bytes.Equal(got, old) {
			t.Errorf("content after failed upload = %q, want the old %q", got, old)
		}
		fi, err := c.conn.Stat(ctxFor(t), p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("Stat after failed upload = %v, %v; want the old mode 0600", fi, err)
		}
		if got, err := c.conn.Checksum(ctxFor(t), p); err != nil || got != oldSum {
			t.Errorf("Checksum = %q, %v; want the old %s", got, err, oldSum)
		}
		if got := c.list(t); strings.Join(got, ",") != "env" {
			t.Errorf("files in dir = %q, want only env (no temp file left)", got)
		}
	})

	t.Run("UploadKnownSum", func(t *testing.T) {
		c := newConn(t)
		p := path.Join(c.dir, "minkms")
		data := []byte("the binary hashed once for every host\n")
		h := sha256.Sum256(data)
		want := hex.EncodeToString(h[:])
		// A sum known in advance is accepted in either case and returned in lower case.
		sum, err := c.conn.Upload(ctxFor(t), p, bytes.NewReader(data), strings.ToUpper(want), 0o755, "")
		if err != nil || sum != want {
			t.Fatalf("Upload with its known sum = %q, %v; want %s", sum, err, want)
		}
		// Content that is not what was hashed (the local file changed since)
		// fails the upload and leaves the target as it was.
		if _, err := c.conn.Upload(ctxFor(t), p, strings.NewReader("changed since it was hashed\n"), want, 0o644, ""); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("Upload of content that differs from its known sum = %v; want a checksum mismatch", err)
		}
		if got := download(t, c, p); !bytes.Equal(got, data) {
			t.Errorf("content after the mismatched upload = %q, want the old %q", got, data)
		}
		if fi, err := c.conn.Stat(ctxFor(t), p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("Stat after the mismatched upload = %v, %v; want the old mode 0755", fi, err)
		}
		if got := c.list(t); strings.Join(got, ",") != "minkms" {
			t.Errorf("files in dir = %q, want only minkms (no temp files)", got)
		}
	})

	t.Run("MissingPathIsErrNotExist", func(t *testing.T) {
		c := newConn(t)
		p := path.Join(c.dir, "missing")
		_, e1 := c.conn.Stat(ctxFor(t), p)
		_, e2 := c.conn.Checksum(ctxFor(t), p)
		e3 := c.conn.Download(ctxFor(t), p, io.Discard)
		e4 := c.conn.Remove(ctxFor(t), p)
		for i, err := range []error{e1, e2, e3, e4} {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s of a missing path: %v, want errors.Is(err, fs.ErrNotExist)", []string{"Stat", "Checksum", "Download", "Remove"}[i], err)
			}
		}
	})

	t.Run("Remove", func(t *testing.T) {
		c := newConn(t)
		p := path.Join(c.dir, "gone")
		upload(t, c, p, []byte("bye"), 0o600)
		if err := c.conn.Remove(ctxFor(t), p); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := c.conn.Stat(ctxFor(t), p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat after Remove = %v, want fs.ErrNotExist", err)
		}
		if got := c.list(t); len(got) != 0 {
			t.Errorf("files in dir after Remove = %q, want none", got)
		}
	})

	t.Run("ConcurrentRuns", func(t *testing.T) {
		c := newConn(t)
		const n = 8
		for i := 0; i < n; i++ {
			c.script("echo "+strconv.Itoa(i), shellAnswer{stdout: strconv.Itoa(i) + "\n"})
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		outs := make([]bytes.Buffer, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.conn.Run(ctxFor(t), "echo "+strconv.Itoa(i), nil, &outs[i], nil)
			}()
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			if errs[i] != nil || outs[i].String() != strconv.Itoa(i)+"\n" {
				t.Errorf("concurrent run %d = %q, %v", i, outs[i].String(), errs[i])
			}
		}
	})

	t.Run("DialTCPTunnel", func(t *testing.T) {
		c := newConn(t)
		nc, err := c.conn.DialTCP(ctxFor(t), c.echoAddr)
		if err != nil {
			t.Fatalf("DialTCP %s: %v", c.echoAddr, err)
		}
		defer nc.Close()
		msg := []byte("through the tunnel")
		if _, err := nc.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("echo = %q, %v; want %q", got, err, msg)
		}
	})

	t.Run("UnreachableIsNotAFailedCommand", func(t *testing.T) {
		c := newConn(t)
		c.goAway()
		err := c.conn.Run(ctxFor(t), "true", nil, nil, nil)
		var u interface{ Unreachable() bool }
		if !errors.As(err, &u) || !u.Unreachable() {
			t.Errorf("Run on a host that went away = %v, want an error with Unreachable() true", err)
		}
		var xs interface{ ExitStatus() int }
		if errors.As(err, &xs) {
			t.Errorf("Run on a host that went away reports exit status %d: %v", xs.ExitStatus(), err)
		}
		_, err = c.conn.Upload(ctxFor(t), path.Join(c.dir, "f"), strings.NewReader("x"), "", 0o600, "")
		if !errors.As(err, &u) || !u.Unreachable() {
			t.Errorf("Upload on a host that went away = %v, want an error with Unreachable() true", err)
		}
	})

	t.Run("UploadRefusesRelativePath", func(t *testing.T) {
		c := newConn(t)
		if _, err := c.conn.Upload(ctxFor(t), "relative/file", strings.NewReader("x"), "", 0o600, ""); err == nil {
			t.Error("Upload to a relative path succeeded")
		}
	})

	runHostConformance(t, newConn)
}

// TestConformanceFake runs the suite against the fake, its commands run as
// the user the SSH server runs them as.
func TestConformanceFake(t *testing.T) {
	runConformance(t, func(t *testing.T) conformanceConn {
		f := fake.New(t, "fake-host")
		dir := "/srv/conformance"
		f.MkdirAll(dir)
		usr, grp := confCurrentUserGroup(t)
		f.SetUser(usr, grp)
		const echoAddr = "127.0.0.1:7373"
		f.ForwardPort(echoAddr, startEchoServer(t))
		return conformanceConn{
			conn:       f,
			dir:        dir,
			echoAddr:   echoAddr,
			closedAddr: "127.0.0.1:7374",
			user:       usr,
			group:      grp,
			goAway:     func() { f.SetUnreachable(true) },
			script: func(cmd string, a shellAnswer) {
				e := f.Expect(cmd).Times(1).Stdout(a.stdout).Stderr(a.stderr).Exit(a.exit)
				switch {
				case a.hang:
					e.Hang()
				case a.catStdin:
					e.Do(func(stdin []byte) (string, string, int) { return string(stdin), a.stderr, a.exit })
				}
			},
			list: func(t *testing.T) []string {
				var names []string
				for _, p := range append(f.Paths(), f.Dirs()...) {
					if path.Dir(p) == dir {
						names = append(names, path.Base(p))
					}
				}
				sort.Strings(names)
				return names
			},
		}
	})
}

// TestConformanceSSH runs the suite against remote.Client talking to the
// in-process SSH server, with a pinned host key and a key file.
func TestConformanceSSH(t *testing.T) {
	runConformance(t, func(t *testing.T) conformanceConn {
		c, s := dialConformanceServer(t, sshtest.Config{})
		dir := t.TempDir()
		usr, grp := confCurrentUserGroup(t)
		return conformanceConn{
			conn:       c,
			dir:        dir,
			echoAddr:   startEchoServer(t),
			closedAddr: closedPort(t),
			user:       usr,
			group:      grp,
			goAway:     s.Close,
			script:     func(string, shellAnswer) {},
			list: func(t *testing.T) []string {
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				sort.Strings(names)
				return names
			},
			killed: func(t *testing.T, pid string) {
				n, err := strconv.Atoi(pid)
				if err != nil {
					t.Fatalf("cancelled command printed %q, want its PID", pid)
				}
				// The kill is asynchronous: allow it generous time (a
				// liveness bound, not a performance assertion).
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					if err := syscall.Kill(n, 0); errors.Is(err, syscall.ESRCH) {
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("remote process %d still runs 10s after its context was cancelled", n)
						return
					}
				}
			},
		}
	})
}

// dialConformanceServer starts an sshtest server and dials it with an
// isolated client environment: HOME in a temp dir, no agent, no ssh_config,
// the server's key pinned, a fresh client key in an identity file.
func dialConformanceServer(t *testing.T, cfg sshtest.Config) (*remote.Client, *sshtest.Server) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("SSH_AUTH_SOCK", "")
	key := sshtest.GenerateKey(t)
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, key.PublicKey())
	s := sshtest.Start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := remote.Dial(ctx, remote.Options{
		Alias:          "conformance",
		HostName:       "127.0.0.1",
		Port:           s.Port(),
		User:           "tester",
		IdentityFiles:  []string{sshtest.ClientKeyFile(t, key, "")},
		SSHConfigFile:  "none",
		PinnedKeys:     []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey())))},
		AgentSocket:    "none",
		ConnectTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial the test server: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, s
}

// startEchoServer starts a TCP echo service on 127.0.0.1 for the test.
func startEchoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// confCurrentUserGroup returns the names of this process's user and group.
func confCurrentUserGroup(t *testing.T) (string, string) {
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("group of the current user: %v", err)
	}
	return u.Username, g.Name
}

// closedPort returns an address of 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func confCurrentUser(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	return u.Username
}

// confNotifyWriter collects writes and calls notify once, after the first.
type confNotifyWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify func()
	once   sync.Once
}

func (w *confNotifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	n, err := w.buf.Write(p)
	w.mu.Unlock()
	w.once.Do(w.notify)
	return n, err
}

func (w *confNotifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// confFailAfter yields data, then fails with err.
type confFailAfter struct {
	data []byte
	err  error
}

func (r *confFailAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSecretNeverLeaksFake pushes a sentinel secret through
// Trace(Redact(fake)) on stdin and by upload: output, errors and trace logs
// are masked, no command line carries it, and the data itself is intact.
// (TestSecretNeverLeaks does the same over SSH with Become.)
func TestSecretNeverLeaksFake(t *testing.T) {
	const secret = "SENTINEL-api-key:k1:c2VudGluZWwtc2VudGluZWw="
	f := fake.New(t, "node1")
	var logs bytes.Buffer
	conn := remote.Trace(remote.Redact(f, redact.New(secret)), zerolog.New(&logs).Level(zerolog.DebugLevel))
	ctx := context.Background()

	f.Expect("cat > /etc/default/minkms.new").Do(func(stdin []byte) (string, string, int) {
		f.SetFile("/etc/default/minkms.new", string(stdin), 0o600)
		return "stored " + string(stdin), "", 0
	})
	f.Expect("grep KEY /etc/default/minkms.new").Do(func([]byte) (string, string, int) {
		c, _ := f.File("/etc/default/minkms.new")
		return "", c.Content, 4
	})
	var out, errb bytes.Buffer
	if err := conn.Run(ctx, "cat > /etc/default/minkms.new", strings.NewReader("KEY="+secret), &out, &errb); err != nil {
		t.Fatal(err)
	}
	stdout1 := out.String()
	out.Reset()
	err := conn.Run(ctx, "grep KEY /etc/default/minkms.new", nil, &out, &errb)
	var xs interface{ ExitStatus() int }
	if !errors.As(err, &xs) || xs.ExitStatus() != 4 {
		t.Fatalf("failing command = %v, want exit status 4 through the decorators", err)
	}
	if _, err := conn.Upload(ctx, "/etc/minkms/api.key", strings.NewReader(secret), "", 0o600, "minkms-user"); err != nil {
		t.Fatal(err)
	}

	for name, text := range map[string]string{
		"stdout": stdout1, "stderr": errb.String(), "error": err.Error(), "trace log": logs.String(),
		"command lines": strings.Join(f.Commands(), "\n"),
	} {
		if strings.Contains(text, secret) || strings.Contains(text, "c2VudGluZWwtc2VudGluZWw=") {
			t.Errorf("secret leaked into %s: %q", name, text)
		}
	}
	if !strings.Contains(stdout1, redact.Mask) || !strings.Contains(errb.String(), redact.Mask) {
		t.Errorf("stdout %q / stderr %q: want the mask where the secret was", stdout1, errb.String())
	}
	// The secret did travel, on stdin and as file data.
	if calls := f.Calls(); string(calls[0].Stdin) != "KEY="+secret {
		t.Errorf("stdin recorded = %q", calls[0].Stdin)
	}
	if got, _ := f.File("/etc/minkms/api.key"); got.Content != secret || got.Mode != 0o600 || got.Owner != "minkms-user" {
		t.Errorf("uploaded file = %+v", got)
	}
}
