package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/lease"
)

// leaseOn returns the lease file of cluster kms on the lab's node i ("" if
// there is none).
func (l *kmsLab) leaseOn(t *testing.T, i int) string {
	t.Helper()
	b, err := os.ReadFile(lease.Path(l.leaseDirs[i], "kms"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond until it holds, failing the test after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseSeenFromAnotherBastion: a run holding the cluster (a play with
// kms_remove_node, waiting at its first task) has its lease on every node,
// naming the step in flight; a run from another state directory (another
// bastion) exits 5 naming it and touches no host; `lock status` there
// shows the lease per node; `lock release --yes` refuses (exit 4) the
// lease of a live run and leaves it; at the end of the run the leases are
// gone.
func TestLeaseSeenFromAnotherBastion(t *testing.T) {
	l := newKMSLab(t)
	gate := filepath.Join(t.TempDir(), "open")
	marks := t.TempDir()
	pb := writePlaybook(t, fmt.Sprintf(`- hosts: kms
  tasks:
    - name: wait for the gate
      shell: while [ ! -e %s ]; do sleep 0.05; done
    - command: touch %s/{{ inventory_hostname }}
    - kms_remove_node:
        id: %d
      when: inventory_hostname == 'kms1'
`, gate, marks, l.deadID))
	first := testEnv(t)
	first.vars[envAPIKey] = l.admin.Secret()
	done := make(chan int, 1)
	go func() { done <- first.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none") }()
	// Each node's lease is rewritten with the step on its own: wait for
	// both, since the second run names the one it finds first.
	eventually(t, "the first run's lease with its step on kms1 and kms2", func() bool {
		return strings.Contains(l.leaseOn(t, 0), `wait for the gate`) && strings.Contains(l.leaseOn(t, 1), `wait for the gate`)
	})
	runs, err := journal.List(first.stateDir)
	if err != nil || len(runs) != 1 {
		t.Fatalf("the first run's journal: %v %v", runs, err)
	}
	run := runs[0].ID
	rec, err := lease.Parse([]byte(l.leaseOn(t, 0)))
	if err != nil || rec.Run != run || rec.PID != os.Getpid() || rec.User != operator() || rec.Command != "kmsctl play "+pb {
		t.Fatalf("kms1's lease: %+v, %v", rec, err)
	}

	// Another bastion: its own state directory, so no local lock stops it.
	second := testEnv(t)
	second.vars[envAPIKey] = l.admin.Secret()
	code := second.run(t, "play", pb, "-i", l.inventory, "--ssh-config", "none")
	want := fmt.Sprintf("cluster kms is leased on kms1 by %s (pid %d, run %s, `kmsctl play %s`, at \"wait for the gate\" on kms", operator(), os.Getpid(), run, pb)
	if code != exit.Locked || !strings.Contains(second.errOut.String(), want) || !strings.Contains(second.errOut.String(), "wait with --lock-wait DURATION, or see `kmsctl lock status`") {
		t.Fatalf("second bastion: exit %d, want %d and %q\n%s", code, exit.Locked, want, second.errOut)
	}
	if entries, _ := os.ReadDir(marks); len(entries) != 0 {
		t.Fatalf("the refused run touched a host: %v", entries)
	}
	again := func() *testEnvT {
		n := testEnv(t)
		n.stateDir, n.vars = second.stateDir, second.vars
		return n
	}
	st := again()
	if code := st.run(t, "lock", "status", "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("lock status: exit %d\n%s", code, st.errOut)
	}
	for _, w := range []string{"cluster kms: free\ncluster kms: leases on the nodes:\n", "  kms1: leased by " + operator() + " (pid", "  kms2: leased by ", "run " + run} {
		if !strings.Contains(st.out.String(), w) {
			t.Errorf("lock status lacks %q:\n%s", w, st.out)
		}
	}
	st = again()
	if code := st.run(t, "lock", "status", "-i", l.inventory, "--ssh-config", "none", "-o", "json"); code != 0 {
		t.Fatalf("lock status -o json: exit %d\n%s", code, st.errOut)
	}
	var got []clusterLock
	if err := json.Unmarshal([]byte(st.out.String()), &got); err != nil || len(got) != 1 || len(got[0].Leases) != 2 || got[0].Leases[1].Lease == nil || got[0].Leases[1].Lease.Run != run {
		t.Fatalf("lock status -o json: %s (%v)", st.out, err)
	}
	// The lease of a live run is not released, --yes or not.
	st = again()
	if code := st.run(t, "lock", "release", "--yes", "-i", l.inventory, "--ssh-config", "none"); code != exit.Refused ||
		!strings.Contains(st.errOut.String(), fmt.Sprintf("whose process %d is alive on this machine", os.Getpid())) {
		t.Fatalf("lock release of a live run: exit %d\n%s\n%s", code, st.out, st.errOut)
	}
	for i := range 2 {
		if r, err := lease.Parse([]byte(l.leaseOn(t, i))); err != nil || r.Run != run {
			t.Fatalf("node %d's lease after the refused release: %v %v", i, r, err)
		}
	}

	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("first run: exit %d\n%s\n%s", code, first.out, first.errOut)
	}
	for i := range 2 {
		if f := l.leaseOn(t, i); f != "" {
			t.Errorf("node %d: lease left after the run: %s", i, f)
		}
	}
}

// writeLease writes rec as cluster kms's lease in dir.
func writeLease(t *testing.T, dir string, rec lease.Record) {
	t.Helper()
	writeLeaseOf(t, dir, "kms", rec)
}

// writeLeaseOf writes rec as the lease of cluster in dir.
func writeLeaseOf(t *testing.T, dir, cluster string, rec lease.Record) {
	t.Helper()
	rec.Kind, rec.Version, rec.Cluster = lease.Kind, lease.Version, cluster
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lease.Path(dir, cluster), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStaleLeases: a file that is not a lease stops a run (exit 5, naming
// file and node) and is shown by `lock status`; `lock release` asks (no
// terminal: exit 1, nothing removed), refuses a live lease of another
// machine (exit 4, nothing removed anywhere), and with --yes removes
// garbage, expired leases and leases of this machine's dead processes; a
// run takes over an expired lease and says so.
func TestStaleLeases(t *testing.T) {
	l := newKMSLab(t)
	pb := writePlaybook(t, fmt.Sprintf("- hosts: kms1\n  tasks:\n    - kms_remove_node:\n        id: %d\n", l.deadID))
	te := func() *testEnvT {
		n := testEnv(t)
		n.vars[envAPIKey] = l.admin.Secret()
		return n
	}
	inv := []string{"-i", l.inventory, "--ssh-config", "none"}
	now := time.Now().UTC()
	foreign := lease.Record{User: "alice@bastion1", PID: 4242, Run: "20261202T085100Z-1a2b3c4d", Command: "kmsctl recover node kms2",
		Since: now.Add(-time.Hour), Renewed: now, Expires: now.Add(lease.TTL)}
	expired := foreign
	expired.Renewed, expired.Expires = now.Add(-10*time.Minute), now.Add(-7*time.Minute)

	// Garbage on kms2: refused, named, left.
	if err := os.MkdirAll(l.leaseDirs[1], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lease.Path(l.leaseDirs[1], "kms"), []byte("half a thought"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := te()
	code := e.run(t, append([]string{"play", pb}, inv...)...)
	if code != exit.Locked || !strings.Contains(e.errOut.String(), "cluster kms: the lease file "+lease.Path(l.leaseDirs[1], "kms")+" on kms2 is not a kmsctl lease") {
		t.Fatalf("play over garbage: exit %d\n%s", code, e.errOut)
	}
	if l.leaseOn(t, 0) != "" || l.leaseOn(t, 1) != "half a thought" {
		t.Fatalf("leases after the refused run: %q %q", l.leaseOn(t, 0), l.leaseOn(t, 1))
	}
	e = te()
	if code := e.run(t, append([]string{"lock", "status"}, inv...)...); code != 0 || !strings.Contains(e.out.String(), "kms2: "+lease.Path(l.leaseDirs[1], "kms")+" is not a kmsctl lease (not JSON") {
		t.Fatalf("lock status: exit %d\n%s%s", code, e.out, e.errOut)
	}

	// A live lease of another machine on kms1: release refuses, removes nothing.
	writeLease(t, l.leaseDirs[0], foreign)
	e = te()
	if code := e.run(t, append([]string{"lock", "release", "--yes"}, inv...)...); code != exit.Refused ||
		!strings.Contains(e.errOut.String(), "kms1 is leased by alice@bastion1") || !strings.Contains(e.errOut.String(), "a run on another machine") {
		t.Fatalf("release of a live foreign lease: exit %d\n%s%s", code, e.out, e.errOut)
	}
	if l.leaseOn(t, 1) != "half a thought" || !strings.Contains(l.leaseOn(t, 0), "alice@bastion1") {
		t.Fatal("a refused release removed a lease")
	}

	// Expired on kms1: release asks; without a terminal nothing is removed.
	writeLease(t, l.leaseDirs[0], expired)
	e = te()
	if code := e.run(t, append([]string{"lock", "release"}, inv...)...); code != exit.Usage || !strings.Contains(e.errOut.String(), "pass --yes (nothing was removed)") {
		t.Fatalf("release without --yes: exit %d\n%s%s", code, e.out, e.errOut)
	}
	if l.leaseOn(t, 0) == "" || l.leaseOn(t, 1) == "" {
		t.Fatal("a release that was not confirmed removed a lease")
	}
	e = te()
	if code := e.run(t, append([]string{"lock", "release", "--yes"}, inv...)...); code != 0 ||
		!strings.Contains(e.out.String(), "on kms1: expired lease of alice@bastion1") || !strings.Contains(e.out.String(), "on kms2: it is not a kmsctl lease") {
		t.Fatalf("release --yes: exit %d\n%s%s", code, e.out, e.errOut)
	}
	if l.leaseOn(t, 0) != "" || l.leaseOn(t, 1) != "" {
		t.Fatal("leases left after release --yes")
	}

	// A lease of this machine whose process is gone, unexpired: released.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := foreign
	dead.User, dead.PID = operator(), gone.ProcessState.Pid()
	writeLease(t, l.leaseDirs[1], dead)
	e = te()
	if code := e.run(t, append([]string{"lock", "release", "--yes"}, inv...)...); code != 0 || !strings.Contains(e.out.String(), "whose process is gone from this machine") || l.leaseOn(t, 1) != "" {
		t.Fatalf("release of a dead local run's lease: exit %d\n%s%s", code, e.out, e.errOut)
	}

	// An expired lease is taken over by a run, which says so.
	writeLease(t, l.leaseDirs[0], expired)
	e = te()
	if code := e.run(t, append([]string{"play", pb}, inv...)...); code != 0 ||
		!strings.Contains(e.errOut.String(), "lease of cluster kms on kms1 taken over: it had expired (alice@bastion1") {
		t.Fatalf("play over an expired lease: exit %d\n%s%s", code, e.out, e.errOut)
	}
	if l.leaseOn(t, 0) != "" {
		t.Fatal("the run left its lease")
	}
}

// TestLeaseNotCheckedDoesNotBlock: a node of the cluster that does not
// answer SSH does not stop a run; a warning says its lease was not
// checked.
func TestLeaseNotCheckedDoesNotBlock(t *testing.T) {
	l := newKMSLab(t)
	inv, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	// kms3: in the cluster, nothing listens on its SSH port.
	down := strings.Replace(string(inv), "      hosts:\n", "      hosts:\n        kms3:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n", 1)
	if err := os.WriteFile(l.inventory, []byte(down), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := writePlaybook(t, fmt.Sprintf("- hosts: kms1\n  tasks:\n    - kms_remove_node:\n        id: %d\n", l.deadID))
	e := testEnv(t)
	e.vars[envAPIKey] = l.admin.Secret()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, e.env, []string{"kmsctl", "play", pb, "-i", l.inventory, "--ssh-config", "none"})
	if code != 0 || !strings.Contains(e.errOut.String(), "lease of cluster kms on kms3 not checked: ") {
		t.Fatalf("exit %d\n%s%s", code, e.out, e.errOut)
	}
}

// aliceLease is a live lease of a run on another bastion.
func aliceLease() lease.Record {
	now := time.Now().UTC()
	return lease.Record{User: "alice@bastion1", PID: 4242, Run: "20261202T085100Z-1a2b3c4d", Command: "kmsctl recover node kms2",
		Since: now.Add(-time.Minute), Renewed: now, Expires: now.Add(lease.TTL)}
}

// TestStatusAndBackupShowLease: status and backup take no lease, and show
// one another bastion's run holds (status: a LEASED line and leases in
// JSON; backup: leases in JSON, the line with -v); the verdict and the
// exit code do not change, and the lease is left as it was.
func TestStatusAndBackupShowLease(t *testing.T) {
	l := newStatusLab(t, 3)
	writeLease(t, l.leaseDirs[1], aliceLease())
	before, err := os.ReadFile(lease.Path(l.leaseDirs[1], "kms"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"status", "-i", l.inventory, "--ssh-config", "none"}
	te := testEnv(t)
	want := "LEASED: cluster kms is leased on kms2 by alice@bastion1 (pid 4242, run 20261202T085100Z-1a2b3c4d, `kmsctl recover node kms2`"
	if code := te.run(t, args...); code != 0 || !strings.Contains(te.out.String(), "HEALTHY") || !strings.Contains(te.out.String(), want) {
		t.Fatalf("status: exit %d, want 0 and %q\n%s\n%s", code, want, te.out, te.errOut)
	}
	te = testEnv(t)
	if code := te.run(t, append(args, "-o", "json")...); code != 0 {
		t.Fatalf("status -o json: exit %d\n%s", code, te.errOut)
	}
	var doc struct {
		Leases []lease.NodeLease `json:"leases"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(te.out.String(), "\n", 2)[0]), &doc); err != nil || len(doc.Leases) != 1 ||
		doc.Leases[0].Node != "kms2" || doc.Leases[0].Lease == nil || doc.Leases[0].Lease.User != "alice@bastion1" {
		t.Fatalf("status -o json: leases %+v (%v)\n%s", doc.Leases, err, te.out)
	}
	be, code := l.backup(t, time.Now(), "-o", "json")
	if code != 0 || !strings.Contains(be.out.String(), `"leases":[{"node":"kms2"`) {
		t.Fatalf("backup -o json: exit %d\n%s\n%s", code, be.out, be.errOut)
	}
	be, code = l.backup(t, time.Now().Add(time.Second), "-v")
	if code != 0 || !strings.Contains(be.errOut.String(), want) {
		t.Fatalf("backup -v: exit %d\n%s\n%s", code, be.out, be.errOut)
	}
	after, err := os.ReadFile(lease.Path(l.leaseDirs[1], "kms"))
	if err != nil || string(after) != string(before) {
		t.Fatalf("the lease changed: %s %v", after, err)
	}
	// An expired lease is not shown as held; none at all: "leases": [].
	expired := aliceLease()
	expired.Expires = time.Now().Add(-time.Minute)
	writeLease(t, l.leaseDirs[1], expired)
	te = testEnv(t)
	if code := te.run(t, append(args, "-o", "json")...); code != 0 || !strings.Contains(te.out.String(), `"leases":[]`) {
		t.Fatalf("status -o json with an expired lease: exit %d\n%s", code, te.out)
	}
}

// TestRecoverRefusesLeasedCluster: recover node exits 5 before its plan,
// naming the holder, when another bastion's run holds the cluster's lease
// on a node; nothing changes on any host.
func TestRecoverRefusesLeasedCluster(t *testing.T) {
	l := newRecoverLab(t)
	l.kill(1)
	writeLease(t, l.leaseDir(0), aliceLease())
	before := l.snapshot()
	te, code := l.recover(t, "kms2", "--yes")
	if code != exit.Locked || !strings.Contains(te.errOut.String(), "recover node: cluster kms is leased on kms1 by alice@bastion1") ||
		strings.Contains(te.out.String(), "plan for") {
		t.Fatalf("exit %d, want %d naming the lease\n%s\n%s", code, exit.Locked, te.out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("hosts changed:\n%s\nwant\n%s", after, before)
	}
}

// TestResumeTakesOverItsLease: a recover node killed mid-run (SIGKILL:
// its lease left on the nodes, unexpired) is resumed: the resume goes on
// under the run's ID, takes the lease over and removes it at its end; a
// lease of another run stops the resume before it asks (exit 5).
func TestResumeTakesOverItsLease(t *testing.T) {
	l := newRecoverLab(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	l.loseKMS3(t)
	id := l.recoverCut(t, stateDir, "every member lists it and has caught up", true)
	// What kill -9 leaves: the run's lease, renewed a moment ago.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	own := aliceLease()
	own.User, own.PID, own.Run, own.Command = operator(), gone.ProcessState.Pid(), id, "kmsctl recover node kms3"
	other := aliceLease()
	writeLease(t, l.leaseDir(1), other)
	for i := range 3 {
		if i != 1 {
			writeLease(t, l.leaseDir(i), own)
		}
	}
	te := testEnv(t)
	te.env.stateDir = stateDir
	if code := te.run(t, "resume", id, "-i", l.inventory, "--ssh-config", "none", "--yes"); code != exit.Locked ||
		!strings.Contains(te.errOut.String(), "cluster kms is leased on kms2 by alice@bastion1") {
		t.Fatalf("resume with another run's lease: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	writeLease(t, l.leaseDir(1), own)
	te = testEnv(t)
	te.env.stateDir = stateDir
	if code := te.run(t, "resume", id, "-i", l.inventory, "--ssh-config", "none", "--yes"); code != 0 || !strings.Contains(te.out.String(), "RECOVERED kms3") {
		t.Fatalf("resume over its own lease: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	for i := range 3 {
		if _, err := os.Stat(lease.Path(l.leaseDir(i), "kms")); !os.IsNotExist(err) {
			t.Errorf("kms%d: lease left after the resume: %v", i+1, err)
		}
	}
}
