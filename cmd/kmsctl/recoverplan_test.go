package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/remote"
)

// TestPlanRecovery: the preflight rules on gathered states, every refusal
// included.
func TestPlanRecovery(t *testing.T) {
	members := []member{{0, "a:7373"}, {1, "b:7373"}, {2, "c:7373"}}
	up := func(host, ep string, id int, down ...int) nodeState {
		if down == nil {
			down = []int{}
		}
		return nodeState{Host: host, Endpoint: ep, Service: "minkms.service", SSH: true, ServiceState: "active", ReadyWrite: len(down) == 0,
			View: &nodeView{ID: id, Members: members, Down: down}, HSMFingerprint: "fp"}
	}
	dead := nodeState{Host: "kms3", Endpoint: "c:7373", Service: "minkms.service", SSH: true, ServiceState: "inactive", APIError: "refused"}
	files := []recoverFile{{What: "binary", Path: "/usr/local/bin/minkms", Exists: true}, {What: "config", Path: "/etc/minkms/config.yaml", Source: "./config.yaml"}}
	input := func(mod func(*recoverInput)) recoverInput {
		in := recoverInput{
			Nodes:   []nodeState{up("kms1", "a:7373", 0, 2), up("kms2", "b:7373", 1, 2), dead},
			Targets: []string{"kms3"},
			Layout:  map[string]inventory.KMSNode{"kms3": {StoragePath: "/mnt/minio-kms"}},
			Files:   map[string][]recoverFile{"kms3": files}, OperatorFP: "fp",
		}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	p, err := planRecovery(input(nil))
	if err != nil || p.Via != "kms1" || len(p.Targets) != 1 || p.Targets[0].ID != 2 || !p.Targets[0].Reachable || p.HSM != "fp" {
		t.Fatalf("plan = %+v, %v", p, err)
	}
	text := planText(p)
	for _, want := range []string{"CLUSTER:EDIT on kms1: remove node 2", "delete everything in /mnt/minio-kms", "config from ./config.yaml", "keeps what kms3 already has (no kms_*_src or kms_*_from names a replacement): binary /usr/local/bin/minkms", "blocked while it joins"} {
		if !strings.Contains(text, want) {
			t.Errorf("plan text lacks %q:\n%s", want, text)
		}
	}
	// A config the host has and the inventory names no source for is
	// kept; the plan does not say it has no source (a missing one would be
	// rendered from the built-in template).
	p, err = planRecovery(input(func(in *recoverInput) {
		in.Files = map[string][]recoverFile{"kms3": {{What: "config", Path: "/etc/minkms/config.yaml", Exists: true, Template: "templates/minkms.config.j2"}}}
	}))
	if err != nil {
		t.Fatalf("kept config: %v", err)
	}
	if text := planText(p); !strings.Contains(text, "keeps what kms3 already has (no kms_*_src or kms_*_from names a replacement): config /etc/minkms/config.yaml") ||
		strings.Contains(text, "no source in the inventory") {
		t.Errorf("kept config, plan text:\n%s", text)
	}
	// Unreachable: only the ID is removed.
	p, err = planRecovery(input(func(in *recoverInput) {
		in.Nodes[2] = nodeState{Host: "kms3", Endpoint: "c:7373", SSHError: "no route"}
	}))
	if err != nil || p.Targets[0].Reachable || !strings.Contains(planText(p), "only its ID is removed") {
		t.Fatalf("unreachable kms3: %+v, %v", p, err)
	}
	// Already removed: no remove step.
	p, err = planRecovery(input(func(in *recoverInput) {
		for _, i := range []int{0, 1} {
			in.Nodes[i].View.Members = members[:2]
			in.Nodes[i].View.Down = []int{}
		}
	}))
	if err != nil || p.Targets[0].ID != -1 || !strings.Contains(planText(p), "nothing: no survivor lists c:7373") {
		t.Fatalf("already removed: %+v, %v", p, err)
	}

	// A former member back with its old state, its ID already removed
	// (no survivor lists it, it lists them): rebuilt, said in the plan.
	stale := func(in *recoverInput) {
		for _, i := range []int{0, 1} {
			in.Nodes[i].View.Members = members[:2]
			in.Nodes[i].View.Down = []int{}
		}
		in.Nodes[2].ServiceState = "active"
		in.Nodes[2].View = &nodeView{ID: 2, Members: members, Down: []int{0, 1}}
	}
	p, err = planRecovery(input(stale))
	if err != nil || p.Targets[0].ID != -1 || !strings.Contains(planText(p), "kms3 answers as node 2 of this cluster's old definition, but no survivor lists it any more") {
		t.Fatalf("stale former member: %+v, %v", p, err)
	}
	_, err = planRecovery(input(func(in *recoverInput) {
		stale(in)
		in.Nodes[2].View.Members = []member{{0, "x:7373"}, {2, "c:7373"}}
	}))
	if !errors.As(err, new(refusal)) || !strings.Contains(err.Error(), "answers as node 2 of another cluster") {
		t.Fatalf("a node of another cluster: %v", err)
	}
	// --force lifts the service check only, loudly in the plan.
	p, err = planRecovery(input(func(in *recoverInput) { in.Nodes[2].ServiceState, in.Force = "active", true }))
	if err != nil || !strings.Contains(p.Targets[0].Forced, "minkms.service is active on kms3 although its API does not answer and kms1 and kms2 see it down") ||
		!strings.Contains(planText(p), "--force: minkms.service is active") {
		t.Fatalf("--force on a wedged service: %+v, %v", p, err)
	}
	// Files copied from a peer: the survivor the run goes through holds
	// them at the same path (and the config's certificates directory is
	// the same); the plan says so; a missing file on the target is fine.
	peer := func(in *recoverInput) {
		in.Files["kms3"] = []recoverFile{{What: "binary", Path: "/usr/local/bin/minkms", From: "peer"}, {What: "config", Path: "/etc/minkms/config.yaml", From: "peer"}}
		in.Files["kms1"] = []recoverFile{{What: "binary", Path: "/usr/local/bin/minkms", Exists: true}, {What: "config", Path: "/etc/minkms/config.yaml", Exists: true}}
		in.Layout["kms1"] = inventory.KMSNode{StoragePath: "/mnt/minio-kms", CertsDir: "/etc/minkms/certs"}
		in.Layout["kms3"] = inventory.KMSNode{StoragePath: "/mnt/minio-kms", CertsDir: "/etc/minkms/certs"}
	}
	p, err = planRecovery(input(peer))
	if err != nil || !strings.Contains(planText(p), "binary copied from kms1 (/usr/local/bin/minkms, sha256-verified); config copied from kms1") {
		t.Fatalf("files from a peer: %v\n%s", err, planText(p))
	}
	for want, mod := range map[string]func(*recoverInput){
		"the peer kms1 has no /etc/minkms/config.yaml":        func(in *recoverInput) { in.Files["kms1"][1].Exists = false },
		"the peer kms1 keeps it at /opt/minkms, not":          func(in *recoverInput) { in.Files["kms1"][0].Path = "/opt/minkms" },
		"could not be checked (denied)":                       func(in *recoverInput) { in.Files["kms1"][1].Err = "denied" },
		"names the peer's certificates under /opt/certs":      func(in *recoverInput) { in.Layout["kms1"] = inventory.KMSNode{CertsDir: "/opt/certs"} },
		"whether kms1 holds it was not checked":               func(in *recoverInput) { in.Files["kms1"] = nil },
		"comes from a peer (kms_binary_from), but the peer k": func(in *recoverInput) { in.Files["kms1"][0].Exists = false },
	} {
		_, err := planRecovery(input(func(in *recoverInput) { peer(in); mod(in) }))
		if !errors.As(err, new(refusal)) || !strings.Contains(err.Error(), want) {
			t.Errorf("peer files: %v, want a refusal with %q", err, want)
		}
	}
	// Versions: the binary's against the survivors' (their API's); a
	// binary copied from the peer runs the peer's.
	version := func(bv binaryVersion) func(*recoverInput) {
		return func(in *recoverInput) {
			in.Nodes[0].Version, in.Nodes[1].Version = "2026-01-01T00-00-00Z", "2026-01-01T00-00-00Z"
			in.Binaries = map[string]binaryVersion{"kms3": bv}
		}
	}
	for want, mod := range map[string]func(*recoverInput){
		"binary version 2026-01-01T00-00-00Z, the survivors'":                                                                                  version(binaryVersion{Version: "2026-01-01T00-00-00Z", Where: "/b on kms3"}),
		"VERSION CHANGE: the binary to install (/b on kms3) is version 2026-06-01T00-00-00Z; the survivors run 2026-01-01T00-00-00Z":           version(binaryVersion{Version: "2026-06-01T00-00-00Z", Where: "/b on kms3"}),
		"VERSION CHANGE: the version of the binary to install (/b here) is unknown: exec format error; the survivors run 2026-01-01T00-00-00Z": version(binaryVersion{Where: "/b here", Err: "exec format error"}),
		"VERSION CHANGE: the version of the binary to install was not checked":                                                                 func(in *recoverInput) { in.Binaries = nil },
		"binary version 2026-02-02T00-00-00Z, the survivors'": func(in *recoverInput) {
			peer(in)
			version(binaryVersion{Version: "2020-01-01T00-00-00Z"})(in)
			in.Nodes[0].Version = "2026-02-02T00-00-00Z"
		},
	} {
		p, err := planRecovery(input(mod))
		if err != nil || !strings.Contains(planText(p), want) {
			t.Errorf("want %q: %v\n%s", want, err, planText(p))
		}
	}
	for name, mod := range map[string]func(*recoverInput){
		"seen up":        func(in *recoverInput) { in.Nodes[1].View = &nodeView{ID: 1, Members: members, Down: []int{}} },
		"answers":        func(in *recoverInput) { in.Nodes[2].View = &nodeView{ID: 2, Members: members, Down: []int{}} },
		"HSM keys":       func(in *recoverInput) { in.Nodes[1].HSMFingerprint = "other" },
		"operator key":   func(in *recoverInput) { in.OperatorFP = "other" },
		"no survivor":    func(in *recoverInput) { in.Nodes[0].View, in.Nodes[1].View = nil, nil },
		"a missing file": func(in *recoverInput) { in.Files["kms3"] = []recoverFile{{What: "binary", Path: "/x"}} },
	} {
		if _, err := planRecovery(input(func(in *recoverInput) { in.Nodes[2].ServiceState, in.Force = "active", true; mod(in) })); !errors.As(err, new(refusal)) {
			t.Errorf("--force lifted %q: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		mod  func(*recoverInput)
		want string
	}{
		"no survivor": {func(in *recoverInput) { in.Nodes[0].View, in.Nodes[1].View = nil, nil }, "no survivor answers"},
		"seen up":     {func(in *recoverInput) { in.Nodes[1].View = &nodeView{ID: 1, Members: members, Down: []int{}} }, "up as seen by kms2"},
		"answers": {func(in *recoverInput) { in.Nodes[2].View = &nodeView{ID: 2, Members: members, Down: []int{}} },
			"its Key Manager answers as node 2"},
		"service active":   {func(in *recoverInput) { in.Nodes[2].ServiceState = "active" }, "minkms.service is active on it"},
		"service unknown":  {func(in *recoverInput) { in.Nodes[2].ServiceState, in.Nodes[2].ServiceError = "", "denied" }, "unknown (denied)"},
		"no storage path":  {func(in *recoverInput) { in.Layout["kms3"] = inventory.KMSNode{} }, "kms_storage_path is not set"},
		"survivors differ": {func(in *recoverInput) { in.Nodes[1].HSMFingerprint = "other" }, "the survivors' HSM keys differ"},
		"survivor key unreadable": {func(in *recoverInput) { in.Nodes[1].HSMFingerprint, in.Nodes[1].HSMError = "", "permission denied" },
			"HSM key of survivor kms2 could not be read"},
		"operator key other":      {func(in *recoverInput) { in.OperatorFP = "other" }, "is not the survivors'"},
		"operator key unreadable": {func(in *recoverInput) { in.OperatorFP, in.OperatorErr = "", "no key" }, "could not be read: no key"},
		"missing file":            {func(in *recoverInput) { in.Files["kms3"] = []recoverFile{{What: "binary", Path: "/x"}} }, "kms_binary_src"},
		"file not checked": {func(in *recoverInput) {
			in.Files["kms3"] = []recoverFile{{What: "config", Path: "/x", Err: "sudo: a password is required"}}
		},
			"whether the config /x is on kms3 could not be checked (sudo: a password is required)"},
		"not in the group": {func(in *recoverInput) { in.Targets = []string{"kms9"} }, "kms9 is not a node"},
		"target's host key changed": {func(in *recoverInput) {
			in.Nodes[2] = nodeState{Host: "kms3", Endpoint: "c:7373", SSHError: "host key changed"}
			in.HostKeys = map[string]*remote.HostKeyError{"kms3": {Kind: remote.Changed, Host: "[127.0.0.1]:2222", Fingerprint: "SHA256:new"}}
		}, "the SSH host key of kms3 is refused: it offers SHA256:new (changed). If kms3 was replaced (a new machine, same name), verify its new key out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and run again with --expect-host-key kms3=SHA256:new"},
		"survivor's host key unexpected": {func(in *recoverInput) {
			in.HostKeys = map[string]*remote.HostKeyError{"kms1": {Kind: remote.Unexpected, Host: "kms1", Fingerprint: "SHA256:other", Expected: []string{"SHA256:named"}}}
		}, "the SSH host key of kms1 is not the one --expect-host-key names: it offers SHA256:other, not SHA256:named"},
	} {
		_, err := planRecovery(input(tc.mod))
		var r refusal
		if !errors.As(err, &r) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal with %q", name, err, tc.want)
		}
	}
}
