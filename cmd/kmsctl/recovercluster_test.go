package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
)

// clusterObjects creates, through kms1, an enclave with two keys, a policy
// and an identity, and returns a ciphertext made under one of the keys.
func (l *recoverLab) clusterObjects(t *testing.T) (ct []byte, version uint32) {
	t.Helper()
	ctx := context.Background()
	c := l.client(l.addrs[0])
	user, err := kms.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		c.CreateEnclave(ctx, "tenant"),
		c.CreateKey(ctx, "tenant", "minio-1"),
		c.CreateKey(ctx, "tenant", "minio-2"),
		c.CreatePolicy(ctx, "tenant", &pb.CreatePolicyRequest{Name: "readers"}),
		c.CreateIdentity(ctx, "tenant", &pb.CreateIdentityRequest{Identity: user.Identity()}),
		c.CreateKey(ctx, "", "k1"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	ct, version, err = c.Encrypt(ctx, "tenant", "minio-1", []byte("before the loss"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ct, version
}

// loseEverything stops every node and removes its data, env file and unit:
// a total loss (the binary, certificates and config stay, as on hosts
// rebuilt from an image).
func (l *recoverLab) loseEverything(t *testing.T) {
	t.Helper()
	for i, d := range l.dirs {
		l.kill(i)
		for _, p := range []string{"data", "minkms.env", "minkms.service"} {
			if err := os.RemoveAll(filepath.Join(d, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (l *recoverLab) recoverCluster(t *testing.T, stateDir string, args ...string) (*testEnvT, int) {
	t.Helper()
	te := testEnv(t)
	if stateDir != "" {
		te.env.stateDir = stateDir
	}
	code := te.run(t, append([]string{"recover", "cluster", "-i", l.inventory, "--ssh-config", "none"}, args...)...)
	return te, code
}

// checkRestored proves through the Key Manager API, node by node, that the
// cluster is whole: three members each, every object of clusterObjects,
// and the old ciphertext decrypts.
func (l *recoverLab) checkRestored(t *testing.T, ct []byte, version uint32) {
	t.Helper()
	ctx := context.Background()
	for _, ep := range l.addrs {
		c := l.client(ep)
		kmsimtest.Eventually(t, "three members seen by "+ep, func() error {
			if v := kms.View(ctx, c, ep); v.Err != nil || len(v.Members) != 3 || len(v.DownIDs) != 0 {
				return fmt.Errorf("view %+v", v)
			}
			return nil
		})
		var keys []string
		for k, err := range c.ListKeys(ctx, "tenant", "") {
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k.GetName())
		}
		var policies, identities []string
		for p, err := range c.ListPolicies(ctx, "tenant", "") {
			if err != nil {
				t.Fatal(err)
			}
			policies = append(policies, p.GetName())
		}
		for i, err := range c.ListIdentities(ctx, "tenant", "") {
			if err != nil {
				t.Fatal(err)
			}
			identities = append(identities, i.GetIdentity())
		}
		if strings.Join(keys, ",") != "minio-1,minio-2" || strings.Join(policies, ",") != "readers" || len(identities) != 1 ||
			!slices.Contains(keyList(t, c), "k1") {
			t.Errorf("%s holds keys %v, policies %v, identities %v, default keys %v", ep, keys, policies, identities, keyList(t, c))
		}
		if pt, err := c.Decrypt(ctx, "tenant", "minio-1", version, ct, nil); err != nil || string(pt) != "before the loss" {
			t.Errorf("%s: decrypt the ciphertext made before the loss: %q, %v", ep, pt, err)
		}
	}
}

// TestRecoverCluster: a backup of the lab's cluster, then every node lost.
// Each refusal (a corrupted backup, another HSM key, a backup without a
// manifest, a node still serving) exits 4
// with every host's files unchanged; --check prints the plan and changes
// nothing; without --backup, recover cluster restores the newest good
// backup onto the seed and adds the other two: every object is back on
// every node and the old ciphertext decrypts, checked through the API.
func TestRecoverCluster(t *testing.T) {
	l := newRecoverLab(t)
	ct, version := l.clusterObjects(t)
	state := filepath.Join(t.TempDir(), "state")
	bk := testEnv(t)
	bk.env.stateDir = state
	if code := bk.run(t, "backup", "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, bk.out, bk.errOut)
	}
	snaps, _ := filepath.Glob(filepath.Join(state, "backups", "kms", "*_kms.db.gzip"))
	if len(snaps) != 1 {
		t.Fatalf("backups: %v", snaps)
	}
	snap := snaps[0]
	l.loseEverything(t)

	// A corrupted copy, a copy without its manifest.
	dir := t.TempDir()
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(snap + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.db.gzip")
	bad := slices.Clone(b)
	bad[len(bad)/2] ^= 0xff
	writeFile(t, corrupt, bad)
	writeFile(t, corrupt+".manifest.json", m)
	vendor := filepath.Join(dir, "vendor.db.gzip")
	writeFile(t, vendor, b)

	other := hsm.New([32]byte{9})
	cases := []struct {
		name  string
		setup func(t *testing.T) func()
		args  []string
		want  string
	}{
		{"a corrupted backup", nil, []string{"--backup", corrupt}, "the backup does not check out"},
		{"another HSM key", func(t *testing.T) func() {
			return l.swapFile(t, l.inventory, "hsm.key", other.Text())
		}, nil, "is not the one the backup was taken under"},
		{"a backup without a manifest", nil, []string{"--backup", vendor}, "has no manifest of kmsctl's"},
		{"kms2 still serves", func(t *testing.T) func() {
			env := filepath.Join(l.dirs[1], "minkms.env")
			writeFile(t, env, []byte("MINIO_KMS_HSM_KEY="+l.hsmKey.Text()+"\n"))
			if err := l.start(1); err != nil {
				t.Fatal(err)
			}
			return func() {
				l.kill(1)
				os.RemoveAll(filepath.Join(l.dirs[1], "data"))
				os.Remove(env)
			}
		}, nil, "kms2 still serves: its Key Manager answers as node 0 of a cluster of 1 node(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			before := l.snapshot()
			te, code := l.recoverCluster(t, state, append(tc.args, "--yes")...)
			if code != exit.Refused || !strings.Contains(te.out.String(), tc.want) || !strings.Contains(te.out.String(), "nothing was changed") {
				t.Fatalf("exit %d, want %d and %q\n%s\n%s", code, exit.Refused, tc.want, te.out, te.errOut)
			}
			if after := l.snapshot(); after != before {
				t.Fatalf("files changed:\n%s\n---\n%s", before, after)
			}
		})
	}
	for want, args := range map[string][]string{
		"--seed kms9 is not a host of group":       {"--seed", "kms9"},
		"--discard kms2 is given twice":            {"--discard", "kms2", "--discard", "kms2"},
		"--limit is not taken":                     {"--limit", "kms1"},
		"recover cluster takes no arguments":       {"kms1"},
		"no such file or directory":                {"--backup", filepath.Join(dir, "none")},
		"confirm on a terminal, or pass --yes":     {},
		"no --backup given, and no good backup in": {"--yes"},
	} {
		st := state
		if strings.HasPrefix(want, "no --backup") {
			st = "" // an empty state directory: no backup
		}
		before := l.snapshot()
		te, code := l.recoverCluster(t, st, args...)
		if code != exit.Usage || !strings.Contains(te.errOut.String(), want) {
			t.Errorf("recover cluster %v: exit %d, want %d and %q\n%s\n%s", args, code, exit.Usage, want, te.out, te.errOut)
		}
		if after := l.snapshot(); after != before {
			t.Fatalf("usage error %v changed files", args)
		}
	}

	// kms3 lost its config too: it is rendered from the built-in template.
	if err := os.Remove(filepath.Join(l.dirs[2], "config.yaml")); err != nil {
		t.Fatal(err)
	}
	before := l.snapshot()
	te, code := l.recoverCluster(t, state, "--check", "--seed", "kms2")
	out := te.out.String()
	if code != 0 || !strings.Contains(out, "plan for cluster kms (kms2, kms1 and kms3; seed kms2)") || !strings.Contains(out, "CLUSTER:ADDNODE "+l.addrs[2]+" through kms2") ||
		!strings.Contains(out, "holds 2 enclave(s), 4 key(s), 1 policies, 1 identities; a canary to decrypt") || !strings.Contains(out, "--check: nothing was changed") ||
		!strings.Contains(out, "config rendered from the built-in templates/minkms.config.j2 (kms3 has none)") {
		t.Fatalf("--check: exit %d\n%s\n%s", code, out, te.errOut)
	}
	if after := l.snapshot(); after != before {
		t.Fatalf("--check changed files:\n%s\n---\n%s", before, after)
	}

	te, code = l.recoverCluster(t, state, "--yes")
	out = te.out.String()
	if code != 0 || !strings.Contains(out, "RECOVERED cluster kms from "+filepath.Base(snap)) {
		t.Fatalf("recover cluster: exit %d\n%s\n%s", code, out, te.errOut)
	}
	t.Logf("recover cluster:\n%s", out)
	for _, phase := range []string{"every node fence", "every node wipe", "kms1 push", "kms1 start", "kms1 restore", "kms1 verify", "kms2 add", "kms2 wait", "kms3 add", "kms3 wait", "every node prove"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(phase) + ` +[0-9.]+s$`).MatchString(out) {
			t.Errorf("recap lacks phase %q:\n%s", phase, out)
		}
	}
	if strings.Contains(out+te.errOut.String()+runLogs(t, te), l.hsmKey.Text()) || strings.Contains(out+runLogs(t, te), l.admin.Secret()) {
		t.Error("a key appears in the output or run log")
	}
	l.checkRestored(t, ct, version)
	if b, err := os.ReadFile(filepath.Join(l.dirs[2], "config.yaml")); err != nil || !strings.Contains(string(b), l.admin.Identity()) {
		t.Errorf("kms3's config, rendered: %q, %v", b, err)
	}
	run := regexp.MustCompile(`run (\S+) \(its journal`).FindStringSubmatch(out)
	if run == nil {
		t.Fatalf("no run ID:\n%s", out)
	}
	shown := testEnv(t)
	shown.env.stateDir = state
	if code := shown.run(t, "runs", "show", run[1]); code != 0 || !strings.Contains(shown.out.String(), "recover cluster --cluster kms --backup "+snap+" --seed kms1") ||
		!strings.Contains(shown.out.String(), "kms_restore") || strings.Count(shown.out.String(), "kms_add_node") != 2 {
		t.Errorf("runs show %s: exit %d\n%s\n%s", run[1], code, shown.out, shown.errOut)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverClusterVerifyAndNoManifest: a manifest that lists a key the
// snapshot lacks makes the restore's verification fail: exit 7, naming the
// key. A snapshot without a manifest is restored with --no-manifest, with
// a warning on stderr and in the recap; every node then holds it.
func TestRecoverClusterVerifyAndNoManifest(t *testing.T) {
	l := newRecoverLab(t)
	ct, version := l.clusterObjects(t)
	dir := t.TempDir()
	bk := testEnv(t)
	if code := bk.run(t, "backup", "-i", l.inventory, "--ssh-config", "none", "--dir", dir); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, bk.out, bk.errOut)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "*_kms.db.gzip"))
	if len(snaps) != 1 {
		t.Fatalf("backups: %v", snaps)
	}
	b, _ := os.ReadFile(snaps[0])
	mb, _ := os.ReadFile(snaps[0] + ".manifest.json")
	var m map[string]any
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range m["objects"].(map[string]any)["enclaves"].([]any) {
		if e := e.(map[string]any); e["name"] == "tenant" {
			e["keys"] = append(e["keys"].([]any), map[string]any{"name": "ghost", "version": 0})
		}
	}
	mb, _ = json.Marshal(m)
	ghost := filepath.Join(t.TempDir(), filepath.Base(snaps[0]))
	writeFile(t, ghost, b)
	writeFile(t, ghost+".manifest.json", mb)
	l.loseEverything(t)
	te, code := l.recoverCluster(t, "", "--backup", ghost, "--yes")
	if code != exit.VerifyFailed || !strings.Contains(te.out.String()+te.errOut.String(), "key tenant/ghost") {
		t.Fatalf("a restore that lacks a listed key: exit %d, want %d naming tenant/ghost\n%s\n%s", code, exit.VerifyFailed, te.out, te.errOut)
	}

	// Every node lost again (the seed now holds the restore), and the
	// snapshot without its manifest.
	l.loseEverything(t)
	vendor := filepath.Join(t.TempDir(), "vendor.db.gzip")
	writeFile(t, vendor, b)
	te, code = l.recoverCluster(t, "", "--backup", vendor, "--no-manifest", "--yes", "--seed", "kms3", "--output", "json")
	out := te.out.String()
	if code != 0 || !strings.Contains(te.errOut.String(), "WARNING: "+vendor+" has no manifest") {
		t.Fatalf("--no-manifest: exit %d\n%s\n%s", code, out, te.errOut)
	}
	// --output json: stdout is events only, the plan and the recap among them.
	var plan, recap struct {
		Plan struct {
			Manifest *string  `json:"manifest"`
			Seed     string   `json:"seed"`
			Warnings []string `json:"warnings"`
			Nodes    []struct {
				Host string `json:"host"`
			} `json:"nodes"`
		} `json:"plan"`
		Phases []struct {
			Phase   string  `json:"phase"`
			Seconds float64 `json:"seconds"`
		} `json:"phases"`
		Nodes   []string `json:"nodes"`
		Warning string   `json:"warning"`
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", line, err)
		}
		seen[ev.Event] = true
		switch ev.Event {
		case "recover_cluster_plan":
			json.Unmarshal([]byte(line), &plan)
		case "recover_cluster":
			json.Unmarshal([]byte(line), &recap)
		}
	}
	if !seen["run_end"] || plan.Plan.Manifest == nil || *plan.Plan.Manifest != "" || plan.Plan.Seed != "kms3" || len(plan.Plan.Warnings) != 1 || len(plan.Plan.Nodes) != 3 ||
		plan.Plan.Nodes[0].Host != "kms3" {
		t.Errorf("plan event %+v\n%s", plan, out)
	}
	var phases []string
	for _, p := range recap.Phases {
		phases = append(phases, p.Phase)
	}
	if strings.Join(recap.Nodes, ",") != "kms3,kms1,kms2" || !slices.Contains(phases, "kms3 restore") || slices.Contains(phases, "kms3 verify") ||
		!strings.Contains(recap.Warning, "it now holds 2 enclave(s), 4 key(s), 1 policies, 1 identities") {
		t.Errorf("recap event: %+v\n%s", recap, out)
	}
	l.checkRestored(t, ct, version)
}

// TestRecoverClusterPlaybookByHand: the built-in recover-cluster playbook
// run by hand on a healthy cluster stops before fencing anything (every
// node still serves: refused, exit 4); run with only its restore phase (the
// preflight, fence and wipe skipped), kms_restore refuses the seed, which
// holds data (exit 4). No file changes, every node keeps running and
// keeps its keys.
func TestRecoverClusterPlaybookByHand(t *testing.T) {
	l := newRecoverLab(t)
	ctx := context.Background()
	if err := l.client(l.addrs[0]).CreateKey(ctx, "", "k1"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bk := testEnv(t)
	if code := bk.run(t, "backup", "-i", l.inventory, "--ssh-config", "none", "--dir", dir); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, bk.out, bk.errOut)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "*_kms.db.gzip"))
	if len(snaps) != 1 {
		t.Fatalf("backups: %v", snaps)
	}
	if err := l.client(l.addrs[0]).CreateKey(ctx, "", "k2"); err != nil {
		t.Fatal(err)
	}
	before := l.snapshot()
	vars := []string{"-e", "recover_hosts=kms1,kms2,kms3", "-e", "recover_seed=kms1", "-e", "recover_host=kms1",
		"-e", "recover_endpoint=" + l.addrs[0], "-e", "recover_backup=" + snaps[0], "-e", "recover_manifest=" + snaps[0] + ".manifest.json", "-e", "recover_discard="}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exit.Refused, "kms1's Key Manager still answers: this is not a total loss, and nothing was fenced or wiped"},
		{[]string{"--tags", "restore"}, exit.Refused, "is not clean: it is node"},
	} {
		te := testEnv(t)
		code := te.run(t, append(append([]string{"play", "builtin:recover-cluster", "-i", l.inventory, "--ssh-config", "none"}, vars...), tc.args...)...)
		if code != tc.code || !strings.Contains(te.out.String()+te.errOut.String(), tc.want) {
			t.Errorf("play %v: exit %d, want %d and %q\n%s\n%s", tc.args, code, tc.code, tc.want, te.out, te.errOut)
		}
		if strings.Contains(te.out.String(), "stop and disable the service") {
			t.Errorf("play %v: the fence ran:\n%s", tc.args, te.out)
		}
	}
	if after := l.snapshot(); after != before {
		t.Errorf("files changed:\nbefore %s\nafter %s", before, after)
	}
	for i, ep := range l.addrs {
		if got := keyList(t, l.client(ep)); !slices.Contains(got, "k2") {
			t.Errorf("node %d lost the key written after the backup: %v", i, got)
		}
	}
}

// TestResumeRecoverCluster: recover cluster killed as kms3's addition
// starts (no end in its journal), then `kmsctl resume RUN-ID --yes`:
// exit 0 under the same run ID, the phases done (fence, wipe, the seed's
// restore, kms2's addition) not run again, the cluster whole with every
// object, checked through the API.
func TestResumeRecoverCluster(t *testing.T) {
	l := newRecoverLab(t)
	ct, version := l.clusterObjects(t)
	state := filepath.Join(t.TempDir(), "state")
	bk := testEnv(t)
	bk.env.stateDir = state
	if code := bk.run(t, "backup", "-i", l.inventory, "--ssh-config", "none"); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, bk.out, bk.errOut)
	}
	l.loseEverything(t)
	te := testEnv(t)
	te.env.stateDir = state
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cutWriter{cut: "CLUSTER:ADDNODE through the seed", cancel: cancel}
	te.env.stdout = w
	code := run(ctx, te.env, []string{"kmsctl", "recover", "cluster", "-i", l.inventory, "--ssh-config", "none", "--yes", "--output", "json"})
	if !w.fired || code != exit.Interrupted {
		t.Fatalf("recover cluster cut at kms3's add: fired %v, exit %d\n%s\n%s", w.fired, code, w, te.errOut)
	}
	m := regexp.MustCompile(`"event":"recover_start","time":"[^"]*","run":"([^"]+)"`).FindStringSubmatch(w.String())
	if m == nil {
		t.Fatalf("no recover_start event in\n%s", w)
	}
	id := m[1]
	stripEnd(t, state, id)
	check := testEnv(t)
	check.env.stateDir = state
	if code := check.run(t, "resume", id, "--check"); code != 0 || !strings.Contains(check.out.String(), "every node wipe") || !strings.Contains(check.out.String(), "kms2 wait") {
		t.Fatalf("resume --check: exit %d\n%s\n%s", code, check.out, check.errOut)
	}
	again := testEnv(t)
	again.env.stateDir = state
	code = again.run(t, "resume", id, "--yes")
	out := again.out.String()
	if code != 0 || !strings.Contains(out, "RECOVERED cluster kms") {
		t.Fatalf("resume %s: exit %d\n%s\n%s", id, code, out, again.errOut)
	}
	recap := out[strings.Index(out, "\nrecap\n"):]
	for _, ph := range []string{"every node fence", "every node wipe", "kms1 push", "kms1 restore", "kms1 verify", "kms2 add", "kms2 wait"} {
		if strings.Contains(recap, "  "+ph+" ") {
			t.Errorf("phase %q, done before the cut, ran again:\n%s", ph, recap)
		}
	}
	for _, ph := range []string{"kms3 add", "kms3 wait", "every node prove"} {
		if !strings.Contains(recap, "  "+ph+" ") {
			t.Errorf("phase %q did not run on resume:\n%s", ph, recap)
		}
	}
	l.checkRestored(t, ct, version)
}
