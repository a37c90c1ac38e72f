package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// recoverLab is a three-node simulator cluster whose nodes are SSH hosts
// (in-process SSH servers, passwordless sudo) with the vendor's layout in a
// directory of their own. `systemctl start` of minkms.service starts a
// simulator node from what is on the host: the HSM key of its env file,
// the certificate and key in its certs directory, its storage path as data
// directory, on the node's address; `systemctl stop` stops it.
type recoverLab struct {
	t         *testing.T
	inventory string
	src       string // the local sources of the node files (kms_*_src)
	admin     kms.APIKey
	hsmKey    hsm.Key
	ca        *kmsim.CA
	hosts     []string
	dirs      []string
	// leaseDirs are the nodes' lease directories (kms_lease_dir).
	leaseDirs []string
	addrs     []string
	servers   []*sshtest.Server

	mu    sync.Mutex
	nodes []*kmsim.Node // nil: stopped
	// wedged hosts report their service active while their node is
	// stopped, until `systemctl stop`.
	wedged map[int]bool
	// disabled hosts have their unit disabled (`systemctl disable`, until
	// `systemctl enable`); the others enabled.
	disabled map[int]bool
}

func newRecoverLab(t *testing.T) *recoverLab {
	t.Helper()
	ca, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	l := &recoverLab{t: t, admin: admin, hsmKey: hsm.New([32]byte{7}), ca: ca, wedged: map[int]bool{}, disabled: map[int]bool{}}
	src := t.TempDir()
	l.src = src
	write := func(path string, b []byte, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "ca.crt"), ca.CertPEM, 0o644)
	write(filepath.Join(src, "minkms"), []byte(l.binary(kmsim.DefaultVersion)), 0o755)
	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	var hosts, known strings.Builder
	var reserved []net.Listener
	for i := range 3 {
		h := fmt.Sprintf("kms%d", i+1)
		dir := t.TempDir()
		l.hosts, l.dirs = append(l.hosts, h), append(l.dirs, dir)
		certPEM, keyPEM, err := ca.Issue("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(src, h+".crt"), certPEM, 0o644)
		write(filepath.Join(src, h+".key"), keyPEM, 0o600)
		write(filepath.Join(dir, "certs/public.crt"), certPEM, 0o644)
		write(filepath.Join(dir, "certs/private.key"), keyPEM, 0o600)
		write(filepath.Join(dir, "certs/ca.crt"), ca.CertPEM, 0o644)
		write(filepath.Join(dir, "config.yaml"), []byte(l.config(dir)), 0o640)
		write(filepath.Join(dir, "minkms"), []byte("old binary\n"), 0o755)
		write(filepath.Join(dir, "minkms.env"), []byte("MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\n"), 0o600)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		// The listener is held until every node and SSH server has its
		// port: a port closed at once can be handed out again (two nodes
		// on one address made the lab's join fail with 409).
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		reserved = append(reserved, ln)
		l.addrs = append(l.addrs, ln.Addr().String())
		l.nodes = append(l.nodes, nil)
		s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Sudo: sshtest.SudoAllow, Exec: l.systemctl(i)})
		l.servers = append(l.servers, s)
		_, port, _ := net.SplitHostPort(l.addrs[i])
		fmt.Fprintf(&hosts, "        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n          kms_endpoint: %s\n          kms_port: %s\n"+
			"          kms_storage_path: %s/data\n          kms_env_file: %[5]s/minkms.env\n          kms_config_file: %[5]s/config.yaml\n"+
			"          kms_certs_dir: %[5]s/certs\n          kms_binary: %[5]s/minkms\n          kms_unit_file: %[5]s/minkms.service\n"+
			"          kms_tls_cert_src: %[6]s/%[1]s.crt\n          kms_tls_key_src: %[6]s/%[1]s.key\n          kms_lease_dir: %[7]s\n",
			h, s.Port(), l.addrs[i], port, dir, src, l.leaseDir(i))
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	for _, ln := range reserved {
		ln.Close()
	}
	for i := range 3 {
		if err := l.start(i); err != nil {
			t.Fatalf("start kms%d: %v", i+1, err)
		}
	}
	c := l.client(l.addrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for c.Ready(ctx, l.addrs[0], true) != nil && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := kms.Join(ctx, c, l.addrs[0], l.addrs[1:], 30*time.Second); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	write(kh, []byte(known.String()), 0o600)
	apiKeyFile := filepath.Join(dir, "api.key")
	write(apiKeyFile, []byte(l.admin.Secret()+"\n"), 0o600)
	hsmKeyFile := filepath.Join(dir, "hsm.key")
	write(hsmKeyFile, []byte(l.hsmKey.Text()+"\n"), 0o600)
	l.inventory = filepath.Join(dir, "inventory.yml")
	write(l.inventory, []byte(fmt.Sprintf("all:\n  vars:\n    ansible_user: tester\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n"+
		"    kms_api: ssh\n    kms_ca_file: %s\n    kms_api_key_file: %s\n    kms_hsm_key_file: %s\n    kms_user: root\n    kms_ca_src: %s\n    kms_binary_src: %s\n  children:\n    kms:\n      hosts:\n%s",
		keyFile, kh, filepath.Join(src, "ca.crt"), apiKeyFile, hsmKeyFile, filepath.Join(src, "ca.crt"), filepath.Join(src, "minkms"), hosts.String())), 0o600)
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, n := range l.nodes {
			if n != nil {
				n.Close()
			}
		}
	})
	return l
}

// leaseDir returns node i's lease directory, made on first use.
func (l *recoverLab) leaseDir(i int) string {
	for len(l.leaseDirs) <= i {
		l.leaseDirs = append(l.leaseDirs, l.t.TempDir())
	}
	return l.leaseDirs[i]
}

func (l *recoverLab) client(eps ...string) *kms.Client {
	c, err := kms.New(kms.Config{Endpoints: eps, APIKey: l.admin, RootCAs: l.ca.Pool()})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(c.Close)
	return c
}

// binary is the lab's server binary: the simulator stands in for it, and
// it answers --version as the simulator does, with version.
func (l *recoverLab) binary(version string) string {
	return "#!/bin/sh\n# the simulator stands in for it\necho 'minkms (kmsim) version " + version + " commit lab'\n"
}

// config is the lab's configuration of the node in dir, as a person
// would write it (a comment the built-in template does not write).
func (l *recoverLab) config(dir string) string {
	return fmt.Sprintf("# written by hand\nversion: v1\nadmin:\n  identity: %s\ntls:\n  certs:\n    - key: %s/certs/private.key\n      cert: %[2]s/certs/public.crt\n  ca: %[2]s/certs/ca.crt\n",
		l.admin.Identity(), dir)
}

// start starts node i from the files on its host: the HSM key of its env
// file, and its config file (admin identity, certificate and key, CA).
func (l *recoverLab) start(i int) error {
	dir := l.dirs[i]
	env, err := os.ReadFile(filepath.Join(dir, "minkms.env"))
	if err != nil {
		return err
	}
	var keyText string
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MINIO_KMS_HSM_KEY="); ok {
			keyText = v
		}
	}
	key, err := hsm.Parse(keyText)
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	fc, err := kmsim.LoadConfig(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return err
	}
	cfg := kmsim.Config{Dir: filepath.Join(dir, "data"), HSMKey: key, Address: l.addrs[i], HeartbeatInterval: 50 * time.Millisecond}
	if err := fc.Apply(&cfg); err != nil {
		return err
	}
	n, err := kmsim.Start(context.Background(), cfg)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.nodes[i] = n
	l.mu.Unlock()
	return nil
}

// kill stops node i as a crash would (the service is then inactive).
func (l *recoverLab) kill(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nodes[i] != nil {
		l.nodes[i].Close()
		l.nodes[i] = nil
	}
}

var systemctlRe = regexp.MustCompile(`systemctl (show|start|stop|enable|disable|daemon-reload)\b`)

// systemctl answers host i's systemctl commands for minkms.service.
func (l *recoverLab) systemctl(i int) sshtest.ExecFunc {
	return func(_ context.Context, cmd string, _ io.Reader, stdout, stderr io.Writer) (int, bool) {
		m := systemctlRe.FindStringSubmatch(cmd)
		if m == nil {
			return 0, false
		}
		l.mu.Lock()
		running := l.nodes[i] != nil
		wedged := l.wedged[i]
		switch m[1] {
		case "stop":
			delete(l.wedged, i)
		case "disable":
			l.disabled[i] = true
		case "enable":
			delete(l.disabled, i)
		}
		unitFile := "enabled"
		if l.disabled[i] {
			unitFile = "disabled"
		}
		l.mu.Unlock()
		switch m[1] {
		case "show":
			state, sub := "inactive", "dead"
			if running || wedged {
				state, sub = "active", "running"
			}
			fmt.Fprintf(stdout, "LoadState=loaded\nActiveState=%s\nSubState=%s\nUnitFileState=%s\n", state, sub, unitFile)
		case "start":
			if !running {
				if err := l.start(i); err != nil {
					fmt.Fprintln(stderr, err)
					return 1, true
				}
			}
		case "stop":
			l.kill(i)
		}
		return 0, true
	}
}

// snapshot is every file under each host's directory with its content.
func (l *recoverLab) snapshot() string {
	var b strings.Builder
	for _, d := range l.dirs {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				c, _ := os.ReadFile(p)
				fmt.Fprintf(&b, "%s %o %x\n", p, fi.Mode(), c)
			}
			return nil
		})
	}
	return b.String()
}

func (l *recoverLab) recover(t *testing.T, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	code := te.run(t, append([]string{"recover", "node", "-i", l.inventory, "--ssh-config", "none"}, args...)...)
	return te, code
}

func keyList(t *testing.T, c *kms.Client) []string {
	t.Helper()
	var out []string
	for k, err := range c.ListKeys(context.Background(), "", "") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, (*pb.KeyStatusResponse).GetName(k))
	}
	return out
}

// TestRecoverNode: kms3's Key Manager killed and its storage wiped (a lost
// disk); --check prints the plan and changes nothing; recover node kms3
// --yes rebuilds it: every node lists it, every key is there through it,
// and a ciphertext made before the failure decrypts through kms3 (checked
// through the Key Manager API).
func TestRecoverNode(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	c := l.client(l.addrs[0])
	for _, k := range []string{"k1", "k2"} {
		if err := c.CreateKey(ctx, "", k); err != nil {
			t.Fatal(err)
		}
	}
	ct, version, err := c.Encrypt(ctx, "", "k1", []byte("before"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l.kill(2)
	if err := os.RemoveAll(filepath.Join(l.dirs[2], "data")); err != nil {
		t.Fatal(err)
	}
	before := l.snapshot()
	te, code := l.recover(t, "kms3", "--check")
	if code != 0 || !strings.Contains(te.out.String(), "plan for kms3") || !strings.Contains(te.out.String(), "CLUSTER:EDIT on kms1") {
		t.Fatalf("--check: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("--check changed files:\n%s\n---\n%s", before, after)
	}
	te, code = l.recover(t, "kms3")
	if code != exit.Usage || !strings.Contains(te.errOut.String(), "--yes") {
		t.Fatalf("without --yes nor a terminal: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for want, args := range map[string][]string{
		"kms3 is named twice": {"kms3", "kms3"},
		"kms9 is not a host of group kms (its hosts: kms1, kms2, kms3). Name a host":         {"kms9"},
		"kms22 is not a host of group kms (its hosts: kms1, kms2, kms3). Did you mean kms2?": {"kms22"},
		"--limit is not taken": {"kms3", "--limit", "kms1,kms3"},
	} {
		te, code = l.recover(t, append(args, "--yes")...)
		if code != exit.Usage || !strings.Contains(te.errOut.String(), want) {
			t.Fatalf("recover node %v: exit %d, want %d and %q\n%s\n%s", args, code, exit.Usage, want, te.out, te.errOut)
		}
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("usage errors changed files:\n%s\n---\n%s", before, after)
	}
	te, code = l.recover(t, "kms3", "--yes")
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "RECOVERED kms3") || !strings.Contains(out, "kms3 prove") {
		t.Fatalf("recover kms3: exit %d\n%s\n%s", code, out, te.errOut)
	}
	if strings.Contains(out+te.errOut.String()+runLogs(t, te), l.hsmKey.Text()) || strings.Contains(out+runLogs(t, te), l.admin.Secret()) {
		t.Error("a key appears in the output or run log")
	}
	m := regexp.MustCompile(`run (\S+) \(its journal: kmsctl runs show`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no run ID in\n%s", out)
	}
	shown := testEnv(t)
	shown.env.stateDir = te.env.stateDir
	if code := shown.run(t, "runs", "show", m[1]); code != 0 || !strings.Contains(shown.out.String(), "kms_remove_node") || !strings.Contains(shown.out.String(), "kms_add_node") {
		t.Errorf("runs show %s: exit %d\n%s\n%s", m[1], code, shown.out, shown.errOut)
	}
	c3 := l.client(l.addrs[2])
	for i, ep := range l.addrs {
		v := kms.View(ctx, l.client(ep), ep)
		if v.Err != nil || len(v.Members) != 3 {
			t.Fatalf("node %d's view: %+v", i, v)
		}
		if _, ok := v.Lists(l.addrs[2]); !ok {
			t.Errorf("%s does not list kms3", ep)
		}
	}
	if got := keyList(t, c3); strings.Join(got, ",") != "k1,k2" {
		t.Errorf("keys through kms3: %v", got)
	}
	if plain, err := c3.Decrypt(ctx, "", "k1", version, ct, nil); err != nil || string(plain) != "before" {
		t.Errorf("decrypt through kms3: %q, %v", plain, err)
	}
	if fi, err := os.Stat(filepath.Join(l.dirs[2], "minkms.env")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dirs[2], "minkms")); !strings.Contains(string(b), "the simulator stands in") {
		t.Errorf("binary not pushed: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(l.dirs[2], "config.yaml")); string(b) != l.config(l.dirs[2]) {
		t.Errorf("config with no source not kept: %q", b)
	}
}

// TestRecoverTwoNodes: kms2 and kms3 dead (storage lost) with kms1 the one
// survivor, without a leader: both IDs removed first, then both nodes
// rebuilt and added one at a time; every key there through each. kms2 lost
// its config too, and the inventory names none: it is rendered from the
// built-in template (the admin identity of the API key, never the key; the
// TLS paths of its layout), and kms2 starts from it; kms3's is kept.
func TestRecoverTwoNodes(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	if err := l.client(l.addrs[0]).CreateKey(ctx, "", "k1"); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		l.kill(i)
		if err := os.RemoveAll(filepath.Join(l.dirs[i], "data")); err != nil {
			t.Fatal(err)
		}
	}
	config2 := filepath.Join(l.dirs[1], "config.yaml")
	if err := os.Remove(config2); err != nil {
		t.Fatal(err)
	}
	te, code := l.recover(t, "kms2", "kms3", "--check")
	if want := "config rendered from the built-in templates/minkms.config.j2 (kms2 has none)"; code != 0 || !strings.Contains(te.out.String(), want) {
		t.Fatalf("--check: exit %d, want %q\n%s\n%s", code, want, te.out, te.errOut)
	}
	if _, err := os.Stat(config2); err == nil {
		t.Fatal("--check wrote the config")
	}
	te, code = l.recover(t, "kms2", "kms3", "--yes", "--output", "json")
	out := te.out.String()
	if code != 0 {
		t.Fatalf("recover kms2 kms3: exit %d\n%s\n%s", code, out, te.errOut)
	}
	b, err := os.ReadFile(config2)
	fi, _ := os.Stat(config2)
	want := fmt.Sprintf("version: v1\nadmin:\n  identity: %s\ntls:\n  certs:\n    - key: %s/certs/private.key\n      cert: %[2]s/certs/public.crt\n  ca: %[2]s/certs/ca.crt\n", l.admin.Identity(), l.dirs[1])
	if err != nil || !strings.HasSuffix(string(b), want) || !strings.HasPrefix(string(b), "# "+config2+": written by kmsctl") || fi.Mode().Perm() != 0o640 {
		t.Errorf("kms2's rendered config (%v, %v):\n%s\nwant it to end with\n%s", fi.Mode(), err, b, want)
	}
	if strings.Contains(string(b), "k1:") || strings.Contains(out, l.admin.Secret()) {
		t.Error("the API key is in the config or the output")
	}
	if b, _ := os.ReadFile(filepath.Join(l.dirs[2], "config.yaml")); string(b) != l.config(l.dirs[2]) {
		t.Errorf("kms3's config not kept: %q", b)
	}
	// --output json: every line of stdout is one JSON event.
	var plan, recap struct {
		Event string `json:"event"`
		Plan  struct {
			Via     string `json:"via"`
			Targets []struct {
				Host string `json:"host"`
				ID   int    `json:"id"`
			} `json:"targets"`
		} `json:"plan"`
		Phases []struct {
			Phase string `json:"phase"`
		} `json:"phases"`
		Recovered []string `json:"recovered"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", line, err)
		}
		switch ev.Event {
		case "recover_plan":
			json.Unmarshal([]byte(line), &plan)
		case "recover":
			json.Unmarshal([]byte(line), &recap)
		}
	}
	if plan.Plan.Via != "kms1" || len(plan.Plan.Targets) != 2 || plan.Plan.Targets[0].ID < 0 || plan.Plan.Targets[1].ID < 0 {
		t.Errorf("plan event: %+v\n%s", plan, out)
	}
	var phases []string
	for _, p := range recap.Phases {
		phases = append(phases, p.Phase)
	}
	if strings.Join(recap.Recovered, ",") != "kms2,kms3" || slices.Index(phases, "kms3 remove") < 0 || slices.Index(phases, "kms3 remove") > slices.Index(phases, "kms2 push") ||
		slices.Index(phases, "kms2 prove") > slices.Index(phases, "kms3 push") {
		t.Errorf("kms3's ID not removed before kms2 was rebuilt, or kms3 rebuilt before kms2 was proved: %v %v\n%s", recap.Recovered, phases, out)
	}
	for _, ep := range l.addrs {
		c := l.client(ep)
		if v := kms.View(ctx, c, ep); v.Err != nil || len(v.Members) != 3 {
			t.Fatalf("%s's view: %+v", ep, v)
		}
		if got := keyList(t, c); strings.Join(got, ",") != "k1" {
			t.Errorf("keys through %s: %v", ep, got)
		}
	}
}

// TestRecoverRefusals: each refusal exits 4, says why, and leaves every
// host's files unchanged.
func TestRecoverRefusals(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	other := hsm.New([32]byte{8})
	cases := []struct {
		name  string
		setup func(t *testing.T) func()
		args  []string
		want  string
	}{
		{"a healthy node", nil, []string{"kms1"}, "kms1 is not dead: node"},
		{"another HSM key to install", func(t *testing.T) func() {
			return l.swapFile(t, l.inventory, "hsm.key", other.Text())
		}, []string{"kms3"}, "is not the survivors'"},
		{"survivors' keys differ", func(t *testing.T) func() {
			return l.swapFile(t, filepath.Join(l.dirs[1], "minkms.env"), "", "MINIO_KMS_HSM_KEY="+other.Text()+"\n")
		}, []string{"kms3"}, "the survivors' HSM keys differ"},
		{"a missing file with no source", func(t *testing.T) func() {
			undoCA := l.swapFile(t, filepath.Join(l.dirs[2], "certs/ca.crt"), "", "")
			inv, err := os.ReadFile(l.inventory)
			if err != nil {
				t.Fatal(err)
			}
			noSrc := regexp.MustCompile(`(?m)^ *kms_ca_src: .*\n`).ReplaceAllString(string(inv), "")
			undoInv := l.swapFile(t, l.inventory, "", noSrc)
			return func() { undoInv(); undoCA() }
		}, []string{"kms3"}, "the CA certificate " + filepath.Join(l.dirs[2], "certs/ca.crt") + " is missing on kms3 and the inventory names no source for it"},
	}
	withVar := func(line string) func(t *testing.T) func() {
		return func(t *testing.T) func() {
			inv, err := os.ReadFile(l.inventory)
			if err != nil {
				t.Fatal(err)
			}
			return l.swapFile(t, l.inventory, "", strings.Replace(string(inv), "    kms_user: root\n", "    kms_user: root\n"+line+"\n", 1))
		}
	}
	cases = append(cases, struct {
		name  string
		setup func(t *testing.T) func()
		args  []string
		want  string
	}{"a config from a peer of another layout", withVar("    kms_config_from: peer"), []string{"kms3"},
		"the config of kms3 comes from a peer (kms_config_from), but the peer kms1 keeps it at " + filepath.Join(l.dirs[0], "config.yaml")})
	newer := "2026-06-01T00-00-00Z"
	cases = append(cases, struct {
		name  string
		setup func(t *testing.T) func()
		args  []string
		want  string
	}{"another version with --yes alone", func(t *testing.T) func() {
		return l.swapFile(t, filepath.Join(l.src, "minkms"), "", l.binary(newer))
	}, []string{"kms3"}, "the version would change: kms3: the binary to install (kms_binary_src " + filepath.Join(l.src, "minkms") +
		" on this machine) is version " + newer + "; the survivors run " + kmsim.DefaultVersion + ".\n  Install the survivors' version (kms_binary_src, or kms_binary_from: peer), or accept the change with --allow-version-change"})
	cases = append(cases, struct {
		name  string
		setup func(t *testing.T) func()
		args  []string
		want  string
	}{"a kept binary that does not run", func(t *testing.T) func() {
		inv, err := os.ReadFile(l.inventory)
		if err != nil {
			t.Fatal(err)
		}
		return l.swapFile(t, l.inventory, "", regexp.MustCompile(`(?m)^ *kms_binary_src: .*\n`).ReplaceAllString(string(inv), ""))
	}, []string{"kms3"}, "the version would change: kms3: the version of the binary to install (" + filepath.Join(l.dirs[2], "minkms") + " on kms3) is unknown: " +
		filepath.Join(l.dirs[2], "minkms") + " on kms3 does not run"})
	te, code := l.recover(t, "kms1", "--output", "json")
	if code != exit.Refused || !strings.Contains(te.out.String(), `"event":"recover_refused"`) ||
		!strings.Contains(te.out.String(), `"why":"kms1 is not dead: node`) {
		t.Fatalf("--output json refusal: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			before := l.snapshot()
			te, code := l.recover(t, append(tc.args, "--yes")...)
			if code != exit.Refused || !strings.Contains(te.out.String(), tc.want) || !strings.Contains(te.out.String(), "nothing was changed") {
				t.Fatalf("exit %d, want %d and %q\n%s\n%s", code, exit.Refused, tc.want, te.out, te.errOut)
			}
			if after := l.snapshot(); after != before {
				t.Fatalf("files changed:\n%s\n---\n%s", before, after)
			}
		})
	}
	// The version change: --check shows it, --yes with
	// --allow-version-change accepts it.
	defer l.swapFile(t, filepath.Join(l.src, "minkms"), "", l.binary(newer))()
	te, code = l.recover(t, "kms3", "--check")
	if code != 0 || !strings.Contains(te.out.String(), "VERSION CHANGE: the binary to install") {
		t.Fatalf("--check with another version: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	before := l.snapshot()
	asked := testEnv(t)
	asked.env.terminal = true
	asked.env.stdin = strings.NewReader("n\n")
	code = asked.run(t, "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none")
	if want := "The Key Manager's version changes on kms3 (VERSION CHANGE above). Change kms3 now? [y/N] nothing was changed"; code != exit.Refused || !strings.Contains(asked.out.String(), want) {
		t.Fatalf("on a terminal with another version: exit %d, want %q\n%s\n%s", code, want, asked.out, asked.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("answered n, files changed:\n%s\n---\n%s", before, after)
	}
	te, code = l.recover(t, "kms3", "--yes", "--allow-version-change")
	if b, _ := os.ReadFile(filepath.Join(l.dirs[2], "minkms")); code != 0 || !strings.Contains(string(b), newer) {
		t.Fatalf("--allow-version-change: exit %d, binary %q\n%s\n%s", code, b, te.out, te.errOut)
	}
}

// swapFile replaces a file (name beside dir's file when name is set) with
// content ("" = removes it) and returns the undo.
func (l *recoverLab) swapFile(t *testing.T, path, name, content string) func() {
	t.Helper()
	if name != "" {
		path = filepath.Join(filepath.Dir(path), name)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if content == "" {
		err = os.Remove(path)
	} else {
		err = os.WriteFile(path, []byte(content), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, old, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecoverUnreachable: on a terminal recover node asks first, and "n"
// changes nothing (exit 4); kms3's machine gone (no SSH, no Key Manager):
// answered "y", its ID is removed so that writes come back, and kmsctl
// stops with exit 3 saying how to finish.
func TestRecoverUnreachable(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	ask := func(answer string) (*testEnvT, int) {
		te := testEnv(t)
		te.env.terminal = true
		te.env.stdin = strings.NewReader(answer)
		return te, te.run(t, "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none")
	}
	before := l.snapshot()
	te, code := ask("n\n")
	if code != exit.Refused || !strings.Contains(te.out.String(), "Change kms3 now? [y/N] nothing was changed") {
		t.Fatalf("answered n: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("answered n, files changed:\n%s\n---\n%s", before, after)
	}
	ctx := context.Background()
	if v := kms.View(ctx, l.client(l.addrs[0]), l.addrs[0]); v.Err != nil || len(v.Members) != 3 {
		t.Fatalf("answered n, kms1's view: %+v", v)
	}

	l.servers[2].Close()
	te, code = ask("y\n")
	out := te.out.String()
	if code != exit.Unreachable || !strings.Contains(out, "does not answer SSH: only its ID is removed") || !strings.Contains(out, "ID REMOVED, NOT REBUILT: kms3") ||
		!strings.Contains(te.errOut.String(), "`kmsctl recover node kms3` when the host answers again") {
		t.Fatalf("kms3 gone: exit %d\n%s\n%s", code, out, te.errOut)
	}
	// kms3's lease could not be checked: the plan and a warning say so,
	// and it did not block the run; the others' leases are gone at the end.
	if !strings.Contains(out, "lease: not checked on kms3 (no SSH)") || !strings.Contains(te.errOut.String(), "lease of cluster kms on kms3 not checked: ") {
		t.Errorf("kms3's lease not named as not checked:\n%s\n%s", out, te.errOut)
	}
	for i := range 2 {
		if _, err := os.Stat(lease.Path(l.leaseDir(i), "kms")); !os.IsNotExist(err) {
			t.Errorf("kms%d: lease left after the run: %v", i+1, err)
		}
	}
	for _, ep := range l.addrs[:2] {
		c := l.client(ep)
		if v := kms.View(ctx, c, ep); v.Err != nil || len(v.Members) != 2 {
			t.Errorf("%s's view after the removal: %+v", ep, v)
		}
	}
	kmsimtest.Eventually(t, "writes through kms2", func() error { return l.client(l.addrs[1]).CreateKey(ctx, "", "after") })
}

// TestRecoverLocked: while another run holds the cluster's lock, recover
// node exits 5 naming the holder, before any question, with every host
// unchanged; with --lock-wait it waits for the holder and then recovers.
func TestRecoverLocked(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	te := testEnv(t)
	held, err := lock.Acquire(context.Background(), locksDir(te.stateDir), []string{"kms"}, otherRun, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	before := l.snapshot()
	code := te.run(t, "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none", "--yes")
	if code != exit.Locked || !strings.Contains(te.errOut.String(), "cluster kms is locked by alice@bastion1 (pid 4242") ||
		strings.Contains(te.out.String(), "plan for") {
		t.Fatalf("locked: exit %d, want %d\n%s\n%s", code, exit.Locked, te.out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("locked, files changed:\n%s\n---\n%s", before, after)
	}
	again := testEnv(t)
	again.stateDir = te.stateDir
	time.AfterFunc(500*time.Millisecond, func() { held.Release() })
	if code := again.run(t, "recover", "node", "kms3", "-i", l.inventory, "--ssh-config", "none", "--yes", "--lock-wait", "30s"); code != 0 ||
		!strings.Contains(again.out.String(), "RECOVERED kms3") {
		t.Fatalf("--lock-wait: exit %d\n%s\n%s", code, again.out, again.errOut)
	}
}

// TestRecoverForce: kms3's process wedged (its service active, its API
// silent, the survivors see it down) is refused without --force (exit 4,
// nothing changed); with --force the plan says so, a warning goes to
// stderr, and kms3 is fenced and recovered.
func TestRecoverForce(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	l.mu.Lock()
	l.wedged[2] = true
	l.mu.Unlock()
	before := l.snapshot()
	te, code := l.recover(t, "kms3", "--yes")
	if code != exit.Refused || !strings.Contains(te.out.String(), "minkms.service is active on it although its API does not answer") ||
		!strings.Contains(te.out.String(), "--force") {
		t.Fatalf("wedged without --force: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("refused, files changed:\n%s\n---\n%s", before, after)
	}
	te, code = l.recover(t, "kms3", "--yes", "--force")
	if code != 0 || !strings.Contains(te.out.String(), "--force: minkms.service is active on kms3") || !strings.Contains(te.out.String(), "RECOVERED kms3") ||
		!strings.Contains(te.errOut.String(), "WARNING: --force") {
		t.Fatalf("wedged with --force: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	ctx := context.Background()
	if v := kms.View(ctx, l.client(l.addrs[2]), l.addrs[2]); v.Err != nil || len(v.Members) != 3 {
		t.Fatalf("kms3's view after --force: %+v", v)
	}
}

// TestRecoverStaleMember: kms3's ID removed while it was down (as after a
// recovery that found its host unreachable), then kms3 back with its old
// state, its service active: it is rebuilt and rejoins with every key.
func TestRecoverStaleMember(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	c1 := l.client(l.addrs[0])
	if err := c1.CreateKey(ctx, "", "k1"); err != nil {
		t.Fatal(err)
	}
	id := kms.View(ctx, l.client(l.addrs[2]), l.addrs[2]).ID
	l.kill(2)
	kmsimtest.Eventually(t, "remove kms3's ID", func() error { return c1.EditCluster(ctx, l.addrs[0], id) })
	if err := l.start(2); err != nil {
		t.Fatal(err)
	}
	te, code := l.recover(t, "kms3", "--yes")
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "no survivor lists it any more: fence stops it, wipe clears its old state") || !strings.Contains(out, "RECOVERED kms3") {
		t.Fatalf("stale kms3: exit %d\n%s\n%s", code, out, te.errOut)
	}
	c3 := l.client(l.addrs[2])
	if v := kms.View(ctx, c3, l.addrs[2]); v.Err != nil || len(v.Members) != 3 {
		t.Fatalf("kms3's view: %+v", v)
	}
	if got := keyList(t, c3); strings.Join(got, ",") != "k1" {
		t.Errorf("keys through kms3: %v", got)
	}
}

// TestRecoverPlaybookByHandProvesDeath: the built-in recover-node playbook
// run by hand (play builtin:recover-node) with a healthy node as
// recover_host, by its ID or only by its endpoint (a wrong ID; -e gives
// strings), is refused on the survivors (exit 4) before the node is fenced
// or wiped: every node keeps running and no file changes.
func TestRecoverPlaybookByHandProvesDeath(t *testing.T) {
	l := newRecoverLab(t)
	before := l.snapshot()
	ep := strings.TrimPrefix(l.addrs[2], "https://")
	for _, id := range []string{"2", "7"} {
		te := testEnv(t)
		code := te.run(t, "play", "builtin:recover-node", "-i", l.inventory, "--ssh-config", "none",
			"-e", "recover_host=kms3", "-e", "recover_id="+id, "-e", "recover_endpoint="+ep,
			"-e", "recover_via=kms1", "-e", "recover_survivors=kms1,kms2")
		if code != exit.Refused || !strings.Contains(te.errOut.String(), "it is not dead; nothing was fenced or wiped") {
			t.Errorf("recover_id=%s: exit %d, want 4 (refused) and the node proven alive\n%s\n%s", id, code, te.out, te.errOut)
		}
		if strings.Contains(te.out.String(), "stop and disable the service") {
			t.Errorf("recover_id=%s: the fence ran:\n%s", id, te.out)
		}
	}
	if after := l.snapshot(); after != before {
		t.Errorf("files changed:\nbefore %s\nafter %s", before, after)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, n := range l.nodes {
		if n == nil {
			t.Errorf("node %d was stopped", i)
		}
	}
}

// TestRecoverPlaybookByHandWrongID: the built-in recover-node playbook run
// by hand for a dead kms3 with a wrong recover_id (an ID no survivor lists)
// is refused on the survivors (exit 4) before kms3 is fenced or wiped: the
// survivors list kms3's endpoint under its real ID, which removing the
// wrong one would leave in place, and kms3 could never rejoin (the run
// waited out kms_wait's 5 minutes).
func TestRecoverPlaybookByHandWrongID(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	before := l.snapshot()
	ep := strings.TrimPrefix(l.addrs[2], "https://")
	te := testEnv(t)
	code := te.run(t, "play", "builtin:recover-node", "-i", l.inventory, "--ssh-config", "none",
		"-e", "recover_host=kms3", "-e", "recover_id=7", "-e", "recover_endpoint="+ep,
		"-e", "recover_via=kms1", "-e", "recover_survivors=kms1,kms2")
	want := "lists " + ep + " (kms3) under another node ID than recover_id 7: the ID is wrong"
	if code != exit.Refused || !strings.Contains(te.errOut.String(), want) {
		t.Errorf("wrong recover_id: exit %d, want 4 (refused) and %q\n%s\n%s", code, want, te.out, te.errOut)
	}
	if strings.Contains(te.out.String(), "stop and disable the service") {
		t.Errorf("wrong recover_id: the fence ran:\n%s", te.out)
	}
	if after := l.snapshot(); after != before {
		t.Errorf("files changed:\nbefore %s\nafter %s", before, after)
	}
}

// TestRecoverWrongAPIKey: an admin API key that is not the cluster's
// (every survivor answers 403) is a local setup error (exit 1) that names
// the key's sources, not "no survivor answers" with advice to restore
// from a backup; nothing is changed on any host.
func TestRecoverWrongAPIKey(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(2)
	other, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "other.key")
	if err := os.WriteFile(keyFile, []byte(other.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory.yml")
	text := regexp.MustCompile(`kms_api_key_file: \S+`).ReplaceAllString(string(b), "kms_api_key_file: "+keyFile)
	if err := os.WriteFile(inv, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	before := l.snapshot()
	te := testEnv(t)
	code := te.run(t, "recover", "node", "kms3", "-i", inv, "--ssh-config", "none", "--yes")
	errOut := te.errOut.String()
	if code != exit.Usage || !strings.Contains(errOut, "kms1 and kms2 refused the admin API key (HTTP 403 access denied)") ||
		!strings.Contains(errOut, "kms_api_key_file") || strings.Contains(te.out.String()+errOut, "no survivor answers") {
		t.Fatalf("wrong API key: exit %d, want %d\n%s\n%s", code, exit.Usage, te.out, errOut)
	}
	if strings.Contains(te.out.String()+errOut, other.Secret()) {
		t.Error("the wrong key's secret was printed")
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("wrong API key, files changed:\n%s\n---\n%s", before, after)
	}
}
