//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Timeouts of the harness. They bound waiting, they are not assertions on speed.
const (
	dockerTimeout = 2 * time.Minute  // one docker CLI call
	imageTimeout  = 30 * time.Minute // building the image (debootstrap: ~5 min idle, ~10 loaded)
	bootTimeout   = 5 * time.Minute  // a container's sshd answering after docker start (over 2 min seen at load 50 on 2 cores)
)

// Lab is a set of Debian test-host containers running systemd and sshd on a private Docker
// network, created for one test and removed (by id) when the test ends, also on failure; or,
// for the package's shared lab (newSharedLab), removed by Teardown from TestMain.
type Lab struct {
	// t is the test the lab reports to: its owner, or for the shared lab the test using it now.
	t         testing.TB
	Root      string // repository root (holds go.mod and bin/)
	Dir       string // temp dir with the client key, known_hosts and ssh_config
	Image     string // test-host image tag
	Network   string // Docker network name
	networkID string
	prefix    string   // container name prefix, unique per lab
	runArgs   []string // docker create options that let systemd boot on this host

	// ClientKey is the private key (OpenSSH format) authorized for root in every container.
	ClientKey string
	// KnownHosts is the known_hosts file pinning every container's host key.
	KnownHosts string
	// SSHConfig is an ssh_config file with one Host entry per container (and jump aliases).
	SSHConfig string

	clientSigner ssh.Signer
	mu           sync.Mutex
	hosts        map[string]*Host
	gone         map[string]*Host // hosts removed for good (Remove), kept to create them again
	jumps        []jumpAlias

	// shared labs outlive their tests: what to remove is kept in teardown, run by Teardown.
	shared   bool
	teardown []func() error
}

// Host is one test-host container.
type Host struct {
	Name      string // short name, also the ssh_config alias and the hostname inside
	Container string // Docker container name
	ID        string // Docker container id
	IP        string // address on the lab's private network
	Port      int    // SSH port published on 127.0.0.1
	HostKey   ssh.PublicKey
	hostPriv  []byte // OpenSSH PEM of the host key
}

type jumpAlias struct{ alias, target, jump string }

// NewLab builds the test-host image if needed and starts one container per name, each with
// its own harness-generated host key pinned in l.KnownHosts. Docker missing is a failure,
// never a skip: CI must run this suite.
func NewLab(t testing.TB, names ...string) *Lab {
	t.Helper()
	return newLab(t, false, names)
}

// newLab is NewLab; a shared lab's containers, network and directory outlive t and are
// removed by Teardown.
func newLab(t testing.TB, shared bool, names []string) *Lab {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("the e2e suite needs Docker: docker not found in PATH (%v); install docker.io", err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{t: t, Root: root, hosts: map[string]*Host{}, gone: map[string]*Host{}, shared: shared}
	if shared {
		if l.Dir, err = os.MkdirTemp("", "kmsctl-e2e-shared-"); err != nil {
			t.Fatalf("create the shared lab's directory: %v", err)
		}
		l.onTeardown(func() error { return os.RemoveAll(l.Dir) })
	} else {
		l.Dir = t.TempDir()
	}
	if shared {
		// A shared lab is removed by TestMain once built; one that fails while being built
		// (a host's sshd not answering, say) is removed here, or its containers would
		// outlive the run.
		built := false
		defer func() {
			if !built {
				if err := l.Teardown(); err != nil {
					t.Errorf("remove the shared lab that failed to start: %v", err)
				}
			}
		}()
		defer func() { built = !t.Failed() }()
	}
	l.prefix = "kmsctl-e2e-" + randHex(4)
	l.Network = l.prefix

	l.Image = l.ensureImage()
	l.runArgs = l.systemdRunArgs()

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate client key: %v", err)
	}
	l.clientSigner, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("client signer: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "kmsctl-e2e client")
	if err != nil {
		t.Fatalf("marshal client key: %v", err)
	}
	l.ClientKey = filepath.Join(l.Dir, "id_ed25519")
	l.writeFile(l.ClientKey, pem.EncodeToMemory(block), 0o600)
	sshPub, _ := ssh.NewPublicKey(pub)
	l.writeFile(l.ClientKey+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644)
	l.KnownHosts = filepath.Join(l.Dir, "known_hosts")
	l.SSHConfig = filepath.Join(l.Dir, "ssh_config")

	id, err := l.createNetwork()
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	l.networkID = id
	l.onTeardown(func() error {
		if _, err := l.docker("network", "rm", id); err != nil {
			return fmt.Errorf("remove network %s: %w", l.Network, err)
		}
		return nil
	})

	for _, n := range names {
		l.hosts[n] = l.create(n, 0, "")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.waitSSH(l.hosts[n], bootTimeout)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			l.dumpLogs(names[i])
			t.Fatalf("host %s: %v", names[i], err)
		}
	}
	l.WriteKnownHosts()
	l.WriteSSHConfig()
	return l
}

// Host returns the named host; an unknown name fails the test.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.hosts[name]
	if !ok {
		l.t.Fatalf("no lab host %q", name)
	}
	return h
}

// Names returns the lab's host names, sorted.
func (l *Lab) Names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ns []string
	for n := range l.hosts {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// IP returns the host's address on the lab network.
func (l *Lab) IP(name string) string { return l.Host(name).IP }

// SSHPort returns the host's SSH port published on 127.0.0.1.
func (l *Lab) SSHPort(name string) int { return l.Host(name).Port }

// Addr returns "127.0.0.1:PORT" of the host's published SSH port.
func (l *Lab) Addr(name string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.SSHPort(name)))
}

// Exec runs a shell command inside the container (docker exec) and returns its combined output.
func (l *Lab) Exec(name, command string) (string, error) {
	out, err := l.docker("exec", l.Host(name).ID, "sh", "-c", command)
	if err != nil {
		return out, fmt.Errorf("exec %q in %s: %w", command, name, err)
	}
	return out, nil
}

// MustExec is Exec that fails the test on error.
func (l *Lab) MustExec(name, command string) string {
	l.t.Helper()
	out, err := l.Exec(name, command)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// CopyIn writes data to path (absolute) in the container, owned by root with mode, creating
// missing parent directories (docker cp of a tar stream; works on stopped containers too).
func (l *Lab) CopyIn(name, path string, mode int64, data []byte) {
	l.t.Helper()
	archive, err := tarFiles([]tarFile{{name: strings.TrimPrefix(path, "/"), mode: mode, data: data}})
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.dockerStdin(archive, "cp", "-", l.Host(name).ID+":/"); err != nil {
		l.t.Fatalf("copy %s into %s: %v", path, name, err)
	}
}

// Stop stops the container gracefully (systemd shuts down).
func (l *Lab) Stop(name string) {
	l.t.Helper()
	if _, err := l.docker("stop", l.Host(name).ID); err != nil {
		l.t.Fatalf("stop %s: %v", name, err)
	}
}

// Kill kills the container (SIGKILL to systemd: no clean shutdown).
func (l *Lab) Kill(name string) {
	l.t.Helper()
	if _, err := l.docker("kill", l.Host(name).ID); err != nil {
		l.t.Fatalf("kill %s: %v", name, err)
	}
}

// Start starts a stopped or killed container and waits until its sshd answers. Its SSH port
// stays the same (it is pinned at creation).
func (l *Lab) Start(name string) {
	l.t.Helper()
	h := l.Host(name)
	if _, err := l.docker("start", h.ID); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	oldPort := h.Port
	if err := l.inspect(h); err != nil {
		l.t.Fatalf("inspect %s: %v", name, err)
	}
	if err := l.waitSSH(h, bootTimeout); err != nil {
		l.dumpLogs(name)
		l.t.Fatalf("host %s after start: %v", name, err)
	}
	if h.Port != oldPort {
		l.WriteKnownHosts()
		l.WriteSSHConfig()
	}
}

// Replace removes the named container and creates a new one with the same name, hostname,
// IP on the lab network and published port (unless the port was taken meanwhile), with a NEW
// host key and a new, empty disk. known_hosts is NOT rewritten: it still pins the old key, as
// a user's known_hosts would. ssh_config is rewritten if the port changed.
func (l *Lab) Replace(name string) *Host {
	l.t.Helper()
	old := l.Host(name)
	if _, err := l.docker("rm", "-f", "-v", old.ID); err != nil {
		l.t.Fatalf("remove %s: %v", name, err)
	}
	return l.recreate(old)
}

// Remove removes the named container for good: its name leaves Names and ssh_config (not
// known_hosts), and its address stops answering. Restore creates it again.
func (l *Lab) Remove(name string) {
	l.t.Helper()
	h := l.Host(name)
	if _, err := l.docker("rm", "-f", "-v", h.ID); err != nil {
		l.t.Fatalf("remove %s: %v", name, err)
	}
	l.mu.Lock()
	delete(l.hosts, name)
	l.gone[name] = h
	l.mu.Unlock()
	l.WriteSSHConfig()
}

// Removed returns the names of the hosts removed by Remove and not restored, sorted.
func (l *Lab) Removed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ns []string
	for n := range l.gone {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Restore creates a host removed by Remove again, as Replace does (same name, IP and port,
// a new host key and disk), and rewrites ssh_config.
func (l *Lab) Restore(name string) *Host {
	l.t.Helper()
	l.mu.Lock()
	old, ok := l.gone[name]
	delete(l.gone, name)
	l.mu.Unlock()
	if !ok {
		l.t.Fatalf("restore %s: it was not removed", name)
	}
	h := l.recreate(old)
	l.WriteSSHConfig()
	return h
}

// recreate creates a container in old's place (name, IP, port) with a new host key.
func (l *Lab) recreate(old *Host) *Host {
	l.t.Helper()
	h := l.create(old.Name, old.Port, old.IP)
	if err := l.waitSSH(h, bootTimeout); err != nil {
		l.dumpLogsOf(h)
		l.t.Fatalf("recreated host %s: %v", old.Name, err)
	}
	l.mu.Lock()
	l.hosts[old.Name] = h
	l.mu.Unlock()
	if h.Port != old.Port {
		l.WriteSSHConfig()
	}
	return h
}

// Running reports whether the named container is running (false when it was stopped or killed).
func (l *Lab) Running(name string) (bool, error) {
	out, err := l.docker("inspect", "--format", "{{.State.Running}}", l.Host(name).ID)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "true", nil
}

// Teardown removes what a shared lab made (containers, network, directory), newest first, by
// id; for TestMain, after every test ran. It never reports to a test.
func (l *Lab) Teardown() error {
	var errs []error
	for i := len(l.teardown) - 1; i >= 0; i-- {
		if err := l.teardown[i](); err != nil {
			errs = append(errs, err)
		}
	}
	l.teardown = nil
	return errors.Join(errs...)
}

// onTeardown runs f when the lab's owner test ends (failing it on error), or for a shared
// lab in Teardown.
func (l *Lab) onTeardown(f func() error) {
	if l.shared {
		l.teardown = append(l.teardown, f)
		return
	}
	t := l.t
	t.Cleanup(func() {
		if err := f(); err != nil {
			t.Errorf("%v", err)
		}
	})
}

// createNetwork creates the lab's network with a subnet of its own (so that a replaced
// container can keep its IP: docker create --ip needs a user-configured subnet): the subnet
// Docker's pool picks for a probe network, named explicitly for the real one (retried if
// another network took it meanwhile).
func (l *Lab) createNetwork() (string, error) {
	var last error
	for range 5 {
		probe, err := l.docker("network", "create", "--label", "kmsctl-e2e=1", l.Network)
		if err != nil {
			return "", err
		}
		subnet, err := l.docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", probe)
		if _, rerr := l.docker("network", "rm", probe); rerr != nil {
			return "", fmt.Errorf("remove probe network: %w", rerr)
		}
		if err != nil {
			return "", fmt.Errorf("read the subnet of network %s: %w", l.Network, err)
		}
		id, err := l.docker("network", "create", "--label", "kmsctl-e2e=1", "--subnet", subnet, l.Network)
		if err == nil {
			return id, nil
		}
		last = err
	}
	return "", last
}

// AddJumpAlias adds an ssh_config entry `alias` that reaches target by its lab-network IP on
// port 22 with `ProxyJump jump` (ssh_config aliases, comma-separated for several hops; empty
// for no ProxyJump line), and rewrites l.SSHConfig.
func (l *Lab) AddJumpAlias(alias, target, jump string) {
	l.Host(target)
	l.mu.Lock()
	l.jumps = append(l.jumps, jumpAlias{alias: alias, target: target, jump: jump})
	l.mu.Unlock()
	l.WriteSSHConfig()
}

// WriteKnownHosts (re)writes l.KnownHosts with every current host key, under
// "[127.0.0.1]:PORT", the host's lab IP (port 22) and its name.
func (l *Lab) WriteKnownHosts() {
	l.t.Helper()
	var b bytes.Buffer
	for _, n := range l.Names() {
		h := l.Host(n)
		addrs := []string{
			knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))),
			h.IP,
			h.Name,
		}
		b.WriteString(knownhosts.Line(addrs, h.HostKey) + "\n")
	}
	l.writeFile(l.KnownHosts, b.Bytes(), 0o644)
}

// WriteSSHConfig (re)writes l.SSHConfig: one Host entry per container (HostName 127.0.0.1,
// its published port, root, the client key, the lab's known_hosts) and the jump aliases.
func (l *Lab) WriteSSHConfig() {
	l.t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by the kmsctl e2e harness\n")
	common := func() {
		fmt.Fprintf(&b, "  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n", l.ClientKey)
		fmt.Fprintf(&b, "  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n", l.KnownHosts)
		fmt.Fprintf(&b, "  StrictHostKeyChecking yes\n  ConnectTimeout 20\n")
	}
	l.mu.Lock()
	jumps := append([]jumpAlias(nil), l.jumps...)
	l.mu.Unlock()
	for _, j := range jumps {
		fmt.Fprintf(&b, "\nHost %s\n  HostName %s\n  Port 22\n", j.alias, l.IP(j.target))
		if j.jump != "" {
			fmt.Fprintf(&b, "  ProxyJump %s\n", j.jump)
		}
		common()
	}
	for _, n := range l.Names() {
		fmt.Fprintf(&b, "\nHost %s\n  HostName 127.0.0.1\n  Port %d\n", n, l.SSHPort(n))
		common()
	}
	l.writeFile(l.SSHConfig, b.Bytes(), 0o644)
}

// Dial opens an SSH connection from the test process to the host's published port as root,
// checking the pinned host key. It is for test set-up and checks, not for the code under test.
func (l *Lab) Dial(name string) (*ssh.Client, error) {
	h := l.Host(name)
	return ssh.Dial("tcp", l.Addr(name), &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(l.clientSigner)},
		HostKeyCallback: ssh.FixedHostKey(h.HostKey),
		Timeout:         10 * time.Second,
	})
}

// create makes, provisions and starts a container for name with a new host key, publishing
// SSH on 127.0.0.1:port (0: a free port), or on another free port if that one is taken, with
// the address ip on the lab network ("": one Docker picks).
func (l *Lab) create(name string, port int, ip string) *Host {
	l.t.Helper()
	h := &Host{Name: name, Container: l.prefix + "-" + name}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		l.t.Fatalf("generate host key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		l.t.Fatalf("host signer: %v", err)
	}
	h.HostKey = signer.PublicKey()
	block, err := ssh.MarshalPrivateKey(priv, "root@"+name)
	if err != nil {
		l.t.Fatalf("marshal host key: %v", err)
	}
	h.hostPriv = pem.EncodeToMemory(block)

	// An explicit port (not "127.0.0.1::22") keeps it across docker stop/start, which would
	// otherwise move it. A port taken meanwhile is retried with another free one.
	if port == 0 {
		port = freePort(l.t)
	}
	for attempt := 1; ; attempt++ {
		err = l.createOn(h, fmt.Sprintf("127.0.0.1:%d:22", port), ip)
		if err == nil {
			break
		}
		if attempt == 3 {
			l.t.Fatal(err)
		}
		l.t.Logf("start %s on port %d: %v; retrying on another port", name, port, err)
		port = freePort(l.t)
	}
	if err := l.inspect(h); err != nil {
		l.t.Fatalf("inspect %s: %v", name, err)
	}
	return h
}

// createOn creates the container publishing SSH as `publish`, copies its host key and root's
// authorized_keys in, and starts it. A container that fails to start is removed.
func (l *Lab) createOn(h *Host, publish, ip string) error {
	args := []string{"create", "--name", h.Container, "--hostname", h.Name,
		"--label", "kmsctl-e2e=1", "--network", l.networkID, "--network-alias", h.Name,
		"-p", publish}
	if ip != "" {
		args = append(args, "--ip", ip)
	}
	args = append(args, l.runArgs...)
	args = append(args, l.Image, "/sbin/init")
	id, err := l.docker(args...)
	if err != nil {
		return fmt.Errorf("create container %s: %w", h.Container, err)
	}
	h.ID = id
	l.onTeardown(func() error {
		if !l.shared && l.t.Failed() {
			l.dumpLogsOf(h)
		}
		if _, err := l.docker("rm", "-f", "-v", id); err != nil && !strings.Contains(err.Error(), "No such container") {
			return fmt.Errorf("remove container %s: %w", h.Container, err)
		}
		return nil
	})

	// Host key and root's authorized_keys, with exact modes, as one tar stream into /.
	archive, err := tarFiles([]tarFile{
		{name: "etc/ssh/ssh_host_ed25519_key", mode: 0o600, data: h.hostPriv},
		{name: "etc/ssh/ssh_host_ed25519_key.pub", mode: 0o644, data: ssh.MarshalAuthorizedKey(h.HostKey)},
		{name: "root/.ssh/", mode: 0o700},
		{name: "root/.ssh/authorized_keys", mode: 0o600, data: ssh.MarshalAuthorizedKey(l.clientSigner.PublicKey())},
	})
	if err != nil {
		return fmt.Errorf("tar provisioning files: %w", err)
	}
	if _, err := l.dockerStdin(archive, "cp", "-", id+":/"); err != nil {
		return fmt.Errorf("copy keys into %s: %w", h.Container, err)
	}
	if _, err := l.docker("start", id); err != nil {
		l.docker("rm", "-f", "-v", id)
		return fmt.Errorf("start container %s: %w", h.Container, err)
	}
	return nil
}

// inspect reads the container's lab IP and published SSH port.
func (l *Lab) inspect(h *Host) error {
	out, err := l.docker("inspect", "--format",
		`{{(index (index .NetworkSettings.Ports "22/tcp") 0).HostPort}} {{(index .NetworkSettings.Networks "`+l.Network+`").IPAddress}}`, h.ID)
	if err != nil {
		return err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return fmt.Errorf("unexpected inspect output %q", out)
	}
	port, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Errorf("parse published port %q: %w", f[0], err)
	}
	h.Port, h.IP = port, f[1]
	return nil
}

// waitSSH waits until the host's sshd completes a key exchange with its pinned key and
// lets root run a command.
func (l *Lab) waitSSH(h *Host, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
	var last error
	for time.Now().Before(deadline) {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
			User:            "root",
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(l.clientSigner)},
			HostKeyCallback: ssh.FixedHostKey(h.HostKey),
			Timeout:         5 * time.Second,
		})
		if err == nil {
			s, err2 := c.NewSession()
			if err2 == nil {
				err2 = s.Run("true")
				s.Close()
			}
			c.Close()
			if err2 == nil {
				return nil
			}
			err = err2
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("sshd on %s did not answer within %s: %w", addr, timeout, last)
}

// WaitAuthRefused waits until the host's sshd refuses root with the lab's client key on its
// published port (after a config change that forbids it) and fails the test otherwise.
func (l *Lab) WaitAuthRefused(name string) {
	l.t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for time.Now().Before(deadline) {
		c, err := l.Dial(name)
		if err != nil && strings.Contains(err.Error(), "unable to authenticate") {
			return
		}
		if c != nil {
			c.Close()
		}
		time.Sleep(300 * time.Millisecond)
	}
	l.t.Fatalf("sshd on %s still accepts the client key directly", name)
}

// systemdRunArgs returns the docker create options that let systemd run as PID 1 here
// (docs/design.md §7.3): on cgroup v1 the read-only cgroup bind mount; on cgroup v2 a private cgroup
// namespace, or --privileged as the last resort when a probe container does not boot with it.
// KMSCTL_E2E_PRIVILEGED=1 forces --privileged.
func (l *Lab) systemdRunArgs() []string {
	l.t.Helper()
	base := []string{"--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3"}
	privileged := append(append([]string(nil), base...), "--privileged", "--cgroupns=private")
	if os.Getenv("KMSCTL_E2E_PRIVILEGED") == "1" {
		return privileged
	}
	v, err := l.docker("info", "--format", "{{.CgroupVersion}}")
	if err != nil {
		l.t.Fatalf("docker info: %v", err)
	}
	if strings.TrimSpace(v) != "2" {
		return append(base, "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro")
	}
	private := append(append([]string(nil), base...), "--cgroupns=private")
	if err := l.probeBoot(private); err != nil {
		l.t.Logf("systemd does not boot with --cgroupns=private on this cgroup v2 host (%v): using --privileged", err)
		return privileged
	}
	return private
}

// probeBoot starts a throwaway container with args and waits until systemd reports the system
// running (or degraded), then removes it.
func (l *Lab) probeBoot(args []string) error {
	create := append([]string{"create", "--label", "kmsctl-e2e=1"}, args...)
	id, err := l.docker(append(create, l.Image, "/sbin/init")...)
	if err != nil {
		return err
	}
	defer l.docker("rm", "-f", "-v", id)
	if _, err := l.docker("start", id); err != nil {
		return err
	}
	// systemctl fails until systemd has set up its socket; then --wait blocks until booted.
	out, err := l.docker("exec", id, "sh", "-c", `for i in $(seq 90); do
		s=$(systemctl is-system-running --wait 2>/dev/null)
		case "$s" in running|degraded) echo "$s"; exit 0 ;; esac
		sleep 1
	done; echo "$s"; exit 1`)
	if err != nil {
		return fmt.Errorf("system state %q: %w", strings.TrimSpace(out), err)
	}
	return nil
}

// ensureImage runs e2e/image/build.sh, which builds the image only when its tag is missing.
func (l *Lab) ensureImage() string {
	l.t.Helper()
	script := filepath.Join(l.Root, "e2e", "image", "build.sh")
	ctx, cancel := context.WithTimeout(context.Background(), imageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("build test-host image (%s): %v\n%s", script, err, tail(stderr.String(), 4000))
	}
	tag := strings.TrimSpace(string(out))
	if tag == "" {
		l.t.Fatalf("%s printed no image tag", script)
	}
	return tag
}

// dumpLogs logs the container's sshd and systemd state, to explain a failure.
func (l *Lab) dumpLogs(name string) {
	l.mu.Lock()
	h := l.hosts[name]
	l.mu.Unlock()
	if h != nil {
		l.dumpLogsOf(h)
	}
}

func (l *Lab) dumpLogsOf(h *Host) {
	out, _ := l.docker("logs", "--tail", "40", h.ID)
	l.t.Logf("docker logs %s:\n%s", h.Container, out)
	out, _ = l.docker("exec", h.ID, "sh", "-c",
		"systemctl is-system-running; systemctl --failed --no-pager; journalctl -u ssh --no-pager -n 30")
	l.t.Logf("systemd state of %s:\n%s", h.Container, out)
}

func (l *Lab) docker(args ...string) (string, error) {
	return l.dockerStdin(nil, args...)
}

func (l *Lab) dockerStdin(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args[:min(len(args), 2)], " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (l *Lab) writeFile(path string, data []byte, mode os.FileMode) {
	l.t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		l.t.Fatalf("write %s: %v", path, err)
	}
}

type tarFile struct {
	name string // a trailing slash makes a directory
	mode int64
	data []byte
}

func tarFiles(files []tarFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if strings.HasSuffix(f.name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("write tar entry %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// repoRoot finds the module root from the test's working directory (the package dir).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
