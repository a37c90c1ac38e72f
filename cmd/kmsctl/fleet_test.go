package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/lease"
)

// fleetLab is several statusLabs in one inventory: one group per cluster
// (kms_cluster: GROUP in its vars, its hosts named GROUP-kmsN), and a host
// "scratch" (group spare) in no cluster.
type fleetLab struct {
	inventory string
	labs      map[string]*statusLab
}

func newFleetLab(t *testing.T, n int, groups ...string) *fleetLab {
	t.Helper()
	f := &fleetLab{labs: map[string]*statusLab{}}
	children := map[string]any{}
	for _, g := range groups {
		l := newStatusLab(t, n)
		f.labs[g] = l
		raw, err := os.ReadFile(l.inventory)
		if err != nil {
			t.Fatal(err)
		}
		var inv struct {
			All struct {
				Vars     map[string]any `yaml:"vars"`
				Children struct {
					KMS struct {
						Hosts map[string]any `yaml:"hosts"`
					} `yaml:"kms"`
				} `yaml:"children"`
			} `yaml:"all"`
		}
		if err := yaml.Unmarshal(raw, &inv); err != nil {
			t.Fatal(err)
		}
		vars := inv.All.Vars
		vars["kms_cluster"] = g
		hosts := map[string]any{}
		for h, hv := range inv.All.Children.KMS.Hosts {
			hosts[g+"-"+h] = hv
		}
		children[g] = map[string]any{"vars": vars, "hosts": hosts}
	}
	children["spare"] = map[string]any{"hosts": map[string]any{"scratch": map[string]any{"ansible_host": "127.0.0.1", "ansible_port": 1}}}
	b, err := yaml.Marshal(map[string]any{"all": map[string]any{"children": children}})
	if err != nil {
		t.Fatal(err)
	}
	f.inventory = filepath.Join(t.TempDir(), "fleet.yml")
	if err := os.WriteFile(f.inventory, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fleetLab) status(t *testing.T, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	code := te.run(t, append([]string{"status", "--all", "-i", f.inventory, "--ssh-config", "none"}, args...)...)
	return te, code
}

// fleetDoc is the fleet event of --output json.
type fleetDoc struct {
	Event       string         `json:"event"`
	Verdict     string         `json:"verdict"`
	Counts      map[string]int `json:"counts"`
	Unclustered []string       `json:"unclustered"`
	Clusters    []struct {
		Cluster        string      `json:"cluster"`
		Verdict        string      `json:"verdict"`
		Reasons        []reason    `json:"reasons"`
		Nodes          []nodeState `json:"nodes"`
		HSMFingerprint string      `json:"hsm_fingerprint"`
		Next           string      `json:"next"`
		Locks          []any       `json:"locks"`
	} `json:"clusters"`
}

func parseFleet(t *testing.T, out string) fleetDoc {
	t.Helper()
	var found []fleetDoc
	for _, line := range strings.Split(out, "\n") {
		var d fleetDoc
		if json.Unmarshal([]byte(line), &d) == nil && d.Event == "fleet" {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one fleet event, got %d in\n%s", len(found), out)
	}
	return found[0]
}

// TestStatusFleet: `kmsctl status --all` over an inventory of two
// clusters asks every node of both in one run and shows them in one
// table and one JSON document: healthy (exit 0) with a row per cluster;
// a node down in one cluster makes that one degraded, with its own Next
// command, and the fleet exit 7; the other stays healthy. The host in no
// cluster is named as such.
func TestStatusFleet(t *testing.T) {
	f := newFleetLab(t, 2, "kms-a", "kms-b")
	te, code := f.statusSettled(t)
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "fleet of 2 clusters") || !strings.Contains(out, ": 2 healthy\n") {
		t.Fatalf("healthy fleet: exit %d\n%s\n%s", code, out, te.errOut)
	}
	for g, l := range f.labs {
		if !strings.Contains(out, "\n"+g+"  ") || !strings.Contains(out, l.hsmKey.Fingerprint()) {
			t.Errorf("no row for %s with its HSM key's fingerprint in\n%s", g, out)
		}
	}
	if !strings.Contains(out, "In no cluster (their kms_cluster names no inventory group): scratch") {
		t.Errorf("the host in no cluster is not named:\n%s", out)
	}
	if r := onlyRun(t, te); r.End == nil || r.End.Hosts != 4 {
		t.Errorf("the run's journal ends %+v, want the 4 nodes of both clusters asked in one run", r.End)
	}

	t.Logf("healthy fleet:\n%s", out)
	b := f.labs["kms-b"]
	b.nodes[1].Close()
	b.setUnit("kms2", "inactive")
	te, code = f.status(t, "--output", "json")
	d := parseFleet(t, te.out.String())
	if code != exit.VerifyFailed || d.Verdict != "degraded" || len(d.Clusters) != 2 || d.Counts["degraded"] != 1 ||
		len(d.Unclustered) != 1 || d.Unclustered[0] != "scratch" {
		t.Fatalf("kms-b's node down: exit %d, %+v\n%s", code, d, te.errOut)
	}
	for _, c := range d.Clusters {
		switch c.Cluster {
		case "kms-b":
			if c.Verdict != "degraded" || len(c.Reasons) == 0 || c.Reasons[0].Kind != reasonDown || c.Next != "kmsctl recover node kms-b-kms2 --cluster kms-b" {
				t.Errorf("kms-b: %+v", c)
			}
		case "kms-a":
			if c.Verdict != "healthy" || len(c.Reasons) != 0 || len(c.Nodes) != 2 || c.HSMFingerprint == "" || c.Locks == nil {
				t.Errorf("kms-a: %+v", c)
			}
		default:
			t.Errorf("unknown cluster %q", c.Cluster)
		}
	}
	te, code = f.status(t)
	want := fmt.Sprintf("DEGRADED kms-b: node %d (%s) is down as seen by kms-b-kms1", b.nodes[1].NodeID(), b.nodes[1].Host())
	t.Logf("degraded fleet:\n%s", te.out)
	if code != exit.VerifyFailed || !strings.Contains(te.out.String(), want) || !strings.Contains(te.out.String(), "Next: kmsctl recover node kms-b-kms2 --cluster kms-b") {
		t.Errorf("text: exit %d, want %q in\n%s", code, want, te.out)
	}

	// Every node of every cluster silent: nothing could be checked (exit 3).
	for _, l := range f.labs {
		for _, s := range l.servers {
			s.Close()
		}
		for _, n := range l.nodes {
			n.Close()
		}
	}
	if te, code = f.status(t); code != exit.Unreachable {
		t.Errorf("nothing answers: exit %d\n%s", code, te.out)
	}
}

// TestStatusFleetUsage: --all with --cluster or --limit, an inventory in
// which no group is named by a kms_cluster, and a host in two clusters are
// usage errors (exit 1), and nothing is asked.
func TestStatusFleetUsage(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noCluster := write("none.yml", "all:\n  children:\n    kms-eu:\n      hosts:\n        a: {ansible_port: 1}\n    kms-us:\n      hosts:\n        b: {ansible_port: 1}\n")
	twice := write("twice.yml", "all:\n  children:\n    kms-eu:\n      vars: {kms_cluster: kms-eu}\n      hosts:\n        a: {ansible_port: 1}\n        c: {ansible_port: 1}\n"+
		"    kms-us:\n      vars: {kms_cluster: kms-us}\n      hosts:\n        a:\n        b: {ansible_port: 1}\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", noCluster, "--cluster", "kms-eu"}, "--all and --cluster kms-eu"},
		{[]string{"-i", noCluster, "--limit", "a"}, "--limit is not supported"},
		{[]string{"-i", noCluster}, "no inventory group is named by a host's kms_cluster (kms)"},
		{[]string{"-i", twice}, "host a is in two clusters, groups kms-eu and kms-us"},
	} {
		te := testEnv(t)
		code := te.run(t, append([]string{"status", "--all", "--ssh-config", "none"}, c.args...)...)
		if code != exit.Usage || !strings.Contains(te.errOut.String(), c.want) {
			t.Errorf("status --all %v: exit %d, want 1 and %q\n%s", c.args, code, c.want, te.errOut)
		}
	}
}

// TestStatusFleetShowsLease: `kmsctl status --all` shows, per cluster, who
// holds the cluster's lease on its nodes (a run of another bastion), as
// status does for one cluster: in the table's LEASED column (user,
// command, since when) with a LEASED line, and in the JSON document's
// leases of that cluster; a cluster without one says no, and [] in JSON.
// The verdict and the exit code do not change.
func TestStatusFleetShowsLease(t *testing.T) {
	f := newFleetLab(t, 2, "kms-a", "kms-b")
	rec := aliceLease()
	writeLeaseOf(t, f.labs["kms-b"].leaseDirs[1], "kms-b", rec)
	te, code := f.statusSettled(t)
	out := te.out.String()
	holder := "alice@bastion1 `kmsctl recover node kms2` since " + rec.Since.UTC().Format("2006-01-02 15:04") + " UTC"
	rowB := regexp.MustCompile(`(?m)^kms-b  .*$`).FindString(out)
	rowA := regexp.MustCompile(`(?m)^kms-a  .*$`).FindString(out)
	if code != 0 || !strings.Contains(out, "LEASED\n") || !strings.HasSuffix(rowB, holder) || !strings.HasSuffix(rowA, "  no") {
		t.Fatalf("status --all with kms-b leased: exit %d, want kms-b's row to end with %q and kms-a's with no\n%s\n%s", code, holder, out, te.errOut)
	}
	if want := "LEASED: cluster kms-b is leased on kms-b-kms2 by alice@bastion1 (pid 4242, run " + rec.Run; !strings.Contains(out, want) {
		t.Errorf("no %q in\n%s", want, out)
	}
	t.Logf("fleet with a lease:\n%s", out)

	te, code = f.status(t, "--output", "json")
	var doc struct {
		Event    string `json:"event"`
		Clusters []struct {
			Cluster string            `json:"cluster"`
			Leases  []lease.NodeLease `json:"leases"`
		} `json:"clusters"`
	}
	line := strings.SplitN(te.out.String(), "\n", 2)[0]
	if err := json.Unmarshal([]byte(line), &doc); err != nil || code != 0 || doc.Event != "fleet" || len(doc.Clusters) != 2 {
		t.Fatalf("status --all -o json: exit %d, %v\n%s\n%s", code, err, te.out, te.errOut)
	}
	for _, c := range doc.Clusters {
		switch c.Cluster {
		case "kms-a":
			if c.Leases == nil || len(c.Leases) != 0 || !strings.Contains(line, `"cluster":"kms-a"`) {
				t.Errorf("kms-a's leases: %+v, want []", c.Leases)
			}
		case "kms-b":
			if len(c.Leases) != 1 || c.Leases[0].Node != "kms-b-kms2" || c.Leases[0].Lease == nil ||
				c.Leases[0].Lease.User != "alice@bastion1" || c.Leases[0].Lease.Command != rec.Command || !c.Leases[0].Lease.Since.Equal(rec.Since) {
				t.Errorf("kms-b's leases: %+v", c.Leases)
			}
		}
	}
	if !strings.Contains(line, `"leases":[]`) {
		t.Errorf("kms-a's leases are not [] in\n%s", line)
	}
}

// statusSettled runs status --all until it exits 0 (the labs' clusters have
// elected their leaders) or 20 s have passed, and returns the last run.
func (f *fleetLab) statusSettled(t *testing.T) (*testEnvT, int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if te, code := f.status(t); code == 0 || time.Now().After(deadline) {
			return te, code
		}
	}
}
