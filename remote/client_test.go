package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"golang.org/x/crypto/ssh/agent"
)

func TestRunOutputStdinAndExitStatus(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	out, errOut, err := run(t, c, "cat; echo to-stderr >&2", "from stdin")
	if err != nil || out != "from stdin" || errOut != "to-stderr\n" {
		t.Fatalf("run = %q, %q, %v", out, errOut, err)
	}
	_, _, err = run(t, c, "echo failing >&2; exit 7", "")
	var xe *remote.ExitError
	if !errors.As(err, &xe) || xe.ExitStatus() != 7 || !strings.Contains(xe.Stderr, "failing") {
		t.Fatalf("exit error = %#v (%v)", xe, err)
	}
	var st interface{ ExitStatus() int }
	if !errors.As(err, &st) {
		t.Error("error has no ExitStatus method for the task engine")
	}
	var u interface{ Unreachable() bool }
	if errors.As(err, &u) {
		t.Error("a command's exit status must not count as unreachable")
	}
	// A command that exits without reading its stdin does not hang Run.
	if err := c.Run(ctx(t), "true", neverEnding{}, nil, nil); err != nil {
		t.Fatalf("run with unread stdin: %v", err)
	}
	// Commands are sent as given: no wrapping, one exec per Run.
	cmds := s.Commands()
	if cmds[0] != "cat; echo to-stderr >&2" || len(cmds) != 3 {
		t.Errorf("server received %q", cmds)
	}
}

// neverEnding is a reader that never reaches EOF.
type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestRunConcurrentOnOneConnection(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			out, _, err := run(t, c, fmt.Sprintf("echo %d", i), "")
			if err == nil && out != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("got %q", out)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(s.Logins()); n != 1 {
		t.Errorf("%d logins for 8 commands; want one reused connection", n)
	}
}

func TestRunsStayWithinMaxSessions(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})      // sshd's default MaxSessions: 10
	if _, err := c.Stat(ctx(t), "/"); err != nil { // the SFTP session takes one
		t.Fatal(err)
	}
	const n = 25
	errs := make(chan error, n)
	for i := range n {
		go func() {
			out, _, err := run(t, c, fmt.Sprintf("sleep 0.1; echo %d", i), "")
			if err == nil && out != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("got %q", out)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestCancelEndsRemoteCommand(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx, "echo $$ > "+pidFile+"; exec sleep 60", nil, nil, nil) }()
	pid := waitForPid(t, pidFile)
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v, want context.Canceled", err)
	}
	waitGone(t, pid)
	// The connection stays usable.
	if out, _, err := run(t, c, "echo still", ""); err != nil || out != "still\n" {
		t.Fatalf("run after cancel: %q %v", out, err)
	}
}

func waitForPid(t *testing.T, file string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("command never wrote %s", file)
	return 0
}

// waitGone waits until process pid no longer exists (or is a zombie).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Fatalf("remote process %d still runs after cancel", pid)
}

func TestReconnectAfterDropNeverRerunsCommand(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	counter := filepath.Join(dir, "counter")
	started := filepath.Join(dir, "pid")
	cmd := "echo run >> " + counter + "; echo $$ > " + started + "; exec sleep 30"
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx(t), cmd, nil, nil, nil) }()
	waitForPid(t, started)
	s.DropConnections()
	err := <-done
	if !errors.Is(err, remote.ErrConnectionLost) {
		t.Fatalf("in-flight command error = %v, want ErrConnectionLost", err)
	}
	var u interface{ Unreachable() bool }
	if !errors.As(err, &u) || !u.Unreachable() {
		t.Errorf("lost connection is not Unreachable: %v", err)
	}
	// The next call re-dials.
	if out, _, err := run(t, c, "echo again", ""); err != nil || out != "again\n" {
		t.Fatalf("run after drop: %q %v", out, err)
	}
	if got := readFile(t, counter); got != "run\n" {
		t.Errorf("in-flight command ran %d times", strings.Count(got, "run"))
	}
	n := 0
	for _, c := range s.Commands() {
		if c == cmd {
			n++
		}
	}
	if n != 1 || len(s.Logins()) != 2 {
		t.Errorf("server saw the command %d times and %d logins; want 1 and 2", n, len(s.Logins()))
	}
	// SFTP reopens on the new connection too.
	if _, err := c.Stat(ctx(t), dir); err != nil {
		t.Fatalf("stat after reconnect: %v", err)
	}
}

func TestRedialGivesUpWhenHostIsGone(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	s.Close()
	_, _, err := run(t, c, "true", "")
	var de *remote.DialError
	if !errors.As(err, &de) || de.Host != "target" {
		t.Fatalf("run against a closed server = %v, want *DialError", err)
	}
}

func TestProxyJumpTwoHopsFromSSHConfig(t *testing.T) {
	e := newEnv(t)
	b1 := e.server(sshtest.Config{})
	b2 := e.server(sshtest.Config{})
	target := e.server(sshtest.Config{})
	e.trust(b1.KnownHostsLine(), b2.KnownHostsLine(), target.KnownHostsLine())
	cfg := filepath.Join(t.TempDir(), "config")
	body := fmt.Sprintf(`Host bastion1
    HostName 127.0.0.1
    Port %d
    User hopper1
Host bastion2
    HostName 127.0.0.1
    Port %d
Host kms
    HostName 127.0.0.1
    Port %d
    User kmsuser
    IdentityFile %s
    UserKnownHostsFile %s
    ProxyJump bastion1,hop2@bastion2
`, b1.Port(), b2.Port(), target.Port(), e.keyFile, e.knownHosts)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o := remote.Options{Alias: "kms", SSHConfigFile: cfg, AgentSocket: "none", IdentityFiles: []string{e.keyFile}, KnownHostsFiles: []string{e.knownHosts}}
	c := e.dial(o)
	if out, _, err := run(t, c, "echo through", ""); err != nil || out != "through\n" {
		t.Fatalf("run via two hops: %q %v", out, err)
	}
	if got := b1.Tunnels(); len(got) != 1 || got[0] != b2.Addr() {
		t.Errorf("bastion1 tunnels = %v, want [%s]", got, b2.Addr())
	}
	if got := b2.Tunnels(); len(got) != 1 || got[0] != target.Addr() {
		t.Errorf("bastion2 tunnels = %v, want [%s]", got, target.Addr())
	}
	if b1.Logins()[0] != "hopper1" || b2.Logins()[0] != "hop2" || target.Logins()[0] != "kmsuser" {
		t.Errorf("logins: %v %v %v", b1.Logins(), b2.Logins(), target.Logins())
	}

	// "ProxyJump none" in Options connects directly.
	o.ProxyJump = "none"
	e.dial(o)
	if len(b1.Tunnels()) != 1 {
		t.Error("ProxyJump none still went through the bastion")
	}

	// An unknown bastion key stops the dial and names the bastion.
	e.trust(target.KnownHostsLine())
	o.ProxyJump = ""
	_, err := remote.Dial(ctx(t), o)
	if err == nil || !strings.Contains(err.Error(), "via ProxyJump bastion1") || !strings.Contains(err.Error(), "unknown host key") {
		t.Fatalf("dial with unknown bastion key: %v", err)
	}
}

func TestPassphraseKeyNotInAgent(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust(s.KnownHostsLine())
	locked := sshtest.ClientKeyFile(t, e.key, "secret passphrase")
	o := e.opts(s)
	o.IdentityFiles = []string{locked}
	_, err := remote.Dial(ctx(t), o)
	if err == nil {
		t.Fatal("dial with a passphrase-protected key and no agent succeeded")
	}
	for _, want := range []string{locked, "passphrase", "ssh-add " + locked} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// With the key in an agent, the same options work.
	sock := startAgent(t, e.key)
	o.AgentSocket = sock
	o.IdentityFiles = []string{locked}
	e.dial(o)
	// SSH_AUTH_SOCK is used when AgentSocket is empty.
	t.Setenv("SSH_AUTH_SOCK", sock)
	o.AgentSocket = ""
	o.IdentityFiles = nil
	e.dial(o)
}

// startAgent serves an in-process ssh-agent holding keys and returns its socket.
func startAgent(t *testing.T, keys ...*sshtest.Key) string {
	t.Helper()
	keyring := agent.NewKeyring()
	for _, k := range keys {
		if err := keyring.Add(agent.AddedKey{PrivateKey: k.Private}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	return sock
}

func TestIdentitiesOnly(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{}) // accepts e.key only
	e.trust(s.KnownHostsLine())
	other := sshtest.ClientKeyFile(t, sshtest.GenerateKey(t), "")
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("Host target\n    IdentityFile "+other+"\n    IdentitiesOnly yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.opts(s)
	o.SSHConfigFile = cfg
	o.IdentityFiles = nil
	o.AgentSocket = startAgent(t, e.key) // the agent holds the accepted key
	if _, err := remote.Dial(ctx(t), o); err == nil || !strings.Contains(err.Error(), other) {
		t.Fatalf("IdentitiesOnly yes used an agent key not named by IdentityFile: %v", err)
	}
	if err := os.WriteFile(cfg, []byte("Host target\n    IdentityFile "+other+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.dial(o) // without IdentitiesOnly the agent key is tried after the file
}

func TestAuthFailureIsUnreachable(t *testing.T) {
	e := newEnv(t)
	s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: nil, Password: "x"})
	e.trust(s.KnownHostsLine())
	_, err := remote.Dial(ctx(t), e.opts(s))
	var de *remote.DialError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "server refused the keys offered") || !strings.Contains(err.Error(), e.keyFile) {
		t.Fatalf("auth failure = %v", err)
	}
}

func TestDialTimeoutAndRefused(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never speaks SSH
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := remote.Options{Alias: "silent", HostName: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "u", SSHConfigFile: "none", AgentSocket: "none", ConnectTimeout: 300 * time.Millisecond}
	_, err = remote.Dial(context.Background(), o)
	var de *remote.DialError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a silent server = %v, want DialError wrapping DeadlineExceeded", err)
	}
	_ = e
}

func TestDialTCPTunnel(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			io.Copy(conn, conn)
			conn.Close()
		}
	}()
	nc, err := c.DialTCP(ctx(t), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through tunnel: %q %v", buf, err)
	}
	if got := s.Tunnels(); len(got) != 1 || got[0] != ln.Addr().String() {
		t.Errorf("server tunnels = %v", got)
	}
}

func TestStatDownloadRemoveChecksum(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	p := filepath.Join(dir, "file with space")
	if err := os.WriteFile(p, []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat(ctx(t), p)
	if err != nil || fi.Size() != 6 || fi.Mode().Perm() != 0o640 || fi.IsDir() {
		t.Fatalf("stat = %v %v", fi, err)
	}
	var buf bytes.Buffer
	if err := c.Download(ctx(t), p, &buf); err != nil || buf.String() != "hello\n" {
		t.Fatalf("download = %q %v", buf.String(), err)
	}
	sum, err := c.Checksum(ctx(t), p)
	if err != nil || sum != "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Fatalf("checksum = %s %v", sum, err)
	}
	if err := c.Remove(ctx(t), dir); err == nil {
		t.Error("Remove deleted a directory")
	}
	if err := c.Remove(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"stat":     func() error { _, err := c.Stat(ctx(t), p); return err }(),
		"download": c.Download(ctx(t), p, io.Discard),
		"remove":   c.Remove(ctx(t), p),
		"checksum": func() error { _, err := c.Checksum(ctx(t), p); return err }(),
	} {
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of a missing file = %v, want fs.ErrNotExist", name, err)
		}
	}
}

func TestChecksumRejectsMalformedOutput(t *testing.T) {
	// Files of more than two SFTP requests (2 x 32 KiB here) are hashed by
	// a command on the host, whose output must be a hash.
	_, _, c := connected(t, sshtest.Config{Exec: func(_ context.Context, cmd string, _ io.Reader, stdout, _ io.Writer) (int, bool) {
		if strings.Contains(cmd, remote.SHA256Script) {
			io.WriteString(stdout, "not-a-hash  /x\n")
			return 0, true
		}
		return 0, false
	}})
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Checksum(ctx(t), big); err == nil || !strings.Contains(err.Error(), "unexpected sha256 output") {
		t.Fatalf("checksum of malformed output = %v", err)
	}
}

// Checksum hashes a file of up to two SFTP requests by reading it back, and
// a larger one on the host; both give the file's sha256, at the boundary too.
func TestChecksumSmallAndLarge(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	for _, size := range []int{0, 1, 64 << 10, 64<<10 + 1, 1 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*31 + size)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%d", size))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(s.Commands())
		got, err := c.Checksum(ctx(t), p)
		want := sha256.Sum256(data)
		if err != nil || got != hex.EncodeToString(want[:]) {
			t.Errorf("checksum of %d bytes = %s, %v; want %x", size, got, err, want)
		}
		ranCommand := len(s.Commands()) > before
		if ranCommand != (size > 64<<10) {
			t.Errorf("checksum of %d bytes ran a command: %v (commands %q)", size, ranCommand, s.Commands()[before:])
		}
	}
	if _, err := c.Checksum(ctx(t), dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("checksum of a directory = %v, want an is-a-directory error", err)
	}
}
