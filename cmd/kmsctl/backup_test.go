package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/metrics"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kmsmodules"
)

// client is an admin client of every node of the lab.
func (l *statusLab) client(t *testing.T) *kms.Client {
	t.Helper()
	var eps []string
	for _, n := range l.nodes {
		eps = append(eps, n.Host())
	}
	c, err := kms.New(kms.Config{Endpoints: eps, APIKey: l.admin, RootCAs: l.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// backup runs `kmsctl backup` in-process at the time at.
func (l *statusLab) backup(t *testing.T, at time.Time, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	te.now = func() time.Time { return at }
	code := te.run(t, append([]string{"backup", "-i", l.inventory, "--ssh-config", "none"}, args...)...)
	return te, code
}

// backupManifest is the part of a manifest the tests read.
type backupManifest struct {
	Created  time.Time `json:"created"`
	Cluster  string    `json:"cluster"`
	Endpoint string    `json:"endpoint"`
	Version  string    `json:"version"`
	Nodes    []struct {
		ID       uint32 `json:"id"`
		Endpoint string `json:"endpoint"`
	} `json:"nodes"`
	Snapshot       string         `json:"snapshot"`
	Size           int64          `json:"size"`
	SHA256         string         `json:"sha256"`
	HSMFingerprint string         `json:"hsm_fingerprint"`
	Counts         map[string]int `json:"counts"`
	Objects        struct {
		Enclaves []struct {
			Name       string `json:"name"`
			Keys       []struct{ Name string }
			Policies   []string `json:"policies"`
			Identities []string `json:"identities"`
		} `json:"enclaves"`
	} `json:"objects"`
	Canary *struct {
		Enclave string `json:"enclave"`
		Key     string `json:"key"`
	} `json:"canary"`
}

// held counts what the cluster holds, asked through its API.
func held(t *testing.T, c *kms.Client) map[string]int {
	t.Helper()
	ctx := t.Context()
	n := map[string]int{}
	for e, err := range c.ListEnclaves(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		n["enclaves"]++
		for _, err := range c.ListKeys(ctx, e.GetName(), "") {
			if err != nil {
				t.Fatal(err)
			}
			n["keys"]++
		}
		for _, err := range c.ListPolicies(ctx, e.GetName(), "") {
			if err != nil {
				t.Fatal(err)
			}
			n["policies"]++
		}
		for _, err := range c.ListIdentities(ctx, e.GetName(), "") {
			if err != nil {
				t.Fatal(err)
			}
			n["identities"]++
		}
	}
	return n
}

// TestBackup: `kmsctl backup` against a three-node simulator cluster
// reached over SSH: quiet on success; the snapshot (gzip) and its manifest,
// both 0600, in a 0700 directory per cluster in the state directory, named
// after the time in UTC; the manifest's counts and names are what the
// cluster holds, its nodes the cluster's, its sha256 the file's, and it
// holds no secret; --output json prints the backup event; -v one line.
func TestBackup(t *testing.T) {
	l := newStatusLab(t, 3)
	c := l.client(t)
	ctx := t.Context()
	user, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		c.CreateEnclave(ctx, "tenant"),
		c.CreateKey(ctx, "tenant", "minio-1"),
		c.CreateKey(ctx, "tenant", "minio-2"),
		c.CreateKey(ctx, "default", "app"),
		c.CreatePolicy(ctx, "tenant", &pb.CreatePolicyRequest{Name: "readers"}),
		c.CreateIdentity(ctx, "tenant", &pb.CreateIdentityRequest{Identity: user.Identity()}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 12, 2, 9, 30, 5, 0, time.FixedZone("CET", 3600))
	te, code := l.backup(t, at)
	if code != 0 || te.out.String() != "" || te.errOut.String() != "" {
		t.Fatalf("backup: exit %d, want 0 and no output\nstdout: %s\nstderr: %s", code, te.out, te.errOut)
	}
	// Its journal counts the nodes it asked, as `kmsctl runs ls` shows.
	if r := onlyRun(t, te); r.End == nil || r.End.Hosts != 3 || r.End.Outcome != "ok" {
		t.Errorf("backup's journal ends %+v, want 3 hosts, ok", r.End)
	}
	dir := filepath.Join(te.stateDir, "backups", "kms")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("backup directory %s: %v, %v; want 0700", dir, fi, err)
	}
	snap := filepath.Join(dir, "20261202_083005_kms.db.gzip")
	for _, f := range []string{snap, snap + ".manifest.json"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", f, fi, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("backup directory holds %d entries, want the snapshot and its manifest", len(entries))
	}
	data, err := os.ReadFile(snap)
	if err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Fatalf("snapshot is not gzip: %v", err)
	}
	raw, err := os.ReadFile(snap + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m backupManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if m.Cluster != "kms" || m.SHA256 != hex.EncodeToString(sum[:]) || m.Size != int64(len(data)) || m.Snapshot != filepath.Base(snap) ||
		m.HSMFingerprint != l.hsmKey.Fingerprint() || m.Version != "2025-11-12T19-14-51Z" || m.Created.Location() != time.UTC {
		t.Errorf("manifest: %+v", m)
	}
	var want []string
	for _, n := range l.nodes {
		want = append(want, n.Host())
	}
	var got []string
	for _, n := range m.Nodes {
		got = append(got, n.Endpoint)
		if !slices.ContainsFunc(l.nodes, func(k *kmsim.Node) bool { return k.NodeID() == n.ID }) {
			t.Errorf("manifest node %d is not a node of the cluster", n.ID)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("manifest nodes %v, want %v", got, want)
	}
	// The counts are what the cluster holds, the canary key included.
	h := held(t, c)
	if h["keys"] != 4 || h["enclaves"] != 2 || m.Canary == nil || m.Canary.Key != "kmsctl-canary" {
		t.Errorf("cluster holds %v, canary %+v; want the three keys and the canary key", h, m.Canary)
	}
	for _, k := range []string{"enclaves", "keys", "policies", "identities"} {
		if m.Counts[k] != h[k] {
			t.Errorf("manifest counts %s = %d, the cluster holds %d", k, m.Counts[k], h[k])
		}
	}
	var names []string
	for _, e := range m.Objects.Enclaves {
		for _, k := range e.Keys {
			names = append(names, e.Name+"/"+k.Name)
		}
		names = append(names, e.Policies...)
		names = append(names, e.Identities...)
	}
	for _, n := range []string{"tenant/minio-1", "tenant/minio-2", "default/app", "default/kmsctl-canary", "readers", user.Identity()} {
		if !slices.Contains(names, n) {
			t.Errorf("manifest lacks %s: %v", n, names)
		}
	}
	// No secret anywhere: the admin API key, the HSM key (text and key
	// material), the user's API key.
	hsmText := l.hsmKey.Text()
	for what, secret := range map[string]string{"admin API key": l.admin.Secret(), "HSM key": hsmText,
		"HSM key material": hsmText[strings.LastIndexByte(hsmText, ':')+1:], "user API key": user.Secret()} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the %s is in the manifest", what)
		}
		if strings.Contains(runLogs(t, te), secret) {
			t.Errorf("the %s is in the run log", what)
		}
	}
	if b, err := kmsmodules.NewestBackup(dir); err != nil || b.Snapshot != snap {
		t.Errorf("NewestBackup = %+v, %v; want %s", b, err, snap)
	}

	// --output json: one backup event (and run_end).
	te, code = l.backup(t, at.Add(time.Second), "--output", "json")
	var ev struct {
		Event, Cluster, Snapshot, SHA256, Node string
		Counts                                 map[string]int
		Canary                                 bool
	}
	for _, line := range strings.Split(te.out.String(), "\n") {
		if strings.Contains(line, `"event":"backup"`) {
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, _ = os.ReadFile(ev.Snapshot)
	sum = sha256.Sum256(data)
	if code != 0 || ev.Event != "backup" || ev.Cluster != "kms" || ev.SHA256 != hex.EncodeToString(sum[:]) || ev.Counts["keys"] != 4 || !ev.Canary ||
		filepath.Base(ev.Snapshot) != "20261202_083006_kms.db.gzip" {
		t.Fatalf("--output json: exit %d, %+v\n%s\n%s", code, ev, te.out, te.errOut)
	}

	// -v: one line; another backup in the same second gets a name of its
	// own (TestBackupSameSecond).
	te, code = l.backup(t, at.Add(2*time.Second), "-v", "--dir", dir)
	if code != 0 || !strings.Contains(te.out.String(), "backed up kms") || !strings.Contains(te.out.String(), "4 keys") {
		t.Fatalf("-v: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	te, code = l.backup(t, at.Add(2*time.Second), "-v", "--dir", dir)
	if code != 0 || !strings.Contains(te.out.String(), "20261202_083007-2_kms.db.gzip") {
		t.Fatalf("same second again: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
}

// TestBackupKeep: five runs with --keep 3 into a directory of the
// operator's (--dir, as a mounted share would be) leave the three newest
// backups and the files that are not kmsctl's.
func TestBackupKeep(t *testing.T) {
	l := newStatusLab(t, 3)
	dir := filepath.Join(t.TempDir(), "share", "kms")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "20200101_000000_kms.db.gzip") // the vendor's CLI: no manifest
	if err := os.WriteFile(other, []byte("vendor"), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	var names []string
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Hour)
		names = append(names, kmsmodules.BackupName(at))
		if te, code := l.backup(t, at, "--dir", dir, "--keep", "3"); code != 0 || te.out.String() != "" {
			t.Fatalf("run %d: exit %d\n%s\n%s", i, code, te.out, te.errOut)
		}
	}
	_, got := listBackups(t, dir)
	if want := []string{names[4], names[3], names[2]}; !slices.Equal(got, want) {
		t.Errorf("after 5 runs with --keep 3: %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 7 {
		t.Errorf("%d entries in %s, want three pairs and the vendor's file", len(entries), dir)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is not kmsctl's was removed: %v", err)
	}
}

// TestBackupFailures: a node whose backup fails (its env file is gone, so
// no HSM-key fingerprint) is passed over for the next healthy one; when
// every node fails, backup exits 2 naming each; when no node answers, it
// exits 3 and writes nothing; --keep must not be negative.
func TestBackupFailures(t *testing.T) {
	l := newStatusLab(t, 2)
	dir := filepath.Join(t.TempDir(), "b")
	if err := os.Remove(l.envFiles[0]); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	te, code := l.backup(t, at, "--dir", dir)
	if code != 0 {
		t.Fatalf("kms1 without env file: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	var m backupManifest
	raw, err := os.ReadFile(filepath.Join(dir, kmsmodules.BackupName(at)+".manifest.json"))
	if err != nil || json.Unmarshal(raw, &m) != nil || m.Endpoint != l.nodes[1].Host() {
		t.Fatalf("backup not from kms2: %+v, %v", m, err)
	}
	if err := os.Remove(l.envFiles[1]); err != nil {
		t.Fatal(err)
	}
	te, code = l.backup(t, at.Add(time.Second), "--dir", dir)
	if code != exit.HostFailed || !strings.Contains(te.errOut.String(), "kms1") || !strings.Contains(te.errOut.String(), "kms2") {
		t.Fatalf("every node fails: exit %d, want 2 naming both\n%s\n%s", code, te.out, te.errOut)
	}
	if bs, _ := kmsmodules.ListBackups(dir); len(bs) != 1 {
		t.Errorf("%d backups after a failed run, want 1", len(bs))
	}

	for _, s := range l.servers {
		s.Close()
	}
	empty := filepath.Join(t.TempDir(), "none")
	te, code = l.backup(t, time.Now(), "--dir", empty)
	if code != exit.Unreachable || !strings.Contains(te.errOut.String(), "no node of group kms answers") {
		t.Fatalf("no node answers: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("files written: %v", entries)
	}
	if te, code := l.backup(t, time.Now(), "--keep", "-1"); code != exit.Usage {
		t.Fatalf("--keep -1: exit %d\n%s", code, te.errOut)
	}
}

// TestBackupMetricsFile: --metrics-file writes the run's metrics in the
// textfile-collector format (read back with the client library's parser):
// after a good backup, success 1 and the newest good backup's time (its
// manifest's), size
// and objects; after a failed run, success 0 and its exit code, and the
// last success still that of the newest good backup. A file name the
// collector would not read is a usage error before anything is done.
func TestBackupMetricsFile(t *testing.T) {
	l := newStatusLab(t, 2)
	dir := filepath.Join(t.TempDir(), "b")
	textfiles := t.TempDir()
	prom := filepath.Join(textfiles, "kmsctl_backup_kms.prom")
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	te, code := l.backup(t, at, "--dir", dir, "--metrics-file", prom)
	if code != 0 || te.out.String() != "" || te.errOut.String() != "" {
		t.Fatalf("backup: exit %d, want 0 and quiet\n%s\n%s", code, te.out, te.errOut)
	}
	b, err := kmsmodules.NewestBackup(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.Info()
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := metrics.Read(prom)
	if err != nil {
		t.Fatal(err)
	}
	kms := prometheus.Labels{"cluster": "kms"}
	for name, want := range map[string]float64{
		"kmsctl_backup_success":                        1,
		"kmsctl_backup_exit_code":                      0,
		"kmsctl_backup_last_success_timestamp_seconds": unix(info.Created),
		"kmsctl_backup_last_run_timestamp_seconds":     float64(at.Unix()),
		"kmsctl_backup_size_bytes":                     float64(info.Size),
		"kmsctl_backup_canary":                         1,
	} {
		if got, ok := metrics.Value(mfs, name, kms); !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
		}
	}
	if got, _ := metrics.Value(mfs, "kmsctl_backup_objects", prometheus.Labels{"cluster": "kms", "kind": "keys"}); got != 1 || info.Keys != 1 {
		t.Errorf("objects{kind=keys} = %v, want the canary key (manifest: %d)", got, info.Keys)
	}
	if entries, _ := os.ReadDir(textfiles); len(entries) != 1 {
		t.Errorf("textfile directory holds %v, want the metrics file alone", entries)
	}

	// A failed run: success 0, exit code 3; the last success stays.
	for _, s := range l.servers {
		s.Close()
	}
	te, code = l.backup(t, at.Add(time.Hour), "--dir", dir, "--metrics-file", prom)
	if code != exit.Unreachable {
		t.Fatalf("no node answers: exit %d\n%s", code, te.errOut)
	}
	if mfs, err = metrics.Read(prom); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"kmsctl_backup_success":                        0,
		"kmsctl_backup_exit_code":                      exit.Unreachable,
		"kmsctl_backup_last_success_timestamp_seconds": unix(info.Created),
		"kmsctl_backup_last_run_timestamp_seconds":     float64(at.Add(time.Hour).Unix()),
	} {
		if got, ok := metrics.Value(mfs, name, kms); !ok || got != want {
			t.Errorf("after a failure: %s = %v (%v), want %v", name, got, ok, want)
		}
	}

	// No good backup at all: the last success is 0, so its age alerts.
	te, code = l.backup(t, at, "--dir", filepath.Join(t.TempDir(), "empty"), "--metrics-file", prom)
	if code != exit.Unreachable {
		t.Fatalf("exit %d\n%s", code, te.errOut)
	}
	if mfs, err = metrics.Read(prom); err != nil {
		t.Fatal(err)
	}
	if got, ok := metrics.Value(mfs, "kmsctl_backup_last_success_timestamp_seconds", kms); !ok || got != 0 {
		t.Errorf("no backup: last success %v (%v), want 0", got, ok)
	}

	// A name the collector ignores: usage error, no file, no run.
	bad := filepath.Join(textfiles, "kmsctl.txt")
	te, code = l.backup(t, at, "--dir", dir, "--metrics-file", bad)
	if code != exit.Usage || !strings.Contains(te.errOut.String(), ".prom") {
		t.Fatalf("--metrics-file %s: exit %d\n%s", bad, code, te.errOut)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a metrics file with the wrong name was written")
	}
}

// TestBackupSameSecond: backups taken in the same second each get a name
// of their own (the vendor's
// name first, then -2, -3): none fails, none overwrites or takes over
// another's pair, and the newest good backup is the last one named. No
// reservation file is left behind.
func TestBackupSameSecond(t *testing.T) {
	l := newStatusLab(t, 2)
	dir := filepath.Join(t.TempDir(), "b")
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	if te, code := l.backup(t, at, "--dir", dir); code != 0 {
		t.Fatalf("first backup: exit %d\n%s\n%s", code, te.out, te.errOut)
	}
	// Two more in the same second, one after the other. (Two at the same
	// time are TestReserveBackupAtOnce's: two in-process runs at once race
	// in urfave/cli v2, which writes its global help flag while parsing.)
	for i := range 2 {
		if te, code := l.backup(t, at.Add(300*time.Millisecond), "--dir", dir); code != 0 {
			t.Errorf("backup %d in the same second: exit %d\n%s", i+2, code, te.errOut)
		}
	}
	bs, got := listBackups(t, dir)
	for _, b := range bs {
		if err := b.Check(); err != nil {
			t.Errorf("%s does not check out: %v", b.Snapshot, err)
		}
	}
	want := []string{"20261202_030000-3_kms.db.gzip", "20261202_030000-2_kms.db.gzip", "20261202_030000_kms.db.gzip"}
	if !slices.Equal(got, want) {
		t.Errorf("backups = %v, want %v", got, want)
	}
	if b, err := kmsmodules.NewestBackup(dir); err != nil || filepath.Base(b.Snapshot) != want[0] {
		t.Errorf("NewestBackup = %v, %v; want %s", b, err, want[0])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Errorf("%d entries in %s, want three pairs and nothing else: %v", len(entries), dir, entries)
	}
}

// listBackups returns the backups in dir, newest first, and their
// snapshots' file names.
func listBackups(t *testing.T, dir string) ([]kmsmodules.Backup, []string) {
	t.Helper()
	bs, err := kmsmodules.ListBackups(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		names = append(names, filepath.Base(b.Snapshot))
	}
	return bs, names
}
