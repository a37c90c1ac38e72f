package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/metrics"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/lock"
)

// drillReportDoc is the part of a drill report the tests read.
type drillReportDoc struct {
	Cluster, Scratch, Backup, Result string
	ExitCode                         int `json:"exit_code"`
	Phases                           []drillPhase
	RestoreSeconds                   float64 `json:"restore_seconds"`
	Objects                          map[string]int
	Canary                           bool
}

// TestDrill: a backup of the lab's cluster, kms3 taken out of it (scale
// remove) and out of its group: `kmsctl drill --scratch kms3` provisions
// kms3, restores the newest backup onto it, verifies it and tears it down,
// quietly, while a run holds the cluster's lock (the drill takes only the
// scratch host's); its report and metrics file say so, and no file of kms3
// holds the HSM key afterwards. A manifest listing a key the snapshot
// lacks fails the drill's verification (exit 7), kms3 still torn down, the
// metrics keeping the last success. A scratch host of a cluster is
// refused (exit 4) and nothing changes.
func TestDrill(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	c := l.client(l.addrs[0])
	for _, k := range []string{"k1", "k2"} {
		if err := c.CreateKey(ctx, "", k); err != nil {
			t.Fatal(err)
		}
	}
	backups := filepath.Join(t.TempDir(), "backups")
	if te, code := l.kmsctl(t, "backup", "--dir", backups); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, te.errOut)
	}
	// kms3, a running member, outside the inventory's cluster groups (a
	// production node the inventory does not list as one): its Key
	// Manager answers, so it is refused, and nothing changes.
	orig, err := os.ReadFile(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	spare := strings.Replace(string(orig), "        kms3:\n", "    spare:\n      hosts:\n        kms3:\n", 1)
	if err := os.WriteFile(l.inventory, []byte(spare), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := l.snapshot()
	if te, code := l.kmsctl(t, "drill", "--scratch", "kms3", "--dir", backups); code != exit.Refused || !strings.Contains(te.errOut.String(), "runs a Key Manager") {
		t.Fatalf("drill onto a running node: exit %d, want 4\n%s\n%s", code, te.out, te.errOut)
	}
	if l.snapshot() != snap || len(l.members(t, 0, 1, 2)) != 3 {
		t.Fatal("a refused drill changed something")
	}
	if err := os.WriteFile(l.inventory, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if te, code := l.kmsctl(t, "scale", "remove", "kms3", "--yes"); code != 0 {
		t.Fatalf("scale remove kms3: exit %d\n%s\n%s", code, te.out, te.errOut)
	}

	// kms3 is still a host of group kms (and kms1 a member): refused.
	before := l.snapshot()
	for _, h := range []string{"kms3", "kms1"} {
		te, code := l.kmsctl(t, "drill", "--scratch", h, "--dir", backups)
		if code != exit.Refused || !strings.Contains(te.errOut.String(), "is a host of group kms") {
			t.Fatalf("drill --scratch %s: exit %d, want 4\n%s\n%s", h, code, te.out, te.errOut)
		}
	}
	if l.snapshot() != before {
		t.Fatal("a refused drill changed files")
	}
	if err := os.WriteFile(l.inventory, []byte(spare), 0o600); err != nil {
		t.Fatal(err)
	}

	// The cluster's lock held by another run: the drill does not need it.
	te := testEnv(t)
	held, err := lock.Acquire(ctx, locksDir(te.stateDir), []string{"kms"}, lock.Holder{User: "alice@bastion1", PID: 1, Run: "r", Command: "kmsctl recover node kms2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	prom := filepath.Join(t.TempDir(), "kmsctl_drill_kms.prom")
	report := filepath.Join(t.TempDir(), "drill.json")
	code := te.run(t, "drill", "--scratch", "kms3", "--dir", backups, "--metrics-file", prom, "--report", report, "-i", l.inventory, "--ssh-config", "none")
	if code != 0 || te.out.String() != "" || te.errOut.String() != "" {
		t.Fatalf("drill: exit %d, want 0 and quiet\n%s\n%s", code, te.out, te.errOut)
	}
	var rep drillReportDoc
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report: %v", err)
	} else {
		t.Logf("report:\n%s", b)
	}
	newest, _ := kmsmodules.NewestBackup(backups)
	info, _ := newest.Info()
	if rep.Result != "ok" || rep.Scratch != "kms3" || rep.Backup != newest.Snapshot || len(rep.Phases) != 5 || rep.RestoreSeconds <= 0 ||
		rep.Objects["keys"] != info.Keys || info.Keys != 3 || !rep.Canary {
		t.Errorf("report: %+v", rep)
	}
	for _, p := range rep.Phases {
		if !p.OK {
			t.Errorf("phase %s not ok", p.Phase)
		}
	}
	// One drill, one run: its preflight writes no run log or journal of
	// its own.
	if r := oneRun(t, te); r.Command != "drill --scratch kms3 --cluster kms" || r.End == nil || r.End.ExitCode != 0 {
		t.Errorf("the drill's run: %s, end %+v", r.Command, r.End)
	}
	mfs, err := metrics.Read(prom)
	if err != nil {
		t.Fatal(err)
	}
	kms := prometheus.Labels{"cluster": "kms"}
	last, _ := metrics.Value(mfs, "kmsctl_drill_last_success_timestamp_seconds", kms)
	for name, ok := range map[string]bool{
		"kmsctl_drill_success":          metricIs(mfs, "kmsctl_drill_success", kms, 1),
		"kmsctl_drill_exit_code":        metricIs(mfs, "kmsctl_drill_exit_code", kms, 0),
		"kmsctl_drill_canary_verified":  metricIs(mfs, "kmsctl_drill_canary_verified", kms, 1),
		"kmsctl_drill_objects_verified": metricIs(mfs, "kmsctl_drill_objects_verified", prometheus.Labels{"cluster": "kms", "kind": "keys"}, 3),
		"kmsctl_drill_last_success":     last > float64(time.Now().Add(-time.Hour).Unix()),
		"kmsctl_drill_phase{restore}":   metricPositive(mfs, "kmsctl_drill_phase_duration_seconds", prometheus.Labels{"cluster": "kms", "phase": "restore"}),
		"kmsctl_drill_restore_seconds":  metricPositive(mfs, "kmsctl_drill_restore_seconds", kms),
		"kmsctl_drill_backup_timestamp": metricIs(mfs, "kmsctl_drill_backup_timestamp_seconds", kms, unix(info.Created)),
		"kmsctl_drill_phase{teardown}":  metricPositive(mfs, "kmsctl_drill_phase_duration_seconds", prometheus.Labels{"cluster": "kms", "phase": "teardown"}),
	} {
		if !ok {
			t.Errorf("metrics: %s wrong", name)
		}
	}
	l.mu.Lock()
	running := l.nodes[2] != nil
	l.mu.Unlock()
	if running {
		t.Error("the scratch node still runs")
	}
	if got := l.filesWithKey(t, l.dirs[2]); len(got) > 0 {
		t.Errorf("files of the scratch host still hold the HSM key: %v", got)
	}
	if states, err := lock.List(locksDir(te.stateDir)); err != nil || len(states) != 2 {
		t.Errorf("locks: %+v, %v; want the cluster's (held by the other run) and the scratch host's", states, err)
	}
	if strings.Contains(runLogs(t, te), l.hsmKey.Text()) {
		t.Error("the HSM key is in the run log")
	}

	// A manifest that lists a key the snapshot lacks: the proof fails.
	var m map[string]any
	b, _ := os.ReadFile(newest.Manifest)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	enc := m["objects"].(map[string]any)["enclaves"].([]any)[0].(map[string]any)
	enc["keys"] = append(enc["keys"].([]any), map[string]any{"name": "never-made", "version": 0})
	b, _ = json.Marshal(m)
	if err := os.WriteFile(newest.Manifest, b, 0o600); err != nil {
		t.Fatal(err)
	}
	te2 := testEnv(t)
	code = te2.run(t, "drill", "--scratch", "kms3", "--backup", newest.Snapshot, "--metrics-file", prom, "--report", report, "-i", l.inventory, "--ssh-config", "none")
	if code != exit.VerifyFailed || !strings.Contains(te2.errOut.String(), "never-made") {
		t.Fatalf("drill of a backup that does not hold what its manifest lists: exit %d, want 7\n%s\n%s", code, te2.out, te2.errOut)
	}
	if got := l.filesWithKey(t, l.dirs[2]); len(got) > 0 {
		t.Errorf("after a failed drill, files of the scratch host hold the HSM key: %v", got)
	}
	if mfs, err = metrics.Read(prom); err != nil {
		t.Fatal(err)
	}
	if !metricIs(mfs, "kmsctl_drill_success", kms, 0) || !metricIs(mfs, "kmsctl_drill_exit_code", kms, exit.VerifyFailed) ||
		!metricIs(mfs, "kmsctl_drill_last_success_timestamp_seconds", kms, last) {
		t.Errorf("metrics after a failed drill: success, exit code or last success wrong")
	}
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || rep.Result != "verification_failed" || rep.ExitCode != 7 {
		t.Errorf("report after a failed drill: %+v, %v", rep, err)
	}

	// Interrupted once the scratch host holds the HSM key (its env file
	// written): the teardown still runs, and removes it.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if te, code := l.kmsctl(t, "backup", "--dir", fresh); code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, te.errOut)
	}
	ictx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	provisioned := make(chan struct{})
	go func() {
		defer close(provisioned)
		for ictx.Err() == nil {
			if _, err := os.Stat(filepath.Join(l.dirs[2], "minkms.env")); err == nil {
				interrupt()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	te3 := testEnv(t)
	code = run(ictx, te3.env, []string{"kmsctl", "drill", "--scratch", "kms3", "--dir", fresh, "--report", report, "-i", l.inventory, "--ssh-config", "none"})
	interrupt()
	<-provisioned
	if code == 0 || code == exit.VerifyFailed {
		t.Fatalf("interrupted drill: exit %d\n%s\n%s", code, te3.out, te3.errOut)
	}
	if got := l.filesWithKey(t, l.dirs[2]); len(got) > 0 {
		t.Errorf("after an interrupted drill, files of the scratch host hold the HSM key: %v", got)
	}
	rep = drillReportDoc{}
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Phases) == 0 ||
		rep.Phases[len(rep.Phases)-1].Phase != "teardown" || !rep.Phases[len(rep.Phases)-1].OK {
		t.Errorf("report of an interrupted drill: %+v, %v; want its teardown done", rep, err)
	}
}

func metricIs(mfs map[string]*dto.MetricFamily, name string, l prometheus.Labels, want float64) bool {
	v, ok := metrics.Value(mfs, name, l)
	return ok && v == want
}

func metricPositive(mfs map[string]*dto.MetricFamily, name string, l prometheus.Labels) bool {
	v, ok := metrics.Value(mfs, name, l)
	return ok && v > 0
}

// TestDrillUsage: drill's misuse is refused before any host is asked:
// usage errors (exit 1), and a scratch host reached at a cluster node's
// SSH address (exit 4).
func TestDrillUsage(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(inv, []byte("all:\n  children:\n    kms:\n      hosts:\n        a: {ansible_host: 10.0.0.1, ansible_port: 1}\n"+
		"    spare:\n      hosts:\n        s1: {ansible_host: 10.0.0.1, ansible_port: 1, kms_endpoint: \"s1:7373\"}\n        s2: {ansible_host: 10.0.0.2, ansible_port: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, exit.Usage, "--scratch HOST is required"},
		{[]string{"--scratch", "nope"}, exit.Usage, "nope is not a host of the inventory"},
		{[]string{"--scratch", "s2", "--backup", "x", "--dir", "y"}, exit.Usage, "give one of them"},
		{[]string{"--scratch", "s2", "--check"}, exit.Usage, "--check is not supported"},
		{[]string{"--scratch", "s2", "--metrics-file", filepath.Join(dir, "m.txt")}, exit.Usage, ".prom"},
		{[]string{"--scratch", "s1"}, exit.Refused, "scratch host s1 is reached at 10.0.0.1:1, as a is"},
		{[]string{"--scratch", "s2", "--dir", filepath.Join(dir, "none")}, exit.VerifyFailed, "list backups"},
	} {
		te := testEnv(t)
		code := te.run(t, append([]string{"drill", "-i", inv, "--ssh-config", "none"}, c.args...)...)
		if code != c.code || !strings.Contains(te.errOut.String(), c.want) {
			t.Errorf("drill %v: exit %d, want %d and %q\n%s", c.args, code, c.code, c.want, te.errOut)
		}
	}
}
