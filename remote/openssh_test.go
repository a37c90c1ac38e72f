package remote_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"golang.org/x/crypto/ssh"
)

// startOpenSSH runs the system's OpenSSH sshd (opt-in: KMSCTL_TEST_OPENSSH=1) on 127.0.0.1 with its own
// config, host key and authorized_keys (in a temp dir), for this test
// only. It skips the test when sshd is not installed or we are not root
// (sshd then cannot switch to the login user).
func startOpenSSH(t *testing.T, client ssh.PublicKey) (port int, hostKey ssh.PublicKey) {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	if os.Getenv("KMSCTL_TEST_OPENSSH") != "1" {
		t.Skip("set KMSCTL_TEST_OPENSSH=1 to run against the system's sshd (slow when root's shell start-up is)")
	}
	if _, err := os.Stat(sshd); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and OpenSSH's sshd (bench/ssh.sh installs openssh-server)")
	}
	dir := t.TempDir()
	hk := sshtest.GenerateKey(t)
	block, err := ssh.MarshalPrivateKey(crypto.PrivateKey(hk.Private), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host_key"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(client), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s/host_key
AuthorizedKeysFile %s/authorized_keys
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 100
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
`, port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Skipf("sshd privilege separation directory: %v", err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %s", logs.String())
		}
	}
	return port, hk.PublicKey()
}

// TestAgainstOpenSSH checks the behaviours that depend on the server with
// the real OpenSSH sshd: signals on cancel, keepalive replies, fsync and
// posix-rename, direct-tcpip for ProxyJump.
func TestAgainstOpenSSH(t *testing.T) {
	e := newEnv(t)
	port, hostKey := startOpenSSH(t, e.key.PublicKey())
	e.trust(sshtest.KnownHostsLine("127.0.0.1:"+strconv.Itoa(port), hostKey))
	o := remote.Options{Alias: "openssh", HostName: "127.0.0.1", Port: port, User: "root",
		IdentityFiles: []string{e.keyFile}, SSHConfigFile: "none", KnownHostsFiles: []string{e.knownHosts},
		AgentSocket: "none", KeepAlive: 50 * time.Millisecond}
	c := e.dial(o)

	if out, _, err := run(t, c, "echo hello; exit 0", ""); err != nil || out != "hello\n" {
		t.Fatalf("run: %q %v", out, err)
	}
	var xe *remote.ExitError
	if _, _, err := run(t, c, "exit 9", ""); !errors.As(err, &xe) || xe.Status != 9 {
		t.Fatalf("exit 9 = %v", err)
	}

	// Cancel ends the remote command (sshd delivers the signal).
	pidFile := filepath.Join(t.TempDir(), "pid")
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx, "echo $$ > "+pidFile+"; exec sleep 60", nil, nil, nil) }()
	pid := waitForPid(t, pidFile)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run = %v", err)
	}
	waitGone(t, pid)

	// Keepalives are answered (with a failure reply): the connection survives.
	time.Sleep(300 * time.Millisecond)
	if _, _, err := run(t, c, "true", ""); err != nil {
		t.Fatalf("run after keepalives: %v", err)
	}

	// Upload uses fsync@openssh.com and posix-rename@openssh.com.
	dir := t.TempDir()
	target := filepath.Join(dir, "blob")
	data := randomBytes(t, 5<<20+3)
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := c.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", 0o600, "root:root")
	if err != nil || sum != sha(data) {
		t.Fatalf("upload: %s %v", sum, err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Error("uploaded content differs")
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}

	// The server as its own ProxyJump bastion (direct-tcpip).
	o.ProxyJump = "root@127.0.0.1:" + strconv.Itoa(port)
	j := e.dial(o)
	if out, _, err := run(t, j, "echo jumped", ""); err != nil || !strings.Contains(out, "jumped") {
		t.Fatalf("run through ProxyJump: %q %v", out, err)
	}
}
