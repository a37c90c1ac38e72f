package remote_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"golang.org/x/crypto/ssh"
)

// sshdBinary returns the system's OpenSSH sshd, or "" when none is
// installed (Debian: openssh-server).
func sshdBinary() string {
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return "/usr/sbin/sshd"
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return ""
}

// openSSH is a running sshd of the system's OpenSSH.
type openSSH struct {
	port    int
	hostKey ssh.PublicKey
	// user to log in as: root when the test runs as root, as on CI; else
	// the current user, the only one a non-root sshd can log in.
	user string
	// sftpLog is where sftp-server logs every request, in order.
	sftpLog string
}

// startOpenSSH runs the system's OpenSSH sshd on 127.0.0.1 with its own
// config, host key and authorized_keys (in a temp dir), for this test only.
// It skips the test only when OpenSSH's server is not installed (.ci/run
// installs openssh-server).
//
// Sessions get HOME set to an empty directory, so that the login user's
// shell start-up files (Debian's bash reads ~/.bashrc for commands run by
// sshd) cannot slow every command down (1.1 s a command here, with a
// pyenv set-up in root's ~/.bashrc) or change its environment. When the
// test ends, sshd and every process below it are gone: the test fails if
// one outlived its connection.
func startOpenSSH(t *testing.T, client ssh.PublicKey) openSSH {
	t.Helper()
	sshd := sshdBinary()
	if sshd == "" {
		t.Skip("OpenSSH's sshd is not installed (apt-get install openssh-server; .ci/run does)")
	}
	u, err := osuser.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := openSSH{user: u.Username, sftpLog: filepath.Join(dir, "sftp-server.log")}
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
	if err := os.Mkdir(filepath.Join(dir, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// The privilege separation directory, which Debian's package
		// leaves to systemd's RuntimeDirectory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd privilege separation directory: %v", err)
		}
	}
	// Debian's sftp-server, as its sshd_config runs it, logging every
	// request (sshd runs it through the login shell, which redirects).
	sftpServer := "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(sftpServer); err != nil {
		t.Skipf("OpenSSH's sftp-server is not at %s (apt-get install openssh-server; .ci/run does)", sftpServer)
	}
	sftpServer += " -e -l DEBUG3 2>>" + o.sftpLog
	// The port is chosen free, then handed to sshd: another process may
	// take it in between, so a start that loses it is tried again.
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		o.port = ln.Addr().(*net.TCPAddr).Port
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
SetEnv HOME=%s/home
Subsystem sftp %s
LogLevel ERROR
`, o.port, dir, dir, dir, sftpServer)
		if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
		// A file, not a pipe: Wait must not wait for sshd's children, which
		// inherit stderr, to close it.
		logs, err := os.Create(filepath.Join(dir, fmt.Sprintf("sshd-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = logs
		err = cmd.Start()
		logs.Close()
		if err != nil {
			t.Fatalf("start %s: %v", sshd, err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() { stopOpenSSH(t, cmd, exited, logs.Name()) })
		if waitListening(o.port, exited) {
			o.hostKey = hk.PublicKey()
			return o
		}
		log, _ := os.ReadFile(logs.Name())
		if attempt < 3 && strings.Contains(string(log), "Address already in use") {
			continue
		}
		t.Fatalf("sshd did not listen on 127.0.0.1:%d:\n%s", o.port, log)
	}
}

// waitListening waits up to 10 s until 127.0.0.1:port accepts connections;
// false when sshd exited first or never listened.
func waitListening(port int, exited <-chan struct{}) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// stopOpenSSH ends the test's sshd once the processes it forked (one per
// connection, and whatever runs under them) have ended with their
// connections, so that sshd reaps them; it fails the test when one is still
// there seconds later (the test left a connection or a command behind), and
// kills it.
func stopOpenSSH(t *testing.T, cmd *exec.Cmd, exited <-chan struct{}, logFile string) {
	left := descendants(cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = descendants(cmd.Process.Pid) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(left) > 0 {
		t.Errorf("processes %v forked by sshd outlived the test's connections (killed now)", left)
	}
	if t.Failed() {
		log, _ := os.ReadFile(logFile)
		t.Logf("sshd log:\n%s", log)
	}
}

// descendants returns the live (not zombie) processes below pid, from
// /proc/*/stat.
func descendants(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	children := map[int][]int{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		// After "pid (comm)": state, ppid, ...
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		p, err1 := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pp, err2 := strconv.Atoi(fields[1])
		if err1 == nil && err2 == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// TestAgainstOpenSSH checks the behaviours that depend on the server with
// the real OpenSSH sshd: cancel under root logins (where sshd refuses
// signals), keepalive replies, an upload's fsync@openssh.com and
// posix-rename@openssh.com in order, direct-tcpip for ProxyJump.
func TestAgainstOpenSSH(t *testing.T) {
	e := newEnv(t)
	srv := startOpenSSH(t, e.key.PublicKey())
	e.trust(sshtest.KnownHostsLine("127.0.0.1:"+strconv.Itoa(srv.port), srv.hostKey))
	o := remote.Options{Alias: "openssh", HostName: "127.0.0.1", Port: srv.port, User: srv.user,
		IdentityFiles: []string{e.keyFile}, SSHConfigFile: "none", KnownHostsFiles: []string{e.knownHosts},
		AgentSocket: "none"}
	c := e.dial(o)
	// A connection of its own for keepalives every 100 ms, idle while the
	// other checks run (a busy one could miss replies on a loaded machine).
	ka := o
	ka.KeepAlive = 100 * time.Millisecond
	kc := e.dial(ka)
	kaStart := time.Now()

	if out, _, err := run(t, c, "echo hello; exit 0", ""); err != nil || out != "hello\n" {
		t.Fatalf("run: %q %v", out, err)
	}
	var xe *remote.ExitError
	if _, _, err := run(t, c, "exit 9", ""); !errors.As(err, &xe) || xe.Status != 9 {
		t.Fatalf("exit 9 = %v", err)
	}

	// Cancel ends the remote command (for root, sshd refuses the signal
	// and the command is found by its environment marker).
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

	// Upload: write, fsync@openssh.com, close, chmod, then
	// posix-rename@openssh.com over the target, in that order, as
	// sftp-server logged them; a file others may not read in a private
	// directory, 0700 before the file is created in it.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "blob")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, perm := range []os.FileMode{0o640, 0o644} {
		data := randomBytes(t, 5<<20+3)
		logged, err := os.ReadFile(srv.sftpLog) // none before the first SFTP session
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		sum, err := c.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", perm, srv.user)
		if err != nil || sum != sha(data) {
			t.Fatalf("upload: %s %v", sum, err)
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
			t.Error("uploaded content differs")
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode() != perm {
			t.Errorf("uploaded file: %v %v; want mode %v", fi, err, perm)
		}
		if left := tempFiles(t, dir); len(left) != 0 {
			t.Errorf("temp files left: %v", left)
		}
		checkSFTPOrder(t, srv.sftpLog, len(logged), target, len(data), perm)
	}

	// Keepalives are answered (with a failure reply): the idle connection
	// survived at least 5 of them.
	time.Sleep(time.Until(kaStart.Add(550 * time.Millisecond)))
	if _, _, err := run(t, kc, "true", ""); err != nil {
		t.Fatalf("run after keepalives: %v", err)
	}

	// The server as its own ProxyJump bastion (direct-tcpip).
	o.ProxyJump = srv.user + "@127.0.0.1:" + strconv.Itoa(srv.port)
	j := e.dial(o)
	if out, _, err := run(t, j, "echo jumped", ""); err != nil || !strings.Contains(out, "jumped") {
		t.Fatalf("run through ProxyJump: %q %v", out, err)
	}
}

// checkSFTPOrder checks, in sftp-server's log from byte from on, that the
// upload of size bytes to target created its temp file exclusively, wrote
// it all, fsynced, closed and chmod'ed it to perm, and renamed it over
// target as its last step on it. When others may not read perm, the temp
// file must be in a directory made for it and chmod'ed 0700 before the
// file was created, and removed last.
func checkSFTPOrder(t *testing.T, logFile string, from int, target string, size int, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	b = b[from:]
	lines := strings.Split(string(b), "\n")
	prefix := filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".kmsctl-tmp-")
	tmp := ""
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, `open "`+prefix); ok {
			name, flags, _ := strings.Cut(rest, `" flags `)
			tmp = prefix + name
			if !strings.HasPrefix(flags, "WRITE,CREATE,EXCL ") {
				t.Errorf("temp file opened with %s", flags)
			}
			break
		}
	}
	if tmp == "" {
		t.Fatalf("no temp file of %s opened in sftp-server's log:\n%s", target, b)
	}
	q := strconv.Quote(tmp)
	find := func(substr string) (first, last int) {
		first, last = -1, -1
		for i, l := range lines {
			if strings.Contains(l, substr) {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		return first, last
	}
	open, _ := find(`open ` + q + ` flags WRITE,CREATE,EXCL`)
	_, write := find("write " + q)
	fsync, _ := find("fsync " + q)
	closed, _ := find(fmt.Sprintf("close %s bytes read 0 written %d", q, size))
	_, chmod := find(fmt.Sprintf("set %s mode %04o", q, perm))
	rename, _ := find("posix-rename old " + q + " new " + strconv.Quote(target))
	_, lastMention := find(q)
	if write < 0 || fsync < 0 || closed < 0 || chmod < 0 || rename < 0 {
		t.Fatalf("a step is missing (write %d, fsync %d, close %d, chmod %d, posix-rename %d) in sftp-server's log:\n%s", write, fsync, closed, chmod, rename, b)
	}
	if !(open < write && write < fsync && fsync < closed && closed < chmod && chmod < rename && rename == lastMention) {
		t.Errorf("out of order: open %d, last write %d, fsync %d, close %d, chmod %d, posix-rename %d (last mention %d):\n%s", open, write, fsync, closed, chmod, rename, lastMention, b)
	}
	tmpDir := filepath.Dir(tmp)
	if private := perm&0o004 == 0; private != (tmpDir != filepath.Dir(target)) {
		t.Fatalf("mode %04o: temp file %s", perm, tmp)
	} else if !private {
		return
	}
	qd := strconv.Quote(tmpDir)
	mkdir, _ := find("mkdir name " + qd)
	dirChmod, _ := find("set " + qd + " mode 0700")
	rmdir, _ := find("rmdir name " + qd)
	_, lastDirMention := find(qd)
	if mkdir < 0 || dirChmod < 0 || rmdir < 0 || !(mkdir < dirChmod && dirChmod < open && rename < rmdir && rmdir == lastDirMention) {
		t.Errorf("private directory %s: mkdir %d, chmod 0700 %d, open of the temp file %d, rename %d, rmdir %d (last mention %d); want them in that order, rmdir last:\n%s", tmpDir, mkdir, dirChmod, open, rename, rmdir, lastDirMention, b)
	}
}
