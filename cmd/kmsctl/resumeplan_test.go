package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
)

// TestPlanResume: resume checks only what the phases left need. kms3
// re-added (it answers as a member, seen up) is no reason to refuse once
// add is done, but is refused while its fence is still to come; its ID
// seen up while its removal is left is refused; a file missing with no
// source matters only while the push is left, the HSM keys only then too;
// a host with steps left that does not answer SSH stops the resume with
// exit 3.
func TestPlanResume(t *testing.T) {
	members := []member{{0, "a:7373"}, {1, "b:7373"}, {2, "c:7373"}}
	view := func(id int, down ...int) *nodeView {
		if down == nil {
			down = []int{}
		}
		return &nodeView{ID: id, Members: members, Down: down}
	}
	node := func(host, ep string, v *nodeView) nodeState {
		return nodeState{Host: host, Endpoint: ep, Service: "minkms.service", SSH: true, ServiceState: "active", ReadyWrite: true, View: v, HSMFingerprint: "fp"}
	}
	rec := recoverRecord{Plan: recoverPlan{Survivors: []string{"kms1", "kms2"}, Via: "kms1", HSM: "fp",
		Targets: []recoverTarget{{Host: "kms3", Endpoint: "c:7373", ID: 2, Reachable: true, StoragePath: "/mnt/minio-kms"}}}}
	readded := recoverInput{
		Nodes:   []nodeState{node("kms1", "a:7373", view(0)), node("kms2", "b:7373", view(1)), node("kms3", "c:7373", view(2))},
		Targets: []string{"kms3"}, Layout: map[string]inventory.KMSNode{"kms3": {StoragePath: "/mnt/minio-kms"}},
		Files:      map[string][]recoverFile{"kms3": {{What: "config", Path: "/etc/minkms/config.yaml", Exists: false}}},
		OperatorFP: "fp",
	}
	upTo := func(last string) func(string, string) bool {
		i := slices.Index(recoverPhases, last)
		return func(host, phase string) bool { return host == "kms3" && slices.Index(recoverPhases, phase) <= i }
	}
	// Added: up, a member, its config gone and the operator's HSM key
	// another: none of it matters for wait and prove.
	other := readded
	other.OperatorFP = "other"
	p, err := planResume(other, rec, upTo("add"))
	if err != nil || p.Via != "kms1" || len(p.Targets) != 1 || p.Targets[0].ID != 2 {
		t.Fatalf("kms3 re-added, wait and prove left: %+v, %v", p, err)
	}
	text := planTextDone(p, upTo("add"))
	if strings.Count(text, "DONE (the journal records it; skipped)") != 6 || !strings.Contains(text, "wait    kms3 listed by every member") {
		t.Errorf("plan text:\n%s", text)
	}
	var ref refusal
	for name, tc := range map[string]struct {
		done func(string, string) bool
		want string
	}{
		"fence left":  {func(string, string) bool { return false }, "kms3 is not dead: node 2 is up as seen by kms1 and kms2"},
		"remove left": {upTo("wipe"), "node 2 (kms3) is up as seen by kms1 and kms2, and the run has still to remove its ID"},
	} {
		if _, err := planResume(readded, rec, tc.done); !errors.As(err, &ref) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal %q", name, err, tc.want)
		}
	}
	if _, err := planResume(other, rec, upTo("remove")); !errors.As(err, &ref) || !strings.Contains(err.Error(), "the HSM key kmsctl would install (other) is not the survivors' (fp)") {
		t.Errorf("push left, another HSM key to install: %v", err)
	}
	// The push left: the missing config is refused.
	withKey := readded
	withKey.Nodes = []nodeState{node("kms1", "a:7373", view(0, 2)), node("kms2", "b:7373", view(1, 2)), {Host: "kms3", Endpoint: "c:7373", SSH: true, ServiceState: "inactive"}}
	if _, err := planResume(withKey, rec, upTo("remove")); !errors.As(err, &ref) || !strings.Contains(err.Error(), "the config /etc/minkms/config.yaml is missing on kms3") {
		t.Errorf("push left, config missing: %v", err)
	}
	// The push left with the config from a peer: the survivor the resume
	// goes through must hold it at the same path.
	fromPeer := withKey
	fromPeer.Files = map[string][]recoverFile{"kms3": {{What: "config", Path: "/etc/minkms/config.yaml", From: "peer"}},
		"kms1": {{What: "config", Path: "/etc/minkms/config.yaml"}}}
	if _, err := planResume(fromPeer, rec, upTo("remove")); !errors.As(err, &ref) || !strings.Contains(err.Error(), "the peer kms1 has no /etc/minkms/config.yaml") {
		t.Errorf("push left, config from a peer that lacks it: %v", err)
	}
	fromPeer.Files["kms1"][0].Exists = true
	if _, err := planResume(fromPeer, rec, upTo("remove")); err != nil {
		t.Errorf("push left, config from a peer that holds it: %v", err)
	}
	// The survivors' key is not the one the run began with.
	changed := withKey
	changed.Nodes = slices.Clone(withKey.Nodes)
	changed.OperatorFP = "fp2"
	for i := range 2 {
		changed.Nodes[i].HSMFingerprint = "fp2"
	}
	if _, err := planResume(changed, rec, upTo("remove")); !errors.As(err, &ref) || !strings.Contains(err.Error(), "is not the one the run began with (fp)") {
		t.Errorf("survivors' key changed: %v", err)
	}
	// kms3 without SSH while steps on it are left: exit 3.
	cut := withKey
	cut.Nodes = slices.Clone(withKey.Nodes)
	cut.Nodes[2] = nodeState{Host: "kms3", Endpoint: "c:7373", SSHError: "no route"}
	cut.Files = map[string][]recoverFile{}
	if _, err := planResume(cut, rec, upTo("remove")); exit.Code(err) != exit.Unreachable || !strings.Contains(err.Error(), "kms3 does not answer SSH") {
		t.Errorf("kms3 cut off with push left: %v (exit %d)", err, exit.Code(err))
	}
	// Only prove left needs kms3's SSH too; nothing left on it does not.
	if _, err := planResume(cut, rec, upTo("wait")); exit.Code(err) != exit.Unreachable {
		t.Errorf("kms3 cut off with prove left: %v", err)
	}
	// No survivor answers.
	none := withKey
	none.Nodes = []nodeState{{Host: "kms1"}, {Host: "kms2"}, withKey.Nodes[2]}
	if _, err := planResume(none, rec, upTo("add")); !errors.As(err, &ref) || !strings.Contains(err.Error(), "no survivor answers") {
		t.Errorf("no survivor: %v", err)
	}
}
