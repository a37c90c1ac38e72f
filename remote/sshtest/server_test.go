package sshtest

import (
	"bytes"
	"context"
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

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// startWithClient starts a server accepting a fresh client key and returns it
// with a connected client that pins the server's host key.
func startWithClient(t *testing.T, cfg Config) (*Server, *ssh.Client) {
	t.Helper()
	key := GenerateKey(t)
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, key.PublicKey())
	s := Start(t, cfg)
	return s, dial(t, s.Addr(), key, ssh.FixedHostKey(s.HostKey()))
}

func dial(t *testing.T, addr string, key ssh.Signer, hk ssh.HostKeyCallback) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "tester",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: hk,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run runs cmd with stdin and returns stdout, stderr and the Wait error.
func run(t *testing.T, c *ssh.Client, cmd, stdin string) (string, string, error) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdin = strings.NewReader(stdin)
	sess.Stdout, sess.Stderr = &out, &errb
	err = sess.Run(cmd)
	return out.String(), errb.String(), err
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want *ssh.ExitError, got %v", err)
	}
	return ee.ExitStatus()
}

func TestExecStdoutStderrExitStatus(t *testing.T) {
	dir := t.TempDir()
	s, c := startWithClient(t, Config{Dir: dir, Env: []string{"SSHTEST_VAR=from-config"}})

	out, errOut, err := run(t, c, `echo out; echo err >&2; echo "$SSHTEST_VAR"; pwd`, "")
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, errOut)
	}
	if want := "out\nfrom-config\n" + dir + "\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if errOut != "err\n" {
		t.Errorf("stderr = %q, want %q", errOut, "err\n")
	}

	_, _, err = run(t, c, "exit 3", "")
	if got := exitStatus(t, err); got != 3 {
		t.Errorf("exit status = %d, want 3", got)
	}

	out, _, err = run(t, c, "cat; echo done", "line1\nline2\n")
	if err != nil || out != "line1\nline2\ndone\n" {
		t.Errorf("cat = %q, %v; want stdin echoed", out, err)
	}

	want := []string{`echo out; echo err >&2; echo "$SSHTEST_VAR"; pwd`, "exit 3", "cat; echo done"}
	if got := s.Commands(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Commands() = %q, want %q", got, want)
	}
	if got := s.Logins(); len(got) != 1 || got[0] != "tester" {
		t.Errorf("Logins() = %q, want [tester]", got)
	}
}

func TestSignalKillsProcessGroup(t *testing.T) {
	_, c := startWithClient(t, Config{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A child in the background proves the whole group is signalled.
	if err := sess.Start("sleep 60 & echo ready; wait"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("read ready: %q %v", line, err)
	}
	if err := sess.Signal(ssh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = sess.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("Wait = %v, want exit by signal TERM", err)
	}
}

func TestClosingSessionKillsCommand(t *testing.T) {
	s, c := startWithClient(t, Config{})
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("echo $$; exec sleep 60"); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscanln(stdout, &pid); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	c.Close()
	// Close waits for every command to be reaped: it returns promptly only
	// if closing the channel killed sleep.
	s.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after the session closed (kill 0: %v)", pid, err)
	}
}

func TestSudoSimulation(t *testing.T) {
	_, c := startWithClient(t, Config{Sudo: SudoAllow})
	out, errOut, err := run(t, c, `sudo -n -u root -- sh -c 'echo as root'`, "")
	if err != nil || out != "as root\n" {
		t.Errorf("sudo allowed: %q %q %v", out, errOut, err)
	}
	out, _, err = run(t, c, `sudo -n cat`, "via stdin")
	if err != nil || out != "via stdin" {
		t.Errorf("sudo -n cat: %q %v", out, err)
	}

	_, c = startWithClient(t, Config{Sudo: SudoPasswordRequired})
	out, errOut, err = run(t, c, `sudo -n -u root -- sh -c 'echo as root'`, "")
	if got := exitStatus(t, err); got != 1 {
		t.Errorf("exit status = %d, want 1", got)
	}
	if out != "" || errOut != "sudo: a password is required\n" {
		t.Errorf("password required: stdout %q stderr %q", out, errOut)
	}
	// Commands without sudo still run.
	if out, _, err := run(t, c, "echo plain", ""); err != nil || out != "plain\n" {
		t.Errorf("plain command: %q %v", out, err)
	}
}

func TestStripSudo(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		isSudo   bool
		ni       bool
		err      bool
	}{
		{in: "echo sudo", isSudo: false},
		{in: "sudo -n -- true", rest: "true", isSudo: true, ni: true},
		{in: "sudo -n -u 'root' -- sh -c 'a b'", rest: "sh -c 'a b'", isSudo: true, ni: true},
		{in: "sudo -nH -uroot ls -l", rest: "ls -l", isSudo: true, ni: true},
		{in: "sudo ls", rest: "ls", isSudo: true},
		{in: "sudo -n --", isSudo: true, ni: true, err: true},
		{in: "sudo -S ls", isSudo: true, err: true},
	} {
		rest, isSudo, ni, err := stripSudo(tc.in)
		if rest != tc.rest || isSudo != tc.isSudo || ni != tc.ni || (err != nil) != tc.err {
			t.Errorf("stripSudo(%q) = %q, %v, %v, %v; want %q, %v, %v, err=%v", tc.in, rest, isSudo, ni, err, tc.rest, tc.isSudo, tc.ni, tc.err)
		}
	}
}

func TestExecHook(t *testing.T) {
	_, c := startWithClient(t, Config{Exec: func(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, bool) {
		if cmd != "magic" {
			return 0, false
		}
		in, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "hooked %s", in)
		fmt.Fprint(stderr, "hook stderr")
		return 42, true
	}})
	out, errOut, err := run(t, c, "magic", "input")
	if got := exitStatus(t, err); got != 42 || out != "hooked input" || errOut != "hook stderr" {
		t.Errorf("hook: status %d stdout %q stderr %q", got, out, errOut)
	}
	if out, _, err := run(t, c, "echo normal", ""); err != nil || out != "normal\n" {
		t.Errorf("unhooked command: %q %v", out, err)
	}
}

func TestSFTPWriteFsyncPosixRename(t *testing.T) {
	dir := t.TempDir()
	_, c := startWithClient(t, Config{})
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if v, ok := sc.HasExtension("fsync@openssh.com"); !ok || v != "1" {
		t.Errorf("fsync@openssh.com not advertised (%q, %v)", v, ok)
	}
	tmp, target := filepath.Join(dir, ".tmp"), filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	f, err := sc.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := f.Chmod(0o640); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.PosixRename(tmp, target); err != nil {
		t.Fatalf("PosixRename: %v", err)
	}
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("target content differs (len %d, err %v)", len(got), err)
	}
	fi, err := sc.Stat(target)
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != int64(len(data)) {
		t.Errorf("stat = %v %v", fi, err)
	}
	if _, err := sc.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file still there: %v", err)
	}
	// Relative paths resolve in Config.Dir.
	_, c2 := startWithClient(t, Config{Dir: dir})
	sc2, err := sftp.NewClient(c2)
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close()
	f2, err := sc2.Create("rel")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f2.Sync(); err != nil {
		t.Errorf("Sync relative: %v", err)
	}
	f2.Close()
	if b, err := os.ReadFile(filepath.Join(dir, "rel")); err != nil || string(b) != "x" {
		t.Errorf("relative file: %q %v", b, err)
	}
}

func TestCutAfterBytes(t *testing.T) {
	dir := t.TempDir()
	key := GenerateKey(t)
	s := Start(t, Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	c := dial(t, s.Addr(), key, ssh.FixedHostKey(s.HostKey()))
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	const limit = 100 << 10
	s.CutAfterBytes(limit)
	path := filepath.Join(dir, "cut")
	f, err := sc.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadFrom(bytes.NewReader(make([]byte, 4<<20)))
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		t.Fatal("4 MiB write survived a cut after 100 KiB")
	}
	c.Wait() // the connection is gone
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > limit {
		t.Errorf("landed %v bytes (err %v), want at most %d", fi.Size(), err, limit)
	}
	// The cut is one-shot: a new connection writes in full.
	c2 := dial(t, s.Addr(), key, ssh.FixedHostKey(s.HostKey()))
	sc2, err := sftp.NewClient(c2)
	if err != nil {
		t.Fatal(err)
	}
	defer sc2.Close()
	f2, err := sc2.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.ReadFrom(bytes.NewReader(make([]byte, 1<<20))); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 1<<20 {
		t.Errorf("second upload: %v %v", fi, err)
	}
}

func TestDirectTCPIPAndProxyJump(t *testing.T) {
	// A local TCP echo service stands for the KMS API port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	key := GenerateKey(t)
	bastion := Start(t, Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	target := Start(t, Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	bc := dial(t, bastion.Addr(), key, ssh.FixedHostKey(bastion.HostKey()))

	tc, err := bc.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tunnel echo: %q %v", buf, err)
	}
	tc.Close()

	// ProxyJump: SSH to target through the bastion.
	nc, err := bc.Dial("tcp", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, target.Addr(), &ssh.ClientConfig{
		User: "tester", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(target.HostKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	jc := ssh.NewClient(cc, chans, reqs)
	defer jc.Close()
	if out, _, err := run(t, jc, "echo hop", ""); err != nil || out != "hop\n" {
		t.Errorf("through bastion: %q %v", out, err)
	}
	want := []string{ln.Addr().String(), target.Addr()}
	if got := bastion.Tunnels(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Tunnels() = %q, want %q", got, want)
	}
	if got := target.Commands(); len(got) != 1 || got[0] != "echo hop" {
		t.Errorf("target commands = %q", got)
	}
}

func TestKeepaliveAndDrop(t *testing.T) {
	s, c := startWithClient(t, Config{})
	ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || !ok {
		t.Errorf("keepalive = %v, %v; want true", ok, err)
	}
	s.DropConnections()
	c.Wait()
	if _, err := c.NewSession(); err == nil {
		t.Error("session opened on a dropped connection")
	}
}

func TestHostCertificateAndKnownHosts(t *testing.T) {
	ca := NewCA(t)
	hostKey := GenerateKey(t)
	clientKey := GenerateKey(t)
	s := Start(t, Config{
		HostKey:        hostKey,
		HostCert:       ca.SignHost(t, hostKey.PublicKey(), "127.0.0.1"),
		AuthorizedKeys: []ssh.PublicKey{clientKey.PublicKey()},
	})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	WriteKnownHosts(t, kh, ca.KnownHostsLine(knownhosts.Normalize(s.Addr())))
	cb, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr(), clientKey, cb)
	if out, _, err := run(t, c, "echo cert", ""); err != nil || out != "cert\n" {
		t.Errorf("run: %q %v", out, err)
	}

	// A plain known_hosts line (and its hashed form) pins the bare key.
	plain := Start(t, Config{AuthorizedKeys: []ssh.PublicKey{clientKey.PublicKey()}})
	for _, line := range []string{plain.KnownHostsLine(), HashedKnownHostsLine(plain.Addr(), plain.HostKey())} {
		WriteKnownHosts(t, kh, line)
		cb, err := knownhosts.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		dial(t, plain.Addr(), clientKey, cb)
	}
	if !strings.HasPrefix(plain.KnownHostsLine(), "[127.0.0.1]:"+strconv.Itoa(plain.Port())+" ssh-ed25519 ") {
		t.Errorf("KnownHostsLine = %q", plain.KnownHostsLine())
	}
}

func TestAuthentication(t *testing.T) {
	key, other := GenerateKey(t), GenerateKey(t)
	s := Start(t, Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Password: "pw-sshtest", Users: []string{"ops"}})
	try := func(user string, auth ssh.AuthMethod) error {
		c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth}, HostKeyCallback: ssh.FixedHostKey(s.HostKey())})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := try("ops", ssh.PublicKeys(key)); err != nil {
		t.Errorf("authorized key refused: %v", err)
	}
	if err := try("ops", ssh.Password("pw-sshtest")); err != nil {
		t.Errorf("password refused: %v", err)
	}
	if err := try("ops", ssh.PublicKeys(other)); err == nil {
		t.Error("unknown key accepted")
	}
	if err := try("root", ssh.PublicKeys(key)); err == nil {
		t.Error("user outside Users accepted")
	}
}

func TestClientKeyFile(t *testing.T) {
	key := GenerateKey(t)
	for _, pass := range []string{"", "correct horse"} {
		path := ClientKeyFile(t, key, pass)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
		var s ssh.Signer
		if pass == "" {
			s, err = ssh.ParsePrivateKey(b)
		} else {
			var missing *ssh.PassphraseMissingError
			if _, err := ssh.ParsePrivateKey(b); !errors.As(err, &missing) {
				t.Errorf("encrypted key parsed without passphrase: %v", err)
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(b, []byte(pass))
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.PublicKey().Marshal(), key.PublicKey().Marshal()) {
			t.Error("written key differs")
		}
	}
}

func TestCorruptNextWriteAndNoFsync(t *testing.T) {
	dir := t.TempDir()
	s, c := startWithClient(t, Config{NoFsync: true})
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, ok := sc.HasExtension("fsync@openssh.com"); ok {
		t.Error("fsync@openssh.com advertised despite NoFsync")
	}
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); !ok {
		t.Error("posix-rename@openssh.com not advertised")
	}
	write := func(name string, data []byte) []byte {
		t.Helper()
		f, err := sc.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err == nil {
			t.Error("Sync succeeded on a server without fsync@openssh.com")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	data := []byte("exactly these bytes")
	s.CorruptNextWrite()
	got := write("a", data)
	diff := 0
	for i := range data {
		if i < len(got) && got[i] != data[i] {
			diff++
		}
	}
	if len(got) != len(data) || diff != 1 {
		t.Errorf("corrupted write landed %q, want %q with one byte flipped", got, data)
	}
	if got := write("b", data); !bytes.Equal(got, data) {
		t.Errorf("second write landed %q: the corruption must be one-shot", got)
	}
}

func TestMaxSessions(t *testing.T) {
	_, c := startWithClient(t, Config{MaxSessions: 2})
	var open []*ssh.Session
	for i := 0; i < 2; i++ {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		open = append(open, sess)
	}
	var oce *ssh.OpenChannelError
	if _, err := c.NewSession(); !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
		t.Fatalf("third session = %v, want administratively prohibited", err)
	}
	// Closing a session frees its slot.
	if err := open[0].Run("true"); err != nil {
		t.Fatal(err)
	}
	open[0].Close()
	out, _, err := run(t, c, "echo freed", "")
	if err != nil || out != "freed\n" {
		t.Errorf("after a session closed: %q %v", out, err)
	}
	open[1].Close()
}

// Ops records every file operation and command line, in order, with
// handles resolved to paths.
func TestOpsRecordFileOperationsAndCommands(t *testing.T) {
	dir := t.TempDir()
	s, c := startWithClient(t, Config{Dir: dir})
	if _, _, err := run(t, c, "true", ""); err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	tmp, target, other := filepath.Join(dir, ".tmp"), filepath.Join(dir, "target"), filepath.Join(dir, "other")
	f, err := sc.OpenFile(".tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL) // relative: resolved in Dir
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := sc.Open(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := sc.Chmod(tmp, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := sc.PosixRename(tmp, target); err != nil {
		t.Fatal(err)
	}
	if err := sc.Rename(target, other); err != nil {
		t.Fatal(err)
	}
	if err := sc.Remove(other); err != nil {
		t.Fatal(err)
	}
	want := []Op{
		{Kind: OpExec, Cmd: "true"},
		{Kind: OpOpen, Path: tmp, Write: true, Create: true, Excl: true},
		{Kind: OpOpened, Path: tmp},
		{Kind: OpSetstat, Path: tmp, Mode: 0o600, HasMode: true},
		{Kind: OpWrite, Path: tmp, Len: 5},
		{Kind: OpFsync, Path: tmp},
		{Kind: OpClose, Path: tmp},
		{Kind: OpOpen, Path: tmp},
		{Kind: OpOpened, Path: tmp},
	}
	got := s.Ops()
	if len(got) < len(want) || fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("ops = %v\nwant the prefix %v", got, want)
	}
	tail := []Op{
		{Kind: OpClose, Path: tmp},
		{Kind: OpSetstat, Path: tmp, Mode: 0o640, HasMode: true},
		{Kind: OpRename, Path: tmp, To: target},
		{Kind: OpRename, Path: target, To: other},
		{Kind: OpRemove, Path: other},
	}
	if len(got) < len(want)+len(tail) || fmt.Sprint(got[len(got)-len(tail):]) != fmt.Sprint(tail) {
		t.Fatalf("ops = %v\nwant the tail %v", got, tail)
	}
	reads := 0
	for _, op := range got[len(want) : len(got)-len(tail)] {
		if op.Kind != OpRead || op.Path != tmp {
			t.Errorf("between open and close of the read-back: %v", op)
		}
		reads++
	}
	if reads == 0 {
		t.Errorf("no read recorded: %v", got)
	}
}

// Every SFTP op carries the modes of its path and directory as they were
// when the request arrived; OpOpened, those right after the file was made.
func TestOpsSnapshotModes(t *testing.T) {
	dir := t.TempDir()
	s, c := startWithClient(t, Config{Dir: dir})
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	d := filepath.Join(dir, "d")
	p := filepath.Join(d, "f")
	if err := sc.Mkdir(d); err != nil {
		t.Fatal(err)
	}
	if err := sc.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := sc.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := sc.RemoveDirectory(d); err != nil {
		t.Fatal(err)
	}
	// The modes of a file and a directory the server creates: what the
	// umask leaves of 0666 and (pkg/sftp's mkdir) 0755.
	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(probe, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(probe+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	pf, err := os.Stat(probe)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := os.Stat(probe + ".d")
	if err != nil {
		t.Fatal(err)
	}
	created, made := pf.Mode().Perm(), pd.Mode()
	dirInfo, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	dirMode := dirInfo.Mode()
	type snap struct {
		kind          OpKind
		path          string
		exists        bool
		file, dirMode os.FileMode
	}
	var got []snap
	for _, op := range s.Ops() {
		got = append(got, snap{op.Kind, op.Path, op.Exists, op.FileMode, op.DirMode})
	}
	want := []snap{
		{OpMkdir, d, false, 0, dirMode},
		{OpSetstat, d, true, made, dirMode}, // before the chmod: as mkdir made it
		{OpOpen, p, false, 0, os.ModeDir | 0o700},
		{OpOpened, p, true, created, os.ModeDir | 0o700},
		{OpSetstat, p, true, created, os.ModeDir | 0o700},
		{OpWrite, p, true, 0o600, os.ModeDir | 0o700},
		{OpClose, p, true, 0o600, os.ModeDir | 0o700},
		{OpRemove, p, true, 0o600, os.ModeDir | 0o700},
		{OpRmdir, d, true, os.ModeDir | 0o700, dirMode},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshots =\n%v\nwant\n%v", got, want)
	}
}
