package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
)

// TestPlanClusterRecovery: the preflight rules of recover cluster, one
// case each: what is refused (and with which exit code) and what the plan
// holds.
func TestPlanClusterRecovery(t *testing.T) {
	fp := "sha256:aaaa"
	good := clusterBackup{Snapshot: "/b/s.db.gzip", Info: kmsmodules.BackupInfo{Manifest: "/b/s.db.gzip.manifest.json", HSMFingerprint: fp}, OperatorFP: fp}
	dead := func(h string) nodeState {
		return nodeState{Host: h, Endpoint: h + ":7373", Service: "minkms.service", SSH: true, ServiceState: "inactive"}
	}
	input := func(edit func(in *clusterInput)) clusterInput {
		in := clusterInput{Group: "kms", Backup: good, Layout: map[string]inventory.KMSNode{}}
		for _, h := range []string{"kms1", "kms2", "kms3"} {
			in.Nodes = append(in.Nodes, dead(h))
			in.Layout[h] = inventory.KMSNode{Host: h, StoragePath: "/mnt/minio-kms"}
		}
		if edit != nil {
			edit(&in)
		}
		return in
	}
	cases := []struct {
		name  string
		in    clusterInput
		code  int    // 0: a plan
		want  string // in the refusal, or the plan's node order
		check func(t *testing.T, p clusterPlan)
	}{
		{"all dead", input(nil), 0, "kms1 kms2 kms3", nil},
		{"seed kms3 first, the others in order", input(func(in *clusterInput) { in.Seed = "kms3" }), 0, "kms3 kms1 kms2", nil},
		{"a node serves", input(func(in *clusterInput) {
			in.Nodes[1].View = &nodeView{ID: 1, Members: []member{{0, "kms1:7373"}, {1, "kms2:7373"}}, Commit: 12}
		}), 4, "kms2 still serves: its Key Manager answers as node 1 of a cluster of 2 node(s), commit 12", nil},
		{"a node serves, discarded", input(func(in *clusterInput) {
			in.Nodes[1].View = &nodeView{ID: 1, Members: []member{{1, "kms2:7373"}}}
			in.Discard = []string{"kms2"}
		}), 0, "kms1 kms2 kms3", func(t *testing.T, p clusterPlan) {
			if !strings.Contains(p.Nodes[1].Discard, "answers as node 1") || p.Nodes[0].Discard != "" {
				t.Errorf("discard: %+v", p.Nodes)
			}
		}},
		{"API key refused: it answers", input(func(in *clusterInput) { in.Nodes[0].APIKeyRefused = true }), 4, "kms1 still serves: its Key Manager answers", nil},
		{"service active, API silent", input(func(in *clusterInput) { in.Nodes[2].ServiceState = "active" }), 4, "minkms.service is active on it although its API does not answer", nil},
		{"service state unknown", input(func(in *clusterInput) {
			in.Nodes[2].ServiceState, in.Nodes[2].ServiceError = "", "sudo: a password is required"
		}), 4,
			"the state of minkms.service on it is unknown (sudo: a password is required)", nil},
		{"no SSH", input(func(in *clusterInput) { in.Nodes[1].SSH, in.Nodes[1].SSHError = false, "connection refused" }), 3, "kms2 does not answer SSH (connection refused)", nil},
		{"no storage path", input(func(in *clusterInput) { in.Layout["kms3"] = inventory.KMSNode{Host: "kms3"} }), 4, "kms_storage_path is not set for kms3", nil},
		{"a file missing with no source", input(func(in *clusterInput) {
			in.Files = map[string][]recoverFile{"kms2": {{What: "config", Path: "/etc/minkms/config.yaml"}}}
		}), 4, "the config /etc/minkms/config.yaml is missing on kms2", nil},
		{"the config missing, rendered", input(func(in *clusterInput) {
			in.Files = map[string][]recoverFile{"kms2": {{What: "config", Path: "/etc/minkms/config.yaml", Template: configTemplate}}}
		}), 0, "kms1 kms2 kms3", func(t *testing.T, p clusterPlan) {
			if txt := clusterPlanText(p); !strings.Contains(txt, "config rendered from the built-in templates/minkms.config.j2 (kms2 has none)") {
				t.Errorf("plan text:\n%s", txt)
			}
		}},
		{"a file missing, from a peer", input(func(in *clusterInput) {
			in.Files = map[string][]recoverFile{"kms2": {{What: "binary", Path: "/usr/local/bin/minkms", From: inventory.FromPeer}}}
		}), 4, "the binary /usr/local/bin/minkms is missing on kms2, and the inventory copies it from a peer (kms_binary_from: peer)", nil},
		{"a file missing with a source", input(func(in *clusterInput) {
			in.Files = map[string][]recoverFile{"kms2": {{What: "config", Path: "/etc/minkms/config.yaml", Source: "./config.yaml"}}}
		}), 0, "kms1 kms2 kms3", nil},
		{"checksum mismatch", input(func(in *clusterInput) {
			in.Backup.Err = fmt.Errorf("check: %w", kmsmodules.ErrSnapshotMismatch)
		}), 4, "the backup does not check out", nil},
		{"HSM key not the backup's", input(func(in *clusterInput) { in.Backup.OperatorFP = "sha256:bbbb" }), 4,
			"the HSM key kmsctl would install (sha256:bbbb) is not the one the backup was taken under (sha256:aaaa", nil},
		{"HSM key unreadable", input(func(in *clusterInput) { in.Backup.OperatorFP, in.Backup.OperatorErr = "", "no HSM key" }), 4, "the HSM key to install could not be read: no HSM key", nil},
		{"no manifest", input(func(in *clusterInput) {
			in.Backup.Info, in.Backup.Err = kmsmodules.BackupInfo{}, fmt.Errorf("x: %w", kmsmodules.ErrNoManifest)
		}), 4, "has no manifest of kmsctl's", nil},
		{"no manifest, --no-manifest", input(func(in *clusterInput) {
			in.Backup.Info, in.Backup.Err, in.Backup.NoManifest = kmsmodules.BackupInfo{}, fmt.Errorf("x: %w", kmsmodules.ErrNoManifest), true
		}), 0, "kms1 kms2 kms3", func(t *testing.T, p clusterPlan) {
			if p.Manifest != "" || p.Info != nil || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "nothing could be checked before the restore") {
				t.Errorf("plan without a manifest: %+v", p)
			}
			if txt := clusterPlanText(p); strings.Contains(txt, "verify") || !strings.Contains(txt, "WITHOUT a manifest") {
				t.Errorf("plan text without a manifest:\n%s", txt)
			}
		}},
		{"a manifest that does not read", input(func(in *clusterInput) { in.Backup.Err = errors.New("read the backup manifest: bad") }), 4,
			"the backup cannot be checked: read the backup manifest: bad", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planClusterRecovery(tc.in)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				var order []string
				for _, n := range p.Nodes {
					order = append(order, n.Host)
				}
				if strings.Join(order, " ") != tc.want || p.Seed != order[0] {
					t.Errorf("order %v, seed %s; want %s", order, p.Seed, tc.want)
				}
				if tc.check != nil {
					tc.check(t, p)
				}
				return
			}
			var ref refusal
			var er exitRefusal
			code := 4
			switch {
			case errors.As(err, &er):
				ref, code = er.refusal, er.code
			case !errors.As(err, &ref):
				t.Fatalf("not a refusal: %v", err)
			}
			if code != tc.code || !strings.Contains(ref.why, tc.want) || ref.todo == "" {
				t.Errorf("refusal %q (todo %q), exit %d; want %q, exit %d", ref.why, ref.todo, code, tc.want, tc.code)
			}
		})
	}
}

// TestPlanClusterResume: the rules of a resumed recover cluster. Before
// the wipe is done they are recover cluster's; after it, a node whose
// start is done serves by design, one whose start is to come must not
// serve, and a missing file counts only where the push is to come.
func TestPlanClusterResume(t *testing.T) {
	fp := "sha256:aaaa"
	in := clusterInput{Group: "kms", Layout: map[string]inventory.KMSNode{},
		Backup: clusterBackup{Snapshot: "/b/s", Info: kmsmodules.BackupInfo{Manifest: "/b/s.manifest.json", HSMFingerprint: fp}, OperatorFP: fp}}
	for _, h := range []string{"kms1", "kms2", "kms3"} {
		in.Nodes = append(in.Nodes, nodeState{Host: h, Endpoint: h + ":7373", Service: "minkms.service", SSH: true, ServiceState: "inactive"})
		in.Layout[h] = inventory.KMSNode{Host: h, StoragePath: "/mnt/minio-kms"}
	}
	in.Nodes[0].View, in.Nodes[0].ServiceState = &nodeView{ID: 0, Members: []member{{0, "kms1:7373"}}, Commit: 40}, "active"
	in.Files = map[string][]recoverFile{"kms1": {{What: "config", Path: "/etc/minkms/config.yaml"}}}
	doneSet := func(phases ...string) func(string) bool {
		return func(p string) bool { return slices.Contains(phases, p) }
	}
	if _, err := planClusterResume(in, doneSet("every node fence")); err == nil || !strings.Contains(err.Error(), "kms1 still serves") {
		t.Errorf("wipe not done, kms1 serves: %v", err)
	}
	after := doneSet("every node fence", "every node wipe", "kms1 push", "kms1 start", "kms1 restore")
	if p, err := planClusterResume(in, after); err != nil || p.Seed != "kms1" {
		t.Errorf("kms1 restored, the others to come: %+v, %v", p, err)
	}
	in.Nodes[1].Live = true
	if _, err := planClusterResume(in, after); err == nil || !strings.Contains(err.Error(), "kms2 still serves") {
		t.Errorf("kms2 serves before its start: %v", err)
	}
	in.Nodes[1].Live = false
	if _, err := planClusterResume(in, doneSet("every node fence", "every node wipe")); err == nil || !strings.Contains(err.Error(), "kms1 still serves") {
		t.Errorf("kms1 serves before its start: %v", err)
	}
	in.Nodes[0].View, in.Nodes[0].ServiceState = nil, "inactive"
	if _, err := planClusterResume(in, doneSet("every node fence", "every node wipe")); err == nil || !strings.Contains(err.Error(), "the config /etc/minkms/config.yaml is missing on kms1") {
		t.Errorf("kms1's config missing before its push: %v", err)
	}
}
