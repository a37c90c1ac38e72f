//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
)

// TestMain runs the tests, then removes the shared Key Manager lab (its containers, network
// and directory, by id) if a test built it.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := shared.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "remove the shared e2e lab: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// shared is the one Key Manager lab of a `go test` run: three containers kms1..kms3 built by
// the first test that asks for them, reset between tests (sharedCluster) and removed by
// TestMain. It is the package's only package-level state: a lab outlives its tests by design.
var shared sharedLab

// sharedNames are the shared lab's hosts.
var sharedNames = []string{"kms1", "kms2", "kms3"}

// sharedLab holds the shared lab and what a reset needs: the cluster's secrets and files, and
// the state of each host's installed files once installed (the baseline a reset compares).
type sharedLab struct {
	mu     sync.Mutex
	broken error // why the lab could not be built or healed: later tests fail with it
	c      *minkmsCluster
	admin  kms.APIKey
	certs  string // lab_files: ca.crt and NAME.crt/NAME.key
	minkms string // the simulator binary installed as /usr/local/bin/minkms
	tun    *labkit.Tunnels
	// baseline is each host's installed files and service as left by the last install;
	// nil until the cluster is installed and joined.
	baseline map[string]string
}

// teardown removes the lab, if one was built.
func (s *sharedLab) teardown() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tun != nil {
		s.tun.Close()
		s.tun = nil
	}
	if s.c == nil {
		return nil
	}
	err := s.c.l.Teardown()
	s.c = nil
	return err
}

// sharedCluster returns the shared lab bound to t, reset to a healthy cluster of three
// joined nodes with the lab's HSM key, every installed file as installed, no kmsctl lease on
// any host and fresh kmsctl state: checked in a few seconds when the last test left it so,
// otherwise healed (containers recreated or started, storage wiped, the install play run
// again, the nodes joined).
func sharedCluster(t *testing.T) *minkmsCluster {
	t.Helper()
	start := time.Now()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	c := shared.hosts(t)
	ok := false
	defer func() {
		if !ok && shared.broken == nil {
			shared.broken = fmt.Errorf("the shared lab could not be reset for %s (see its log)", t.Name())
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := shared.check(ctx, t)
	var files filesDiffer
	if errors.As(err, &files) {
		// Files only (recover node renders its own env file and unit): the install play puts
		// them back and restarts the node, which keeps its data and rejoins.
		t.Logf("shared lab: %v; installing its files again", err)
		shared.install(t)
		err = shared.check(ctx, t)
	}
	if err != nil {
		t.Logf("shared lab: %v; healing it", err)
		shared.heal(ctx, t)
		if err := shared.check(ctx, t); err != nil {
			t.Fatalf("shared lab after healing: %v", err)
		}
	}
	ok = true
	t.Logf("shared lab ready in %s", time.Since(start).Round(time.Millisecond))
	return c
}

// sharedInstalled records that the test bound to the lab installed and joined the cluster
// itself (with the lab's inventory, certificates, HSM key and admin key): the state a reset
// compares with is taken now.
func sharedInstalled(t *testing.T) {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.baseline = shared.files(t)
}

// hosts builds the lab on first use, binds it to t and puts its containers back.
func (s *sharedLab) hosts(t *testing.T) *minkmsCluster {
	t.Helper()
	if s.broken != nil {
		t.Fatalf("shared lab: %v", s.broken)
	}
	ok := false
	defer func() {
		if !ok && s.broken == nil {
			s.broken = fmt.Errorf("the shared lab could not be built or put back for %s (see its log)", t.Name())
		}
	}()
	if s.c == nil {
		s.build(t)
	}
	l := s.c.l
	l.t = t
	// Containers removed for good are created again, stopped or killed ones started.
	for _, n := range l.Removed() {
		l.Restore(n)
	}
	for _, n := range l.Names() {
		if up, err := l.Running(n); err != nil {
			t.Fatalf("shared lab: %v", err)
		} else if !up {
			l.Start(n)
		}
	}
	l.WriteKnownHosts()
	l.WriteSSHConfig()
	if err := os.RemoveAll(filepath.Join(l.Dir, "home")); err != nil {
		t.Fatalf("shared lab: remove kmsctl's state: %v", err)
	}
	ok = true
	return s.c
}

// build makes the containers and the cluster's files: the lab's certificates, HSM key, admin
// API key (a 0600 file) and the inventory (the API over SSH, the lab's CA and known_hosts).
func (s *sharedLab) build(t *testing.T) {
	t.Helper()
	start := time.Now()
	l := newLab(t, true, sharedNames)
	// The lab is kept (and torn down by TestMain) from here on, even if the rest fails.
	s.c = &minkmsCluster{l: l}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		t.Fatal(err)
	}
	s.c.hsmKey = hsm.New(secret)
	var err error
	if s.admin, err = kms.GenerateAPIKey(); err != nil {
		t.Fatal(err)
	}
	s.certs = filepath.Join(l.Dir, "certs")
	if err := os.Mkdir(s.certs, 0o700); err != nil {
		t.Fatal(err)
	}
	nodes := map[string][]string{}
	for _, n := range sharedNames {
		nodes[n] = []string{l.IP(n)}
	}
	if err := labkit.WriteCerts(s.certs, nodes); err != nil {
		t.Fatal(err)
	}
	apiKey := filepath.Join(l.Dir, "api.key")
	if err := os.WriteFile(apiKey, []byte(s.admin.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A copy of the simulator: bin/ is shared with whoever runs `make build` meanwhile, and a
	// rebuilt binary would (rightly) make a second install play change it.
	s.minkms = filepath.Join(l.Dir, "minkms")
	if err := os.WriteFile(s.minkms, minkmsRead(t, filepath.Join(l.Root, "bin", "kmsim")), 0o755); err != nil {
		t.Fatal(err)
	}
	var inv strings.Builder
	fmt.Fprintf(&inv, "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n"+
		"    kms_api: ssh\n    kms_ca_file: %s\n    kms_api_key_file: %s\n  children:\n    kms:\n      hosts:\n",
		l.ClientKey, l.KnownHosts, filepath.Join(s.certs, "ca.crt"), apiKey)
	for _, n := range sharedNames {
		fmt.Fprintf(&inv, "        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n          kms_endpoint: %s:7373\n", n, l.SSHPort(n), n)
	}
	s.c.inventory = filepath.Join(l.Dir, "inventory.yml")
	writeTestFile(t, s.c.inventory, inv.String())
	t.Logf("shared lab: %d containers up in %s", len(sharedNames), time.Since(start).Round(time.Millisecond))
}

// installPlay returns the arguments of a kmsctl run of e2e/lab/install-minkms.yml on the lab
// with its secrets, and the 0600 extra-vars file holding them (the caller removes it).
func (s *sharedLab) installPlay(t *testing.T) ([]string, string) {
	t.Helper()
	l := s.c.l
	secrets := filepath.Join(l.Dir, "secrets.yml")
	writeTestFile(t, secrets, fmt.Sprintf("minkms_hsm_key: %q\nminkms_admin_identity: %q\n", s.c.hsmKey.Text(), s.admin.Identity()))
	return []string{"-i", s.c.inventory, "play", filepath.Join(l.Root, "e2e", "lab", "install-minkms.yml"),
		"-e", "@" + secrets, "-e", "lab_files=" + s.certs, "-e", "minkms_src=" + s.minkms}, secrets
}

// sharedInstallPlay is installPlay of the shared lab, for a test that installs it itself.
func sharedInstallPlay(t *testing.T) ([]string, string) {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.installPlay(t)
}

// sharedAdmin returns the shared lab's admin API key and its certificates directory.
func sharedAdmin() (kms.APIKey, string) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return shared.admin, shared.certs
}

// heal makes the lab a fresh cluster of three on its current containers: every node's
// service stopped, its storage and kmsctl's leases removed, the install play run (it puts
// back every file and starts the service), the nodes joined through kms1.
func (s *sharedLab) heal(ctx context.Context, t *testing.T) {
	t.Helper()
	start := time.Now()
	s.parallel(t, "systemctl stop minkms 2>/dev/null; rm -rf /var/lib/kmsctl; "+
		"if [ -d "+storagePath+" ]; then find "+storagePath+" -mindepth 1 -delete; fi")
	s.install(t)
	s.dial(ctx, t)
	if err := kms.Join(ctx, s.c.client, labkit.Endpoint(sharedNames[0]), labkit.Endpoints(sharedNames[1:]), time.Minute); err != nil {
		t.Fatalf("shared lab: join: %v", err)
	}
	s.baseline = s.files(t)
	t.Logf("shared lab healed (installed and joined) in %s", time.Since(start).Round(time.Millisecond))
}

// install runs the install play on the lab: every file as installed, the service started.
func (s *sharedLab) install(t *testing.T) {
	t.Helper()
	args, secrets := s.installPlay(t)
	r := kmsctl(t, s.c.l, args...)
	if err := os.Remove(secrets); err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK {
		t.Fatalf("shared lab: install minkms: want exit 0\n%s", r)
	}
}

// filesDiffer is check's finding that a host's installed files or service differ from the
// baseline (and nothing else was checked yet).
type filesDiffer struct{ host, now, installed string }

func (e filesDiffer) Error() string {
	return fmt.Sprintf("%s differs from its installed state:\nnow:\n%s\ninstalled:\n%s", e.host, e.now, e.installed)
}

// dial (re)connects the lab's tunnels and client: containers may have new host keys.
func (s *sharedLab) dial(ctx context.Context, t *testing.T) {
	t.Helper()
	if s.tun != nil {
		s.tun.Close()
		s.tun = nil
	}
	tun, err := labkit.DialTunnels(ctx, s.c.l.SSHConfig, sharedNames)
	if err != nil {
		t.Fatalf("shared lab: %v", err)
	}
	s.tun = tun
	if s.c.client, err = labkit.NewClient(tun, filepath.Join(s.certs, "ca.crt"), s.admin, sharedNames); err != nil {
		t.Fatalf("shared lab: %v", err)
	}
}

// check says why the lab is not a healthy cluster in its known state, or nil: the installed
// files and service of every host as in the baseline with no kmsctl lease, and through the
// API three members up under one leader, each ready for writes.
func (s *sharedLab) check(ctx context.Context, t *testing.T) error {
	t.Helper()
	if s.baseline == nil {
		return errors.New("not installed yet")
	}
	files := s.files(t)
	for _, n := range sharedNames {
		if files[n] != s.baseline[n] {
			return filesDiffer{n, files[n], s.baseline[n]}
		}
	}
	s.dial(ctx, t)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	views, err := kms.WaitConverged(wctx, s.c.client, labkit.Endpoints(sharedNames))
	if err != nil {
		return fmt.Errorf("the cluster has not converged: %w (%v)", err, views)
	}
	for _, v := range views {
		if v.Up != len(sharedNames) || len(v.Members) != len(sharedNames) {
			return fmt.Errorf("%s: want %d members up: %s", v.Endpoint, len(sharedNames), v)
		}
	}
	for _, ep := range labkit.Endpoints(sharedNames) {
		for {
			err := s.c.client.Ready(wctx, ep, true)
			if err == nil {
				break
			}
			if wctx.Err() != nil {
				return fmt.Errorf("%s not ready for writes: %w", ep, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// files is each host's installed files (sha256), its service's state and kmsctl's lease
// directory, read on every host at once.
func (s *sharedLab) files(t *testing.T) map[string]string {
	t.Helper()
	return s.parallel(t, "sha256sum /etc/minkms/* /etc/default/minkms /etc/systemd/system/minkms.service /usr/local/bin/minkms 2>&1; "+
		"systemctl is-active minkms; systemctl is-enabled minkms; ls -A /var/lib/kmsctl 2>/dev/null; true")
}

// parallel runs command on every host at once and returns each one's output.
func (s *sharedLab) parallel(t *testing.T, command string) map[string]string {
	t.Helper()
	l := s.c.l
	out := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, n := range sharedNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := l.Exec(n, command)
			mu.Lock()
			defer mu.Unlock()
			out[n] = o
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("shared lab: %v", errors.Join(errs...))
	}
	return out
}

// uninstall removes the Key Manager from every host of the lab (service, files, storage,
// service user, kmsctl's leases), so that a test can install it on fresh hosts; the next
// sharedCluster installs it again if that test did not.
func (s *sharedLab) uninstall(t *testing.T) {
	t.Helper()
	s.baseline = nil
	s.parallel(t, "systemctl disable --now minkms 2>/dev/null; "+
		"rm -rf /etc/systemd/system/minkms.service /etc/default/minkms /etc/minkms /usr/local/bin/minkms "+storagePath+" /var/lib/kmsctl; "+
		"systemctl daemon-reload; systemctl reset-failed minkms 2>/dev/null; "+
		"userdel minkms-user 2>/dev/null; groupdel minkms-user 2>/dev/null; true")
}

// sharedFreshHosts returns the shared lab bound to t with the Key Manager removed from its
// hosts (see uninstall).
func sharedFreshHosts(t *testing.T) *minkmsCluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	c := shared.hosts(t)
	shared.uninstall(t)
	return c
}

// redial connects the shared lab's tunnels and client again, for a test that gave a node a
// new host key (and rewrote known_hosts).
func (c *minkmsCluster) redial(ctx context.Context, t *testing.T) {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.dial(ctx, t)
}

// seeded is what a test makes on the cluster before it puts it through a failure or a
// change, to find again afterwards: keys in the default enclave and a ciphertext made under
// the first.
type seeded struct {
	keys       []string
	plaintext  []byte
	ciphertext []byte
	version    uint32 // the version of keys[0] that made ciphertext
}

// seed creates n keys named prefix-I-RANDOM through c's client and encrypts a plaintext
// that says "made before "+when under the first.
func (c *minkmsCluster) seed(ctx context.Context, t *testing.T, prefix string, n int, when string) seeded {
	t.Helper()
	var s seeded
	for i := range n {
		name := fmt.Sprintf("%s-%d-%s", prefix, i, randHex(4))
		if err := c.client.CreateKey(ctx, "", name); err != nil {
			t.Fatalf("create key %s: %v", name, err)
		}
		s.keys = append(s.keys, name)
	}
	s.plaintext = []byte("made before " + when + " " + randHex(8))
	var err error
	if s.ciphertext, s.version, err = c.client.Encrypt(ctx, "", s.keys[0], s.plaintext, nil); err != nil {
		t.Fatal(err)
	}
	return s
}
