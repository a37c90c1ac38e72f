package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// statusLab is a cluster of simulator nodes on 127.0.0.1, each also an SSH
// host (an in-process SSH server with passwordless sudo) in group kms of an
// inventory reaching the API through SSH. Each host's env file (a local
// file, kms_env_file) holds the cluster's HSM key, and `systemctl show` is
// answered from units (the service's ActiveState per host).
type statusLab struct {
	t testing.TB
	// leaseDirs are the nodes' lease directories (kms_lease_dir).
	leaseDirs []string
	inventory string
	admin     kms.APIKey
	ca        *kmsim.CA
	hsmKey    hsm.Key
	nodes     []*kmsim.Node
	hosts     []string
	envFiles  []string
	servers   []*sshtest.Server

	mu    sync.Mutex
	units map[string]string        // host → ActiveState of minkms.service
	slow  map[string]time.Duration // host → how long its `systemctl show` takes
}

func newStatusLab(t testing.TB, n int) *statusLab {
	t.Helper()
	dir := t.TempDir()
	hsmKey := hsm.New([32]byte{7})
	sc := startSimCluster(t, dir, n, hsmKey, "2025-11-12T19-14-51Z")
	caFile, admin := sc.caFile, sc.admin
	l := &statusLab{t: t, admin: admin, ca: sc.ca, hsmKey: hsmKey, nodes: sc.nodes, units: map[string]string{}, slow: map[string]time.Duration{}}

	key := sshtest.GenerateKey(t)
	keyFile := sshtest.ClientKeyFile(t, key, "")
	var hosts, known strings.Builder
	for i, nd := range l.nodes {
		h := fmt.Sprintf("kms%d", i+1)
		l.hosts = append(l.hosts, h)
		l.units[h] = "active"
		envFile := filepath.Join(dir, h+".env")
		l.envFiles = append(l.envFiles, envFile)
		l.writeEnv(i, l.hsmKey)
		s := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Sudo: sshtest.SudoAllow, Exec: l.systemctl(h)})
		l.servers = append(l.servers, s)
		_, port, _ := net.SplitHostPort(nd.Host())
		fmt.Fprintf(&hosts, "        %s:\n          ansible_host: 127.0.0.1\n          ansible_port: %d\n          kms_endpoint: %s\n          kms_port: %s\n          kms_env_file: %s\n          kms_lease_dir: %s\n",
			h, s.Port(), nd.Host(), port, envFile, filepath.Join(dir, "lease-"+h))
		l.leaseDirs = append(l.leaseDirs, filepath.Join(dir, "lease-"+h))
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	apiKeyFile := filepath.Join(dir, "api.key")
	if err := os.WriteFile(apiKeyFile, []byte(admin.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.inventory = filepath.Join(dir, "inventory.yml")
	inv := fmt.Sprintf("all:\n  vars:\n    ansible_user: tester\n    ansible_ssh_private_key_file: %s\n    kms_ssh_known_hosts: %s\n"+
		"    kms_api: ssh\n    kms_ca_file: %s\n    kms_api_key_file: %s\n  children:\n    kms:\n      hosts:\n%s", keyFile, kh, caFile, apiKeyFile, hosts.String())
	if err := os.WriteFile(l.inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// writeEnv writes host i's env file with key as its HSM key.
func (l *statusLab) writeEnv(i int, key hsm.Key) {
	l.t.Helper()
	text := fmt.Sprintf("%s=%s\nMINIO_KMS_VOLUME=/mnt/minio-kms\n", envHSMKey, key.Text())
	if err := os.WriteFile(l.envFiles[i], []byte(text), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// setUnit sets the ActiveState host's `systemctl show` reports.
func (l *statusLab) setUnit(host, state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.units[host] = state
}

// setSlow makes host's `systemctl show` take d: the slowest node.
func (l *statusLab) setSlow(host string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.slow[host] = d
}

// systemctl answers `systemctl show ... minkms.service` on host.
func (l *statusLab) systemctl(host string) sshtest.ExecFunc {
	return func(_ context.Context, cmd string, _ io.Reader, stdout, _ io.Writer) (int, bool) {
		if !strings.HasPrefix(cmd, "systemctl show ") || !strings.HasSuffix(cmd, " minkms.service") {
			return 0, false
		}
		l.mu.Lock()
		state, slow := l.units[host], l.slow[host]
		l.mu.Unlock()
		time.Sleep(slow)
		sub := "running"
		if state != "active" {
			sub = "dead"
		}
		fmt.Fprintf(stdout, "LoadState=loaded\nActiveState=%s\nSubState=%s\nUnitFileState=enabled\n", state, sub)
		return 0, true
	}
}

// status runs `kmsctl status` in-process with args.
func (l *statusLab) status(t *testing.T, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	code := te.run(t, append([]string{"status", "-i", l.inventory, "--ssh-config", "none"}, args...)...)
	return te, code
}

// statusWhenHealthy runs status until it exits 0 (at most 20 s) and
// returns that run. In-process simulators on a loaded machine can miss a
// second of heartbeats, and status then rightly reports a node not ready;
// the tests that use this are about how a healthy cluster is shown, not
// about the simulator's timing.
func (l *statusLab) statusWhenHealthy(t *testing.T, args ...string) (*testEnvT, int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		te, code := l.status(t, args...)
		if code == 0 || time.Now().After(deadline) {
			return te, code
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// statusDoc is the status event of --output json.
type statusDoc struct {
	Event          string      `json:"event"`
	Cluster        string      `json:"cluster"`
	Verdict        string      `json:"verdict"`
	Reasons        []reason    `json:"reasons"`
	Nodes          []nodeState `json:"nodes"`
	HSMFingerprint string      `json:"hsm_fingerprint"`
}

func parseStatus(t *testing.T, out string) statusDoc {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		var d statusDoc
		if json.Unmarshal([]byte(line), &d) == nil && d.Event == "status" {
			return d
		}
	}
	t.Fatalf("no status event in\n%s", out)
	return statusDoc{}
}

// TestStatus: `kmsctl status` on a three-node simulator cluster reached
// through SSH: healthy (exit 0) with one row per node; one node's env file
// holding another HSM key names that node (exit 7); a node stopped with
// its service inactive is down as seen by the two others (exit 7).
func TestStatus(t *testing.T) {
	l := newStatusLab(t, 3)

	te, code := l.statusWhenHealthy(t)
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "HEALTHY: 3 nodes, leader kms") || !strings.Contains(out, l.hsmKey.Fingerprint()) {
		t.Fatalf("healthy cluster: exit %d\n%s\n%s", code, out, te.errOut)
	}
	for i, h := range l.hosts {
		if !strings.Contains(out, fmt.Sprintf("%s  %s  ok   active   ready,rw  %d", h, l.nodes[i].Host(), l.nodes[i].NodeID())) {
			t.Errorf("no healthy row for %s in\n%s", h, out)
		}
	}
	if strings.Contains(out+te.errOut.String()+runLogs(t, te), l.admin.Secret()) || strings.Contains(out+runLogs(t, te), l.hsmKey.Text()) {
		t.Error("a key appears in the output or run log")
	}

	te, code = l.statusWhenHealthy(t, "--output", "json")
	d := parseStatus(t, te.out.String())
	if code != 0 || d.Verdict != "healthy" || len(d.Reasons) != 0 || len(d.Nodes) != 3 || d.HSMFingerprint != l.hsmKey.Fingerprint() {
		t.Fatalf("healthy cluster, JSON: exit %d, %+v\n%s", code, d, te.errOut)
	}
	for _, n := range d.Nodes {
		if !n.SSH || n.ServiceState != "active" || !n.ReadyWrite || n.View == nil || len(n.View.Members) != 3 || n.CertDays == nil || *n.CertDays < 300 {
			t.Errorf("node %+v", n)
		}
	}

	other := hsm.New([32]byte{8})
	l.writeEnv(1, other)
	te, code = l.status(t)
	if code != exit.VerifyFailed || !strings.Contains(te.out.String(), "DEGRADED: HSM-key fingerprints differ: kms1 and kms3 have "+l.hsmKey.Fingerprint()+", kms2 has "+other.Fingerprint()) {
		t.Fatalf("another HSM key on kms2: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	l.writeEnv(1, l.hsmKey)

	l.nodes[2].Close()
	l.setUnit("kms3", "inactive")
	te, code = l.status(t, "--output", "json")
	d = parseStatus(t, te.out.String())
	want := fmt.Sprintf("node %d (%s) is down as seen by kms1 and kms2; minkms.service is inactive on kms3", l.nodes[2].NodeID(), l.nodes[2].Host())
	if code != exit.VerifyFailed || d.Verdict != "degraded" || len(d.Reasons) == 0 || d.Reasons[0].Text != want || d.Reasons[0].Nodes[0] != "kms3" {
		t.Fatalf("kms3 down: exit %d, reasons %+v, want first %q\n%s", code, d.Reasons, want, te.errOut)
	}
}

// TestStatusUnreachable: a node whose SSH server is gone makes the cluster
// degraded (exit 7); when no node answers at all, nothing could be checked
// (exit 3). A group that does not exist is a usage error.
func TestStatusUnreachable(t *testing.T) {
	l := newStatusLab(t, 3)
	l.servers[0].Close()
	te, code := l.status(t)
	if code != exit.VerifyFailed || !strings.Contains(te.out.String(), "DEGRADED: kms1 does not answer SSH") {
		t.Fatalf("kms1 unreachable: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for _, n := range l.nodes {
		n.Close()
	}
	for _, s := range l.servers[1:] {
		s.Close()
	}
	te, code = l.status(t)
	if code != exit.Unreachable || !strings.Contains(te.out.String(), "UNREACHABLE: no node of group kms answers") {
		t.Fatalf("nothing answers: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	te, code = l.status(t, "--cluster", "nope")
	if code != exit.Usage || !strings.Contains(te.errOut.String(), `--cluster "nope"`) {
		t.Fatalf("unknown group: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	// A misspelt --limit is named as such, not blamed on --cluster alone.
	te, code = l.status(t, "--limit", "kms9")
	if code != exit.Usage || !strings.Contains(te.errOut.String(), `--cluster "kms" with --limit "kms9": select hosts: pattern "kms9" matches no host`) {
		t.Fatalf("unknown --limit: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestStatusHangingAPI: a node whose API port accepts connections and never
// answers costs its question timeout (10 s) once, not once per question or
// per task: status ends with exit 7 naming it, well before twice that.
func TestStatusHangingAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s question timeout")
	}
	l := newStatusLab(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	// kms3's tunnel now ends at the hanging port.
	b, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.nodes[2].Host())
	_, hang, _ := net.SplitHostPort(ln.Addr().String())
	inv := strings.Replace(string(b), "kms_port: "+port+"\n", "kms_port: "+hang+"\n", 1)
	if err := os.WriteFile(l.inventory, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	te, code := l.status(t, "--output", "json")
	took := time.Since(start)
	d := parseStatus(t, te.out.String())
	if code != exit.VerifyFailed || len(d.Reasons) == 0 || d.Reasons[0].Kind != reasonAPI || d.Reasons[0].Nodes[0] != "kms3" {
		t.Fatalf("kms3's API hangs: exit %d, reasons %+v\n%s", code, d.Reasons, te.errOut)
	}
	if took > 20*time.Second {
		t.Errorf("status took %s with one hanging API: more than twice its 10 s question timeout", took)
	}
}

// TestStatusAPIKeyProblems: a problem with the admin API key on this
// machine is not a degraded cluster: a key file others may read is refused
// (exit 4), a missing or malformed one is an error (exit 1), each naming
// the file and what to do, for status and backup alike, before any host
// is logged in to.
func TestStatusAPIKeyProblems(t *testing.T) {
	l := newStatusLab(t, 1)
	dir := t.TempDir()
	readable := filepath.Join(dir, "readable.key")
	if err := os.WriteFile(readable, []byte(l.admin.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	malformed := filepath.Join(dir, "malformed.key")
	if err := os.WriteFile(malformed, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		code int
		want string
	}{
		{readable, 4, "the admin API key of kms1: read the admin API key from --api-key-file " + readable + ": " + readable + " has mode 0644: others may read the key; run chmod 600 " + readable + " (no node was asked)"},
		{malformed, 1, "--api-key-file " + malformed + ": parse API key: not a Key Manager API key"},
		{filepath.Join(dir, "missing.key"), 1, "no such file or directory"},
	} {
		for _, cmd := range []string{"status", "backup"} {
			te := testEnv(t)
			code := te.run(t, cmd, "-i", l.inventory, "--ssh-config", "none", "--api-key-file", tc.file)
			if code != tc.code || !strings.Contains(te.errOut.String(), tc.want) || strings.Contains(te.out.String(), "DEGRADED") {
				t.Errorf("%s --api-key-file %s: exit %d, want %d and %q\n%s\n%s", cmd, filepath.Base(tc.file), code, tc.code, tc.want, te.out, te.errOut)
			}
			if strings.Contains(te.out.String()+te.errOut.String(), l.admin.Secret()) {
				t.Errorf("%s: the key appears in the output", cmd)
			}
		}
	}
	if logins := l.servers[0].Logins(); len(logins) != 0 {
		t.Errorf("a host was logged in to: %v", logins)
	}

	// A well-formed key that is not the cluster's: every node refuses it.
	wrong, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(dir, "wrong.key")
	if err := os.WriteFile(wrongFile, []byte(wrong.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"status", "backup"} {
		te := testEnv(t)
		code := te.run(t, cmd, "-i", l.inventory, "--ssh-config", "none", "--api-key-file", wrongFile)
		want := "kms1 refused the admin API key (HTTP 403 access denied): it is not this cluster's admin API key"
		if code != exit.Usage || !strings.Contains(te.errOut.String(), want) || strings.Contains(te.out.String(), "DEGRADED") {
			t.Errorf("%s with a key the cluster does not know: exit %d, want 1 and %q\n%s\n%s", cmd, code, want, te.out, te.errOut)
		}
	}
}

// TestKeyRefused: the key is blamed only when every node whose API
// answered refused it; a node that gives its status, or answers without
// refusing, leaves the cluster to the verdict.
func TestKeyRefused(t *testing.T) {
	refused := nodeState{Host: "kms1", Live: true, APIKeyRefused: true}
	down := nodeState{Host: "kms3"}
	for _, tc := range []struct {
		name  string
		nodes []nodeState
		blame bool
	}{
		{"all refuse", []nodeState{refused, {Host: "kms2", Live: true, APIKeyRefused: true}}, true},
		{"refused and one down", []nodeState{refused, down}, true},
		{"one gives its status", []nodeState{refused, {Host: "kms2", Live: true, View: &nodeView{}}}, false},
		{"one answers without refusing", []nodeState{refused, {Host: "kms2", Live: true, APIError: "timeout"}}, false},
		{"none answers", []nodeState{down}, false},
	} {
		err := keyRefused(tc.nodes)
		if (err != nil) != tc.blame {
			t.Errorf("%s: error %v, want one: %v", tc.name, err, tc.blame)
		}
		if err != nil && exit.Code(err) != exit.Usage {
			t.Errorf("%s: exit %d, want 1", tc.name, exit.Code(err))
		}
	}
}

// TestStatusInterrupted: status interrupted while a node is slow says what
// each host finished, names the task cut short without an empty position
// (its play is kmsctl's own, of no file), and that status, which only
// reads, may be run again: not the warning meant for playbooks that wipe.
func TestStatusInterrupted(t *testing.T) {
	l := newStatusLab(t, 2)
	l.setSlow("kms1", 2*time.Second)
	te := testEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(500*time.Millisecond, cancel) // Ctrl-C
	code := run(ctx, te.env, []string{"kmsctl", "status", "-i", l.inventory, "--ssh-config", "none"})
	stderr := te.errOut.String()
	if code != exit.Interrupted {
		t.Fatalf("exit %d\n%s\n%s", code, te.out, stderr)
	}
	for _, want := range []string{`kms1: no task finished; interrupted: "service state", whatever it did is unknown`, "status only reads: run it again"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, not := range []string{"()", "Do not simply run the playbook again"} {
		if strings.Contains(stderr, not) {
			t.Errorf("stderr has %q:\n%s", not, stderr)
		}
	}
}

// TestClusterCommandsTakeNoArguments: status and backup refuse an argument
// (exit 2) naming the command and pointing at --cluster, before reading
// any inventory.
func TestClusterCommandsTakeNoArguments(t *testing.T) {
	for _, cmd := range []string{"status", "backup"} {
		te := testEnv(t)
		code := te.run(t, cmd, "kms1", "-i", filepath.Join(t.TempDir(), "missing.yml"))
		want := cmd + `: no arguments expected (name the cluster with --cluster GROUP), got ["kms1"]`
		if code != exit.Usage || !strings.Contains(te.errOut.String(), want) {
			t.Errorf("%s kms1: exit %d, want %d with %q\n%s", cmd, code, exit.Usage, want, te.errOut)
		}
	}
}

// TestStatusWrongCAFile: a kms_ca_file that did not sign the nodes'
// certificates is this machine's setup error, not a degraded cluster:
// status and backup exit 1 naming the file, a host and the issuer, and
// what to do. One node whose certificate fails verification while the
// others pass is judged (exit 7), its reason saying it is a certificate
// problem.
func TestStatusWrongCAFile(t *testing.T) {
	l := newStatusLab(t, 3)
	other, err := kmsim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(wrongCA, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	_, rest, _ := strings.Cut(good, "kms_ca_file: ")
	rightCA, _, _ := strings.Cut(rest, "\n")
	writeInv := func(s string) {
		if err := os.WriteFile(l.inventory, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	writeInv(strings.Replace(good, "kms_ca_file: "+rightCA+"\n", "kms_ca_file: "+wrongCA+"\n", 1))
	for _, cmd := range []string{"status", "backup"} {
		te := testEnv(t)
		code := te.run(t, cmd, "-i", l.inventory, "--ssh-config", "none")
		stderr := te.errOut.String()
		for _, want := range []string{"kms_ca_file " + wrongCA + " does not sign the certificates of kms1, kms2 and kms3 (issuer CN=kmsim test CA",
			"point kms_ca_file at the CA that issued the nodes' certificates"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s with a wrong kms_ca_file: stderr lacks %q", cmd, want)
			}
		}
		if code != exit.Usage || strings.Contains(te.out.String(), "DEGRADED") {
			t.Errorf("%s with a wrong kms_ca_file: exit %d, want 1 without a verdict\n%s\n%s", cmd, code, te.out, stderr)
		}
	}

	// Only kms3's CA file is wrong: the others pass, so the cluster is
	// judged, and kms3's reason is its certificate.
	writeInv(strings.Replace(good, "        kms3:\n", "        kms3:\n          kms_ca_file: "+wrongCA+"\n", 1))
	te, code := l.status(t, "--output", "json")
	d := parseStatus(t, te.out.String())
	var found bool
	for _, r := range d.Reasons {
		if r.Kind == reasonCert && len(r.Nodes) == 1 && r.Nodes[0] == "kms3" &&
			strings.Contains(r.Text, "is not signed by kms_ca_file "+wrongCA) && strings.Contains(r.Text, "a certificate problem, not a node down") {
			found = true
		}
	}
	if code != exit.VerifyFailed || !found {
		t.Errorf("kms3's certificate not signed by its kms_ca_file: exit %d, reasons %+v; want 7 and a certificate reason for kms3\n%s", code, d.Reasons, te.errOut)
	}
}

// TestCAUnknown: the CA file is blamed only when every node whose API
// answered failed verification for an unknown authority; a node that
// passes, or answers otherwise, leaves the cluster to the verdict.
func TestCAUnknown(t *testing.T) {
	bad := func(h string) nodeState {
		return nodeState{Host: h, CertUnknownAuthority: true, CertIssuer: "CN=other", CAFile: "/etc/kmsctl/ca.crt"}
	}
	down := nodeState{Host: "kms3"}
	for _, tc := range []struct {
		name  string
		nodes []nodeState
		want  string
	}{
		{"all fail", []nodeState{bad("kms1"), bad("kms2")},
			"kms_ca_file /etc/kmsctl/ca.crt does not sign the certificates of kms1 and kms2 (issuer CN=other): point kms_ca_file at the CA that issued the nodes' certificates"},
		{"one fails, one down", []nodeState{bad("kms1"), down},
			"kms_ca_file /etc/kmsctl/ca.crt does not sign the certificate of kms1 (issuer CN=other)"},
		{"system pool", []nodeState{{Host: "kms1", CertUnknownAuthority: true, CertIssuer: "CN=other"}},
			"the system's CA certificates (no kms_ca_file) do not sign the certificate of kms1 (issuer CN=other): set kms_ca_file"},
		{"one passes", []nodeState{bad("kms1"), {Host: "kms2", Live: true, View: &nodeView{}}}, ""},
		{"one refuses the key", []nodeState{bad("kms1"), {Host: "kms2", Live: true, APIKeyRefused: true}}, ""},
		{"none answers", []nodeState{down}, ""},
	} {
		err := caUnknown(tc.nodes)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want none", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || exit.Code(err) != exit.Usage):
			t.Errorf("%s: %v (exit %d), want exit 1 with %q", tc.name, err, exit.Code(err), tc.want)
		}
	}
}
