package kmsmodules_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/tasks"
)

// definition is node n's cluster definition as it reports it.
func (l *lab) definition(n *kmsim.Node) map[uint32]string {
	l.t.Helper()
	v := kms.View(context.Background(), l.client(n), n.Host())
	if v.Err != nil {
		l.t.Fatal(v.Err)
	}
	return v.Members
}

// TestRemoveNode: a dead node's ID is removed by one edit on the named
// survivor, the edit propagates, and a second run (on any survivor, by ID
// or endpoint) is ok; check mode changes nothing.
func TestRemoveNode(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	dead := nodes[2]
	deadID, deadEP := dead.NodeID(), dead.Host()
	dead.Close()
	kms1, kms2 := l.sshHost("kms1", nodes[0]), l.sshHost("kms2", nodes[1])
	kmsimtest.Eventually(t, "kms1 and kms2 see the node down", func() error {
		for _, n := range nodes[:2] {
			if v := kms.View(context.Background(), l.client(n), n.Host()); v.Err != nil || !slices.Contains(v.DownIDs, deadID) {
				return fmt.Errorf("%s: %v", n.Host(), v)
			}
		}
		return nil
	})

	r, err := l.run("kms_remove_node", kms1, map[string]any{"id": int(deadID)}, true)
	if err != nil || !r.Changed || !strings.Contains(r.Msg, "would remove node") {
		t.Fatalf("check mode: %+v, %v", r, err)
	}
	if _, ok := l.definition(nodes[0])[deadID]; !ok {
		t.Fatal("check mode removed the node")
	}
	r, err = l.run("kms_remove_node", kms1, map[string]any{"id": int(deadID)}, false)
	if err != nil || !r.Changed || r.Data["id"] != int(deadID) || r.Data["endpoint"] != deadEP {
		t.Fatalf("remove: %+v, %v", r, err)
	}
	if _, ok := l.definition(nodes[0])[deadID]; ok {
		t.Fatal("the survivor still lists the removed node")
	}
	kmsimtest.Eventually(t, "the edit propagates to kms2", func() error {
		if _, ok := l.definition(nodes[1])[deadID]; ok {
			return fmt.Errorf("kms2 lists node %d", deadID)
		}
		return nil
	})
	waitReady(t, l.client(nodes[0]), nodes[0].Host())

	// Again: already done, on either survivor, by ID or by endpoint.
	for _, tc := range []struct {
		h    *host
		args map[string]any
	}{{kms1, map[string]any{"id": int(deadID)}}, {kms2, map[string]any{"id": int(deadID)}}, {kms2, map[string]any{"endpoint": deadEP}}} {
		for _, check := range []bool{true, false} {
			r, err := l.run("kms_remove_node", tc.h, tc.args, check)
			if err != nil || r.Changed || !strings.Contains(r.Msg, "is not in the cluster definition") {
				t.Errorf("second removal %v on %s (check %v): %+v, %v", tc.args, tc.h.name, check, r, err)
			}
		}
	}

	// An edit that finds the ID gone (the first edit propagated between
	// the plan and the edit) is already done, not an error.
	env := kms2.taskEnv(map[string]any{}, nil)
	r, err = kmsmodules.EditWithoutPlan(t.Context(), kmsmodules.Options{Getenv: func(k string) string { return l.env[k] }}, env, deadID)
	if err != nil || r.Changed || !strings.HasPrefix(r.Msg, "already done") {
		t.Errorf("an edit finding the ID gone: %+v, %v", r, err)
	}

	// The removed node restarted with its old data answers, but is not a
	// member: removing it again is ok and changes nothing.
	l.startIn(l.dirs[dead], deadEP)
	r, err = l.run("kms_remove_node", kms1, map[string]any{"endpoint": deadEP}, false)
	if err != nil || r.Changed {
		t.Errorf("removing a removed node that came back: %+v, %v", r, err)
	}
}

// TestRemoveNodeRefusesLiveNode: the ID of a node that is up, or the
// survivor's own ID, is refused (exit 4) and nothing changes, whatever
// playbook asks.
func TestRemoveNodeRefusesLiveNode(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	kms1 := l.sshHost("kms1", nodes[0])
	before := l.definition(nodes[0])
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"id": int(nodes[1].NodeID())}, "is up as seen by"},
		{map[string]any{"endpoint": nodes[2].Host()}, "is up as seen by"},
		{map[string]any{"id": int(nodes[0].NodeID())}, "own ID"},
	} {
		for _, check := range []bool{true, false} {
			_, err := l.run("kms_remove_node", kms1, tc.args, check)
			if err == nil || !isRefusal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("kms_remove_node %v (check %v) = %v; want a refusal saying %q", tc.args, check, err, tc.want)
			}
		}
	}
	if after := l.definition(nodes[0]); !maps.Equal(before, after) {
		t.Errorf("a refused removal changed the definition: %v -> %v", before, after)
	}
	for _, n := range nodes {
		if err := l.client(n).Ready(t.Context(), n.Host(), true); err != nil {
			t.Errorf("%s not ready for writes after refusals: %v", n.Host(), err)
		}
	}
}

// TestRemoveNodeDecommission: mode decommission removes a healthy member by
// CLUSTER:REMOVENODE through another member (check mode changes nothing; a
// second run is ok), and refuses, changing nothing, the task host's own
// node (so never the last), a dead member and any removal while a member
// is down; an unknown mode is an error before any host is touched.
func TestRemoveNodeDecommission(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	kms1 := l.sshHost("kms1", nodes[0])
	gone := nodes[2]
	goneID := gone.NodeID() // it restarts as a new one-node cluster once removed
	args := map[string]any{"endpoint": gone.Host(), "mode": "decommission"}
	r, err := l.run("kms_remove_node", kms1, args, true)
	if err != nil || !r.Changed || !strings.Contains(r.Msg, "would decommission node") {
		t.Fatalf("check mode: %+v, %v", r, err)
	}
	if _, ok := l.definition(nodes[0])[goneID]; !ok {
		t.Fatal("check mode removed the node")
	}
	r, err = l.run("kms_remove_node", kms1, args, false)
	if err != nil || !r.Changed || r.Data["id"] != int(goneID) {
		t.Fatalf("decommission: %+v, %v", r, err)
	}
	if _, ok := l.definition(nodes[0])[goneID]; ok {
		t.Fatal("kms1 still lists the decommissioned node")
	}
	kmsimtest.Eventually(t, "kms2 stops listing it and the two write", func() error {
		d := l.definition(nodes[1])
		if _, ok := d[goneID]; ok || len(d) != 2 {
			return fmt.Errorf("kms2 lists %v", d)
		}
		return l.client(nodes[1]).Ready(context.Background(), nodes[1].Host(), true)
	})
	if r, err := l.run("kms_remove_node", kms1, args, false); err != nil || r.Changed {
		t.Fatalf("second decommission: %+v, %v; want ok", r, err)
	}

	refused := func(h *host, args map[string]any, want string) {
		t.Helper()
		before := l.definition(nodes[0])
		for _, check := range []bool{true, false} {
			if r, err := l.run("kms_remove_node", h, args, check); !isRefusal(err) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v check=%v: %+v, %v; want a refusal saying %q", args, check, r, err, want)
			}
		}
		if after := l.definition(nodes[0]); !maps.Equal(before, after) {
			t.Fatalf("a refused decommission changed the definition: %v, was %v", after, before)
		}
	}
	refused(kms1, map[string]any{"endpoint": nodes[0].Host(), "mode": "decommission"}, "is kms1's own node")

	l2 := newLab(t)
	three := l2.cluster(3)
	dead := three[2]
	dead.Close()
	via := l2.sshHost("kms1", three[0])
	kmsimtest.Eventually(t, "kms1 sees the node down", func() error {
		if v := kms.View(context.Background(), l2.client(three[0]), three[0].Host()); v.Err != nil || !slices.Contains(v.DownIDs, dead.NodeID()) {
			return fmt.Errorf("%v", v)
		}
		return nil
	})
	nodes = three
	l = l2
	refused(via, map[string]any{"endpoint": dead.Host(), "mode": "decommission"}, "is down as seen by kms1")
	refused(via, map[string]any{"id": int(three[1].NodeID()), "mode": "decommission"}, "sees "+fmt.Sprint(dead.NodeID())+" ("+dead.Host()+") down")

	if err := l.reg.Validate(tasks.Task{Module: "kms_remove_node", Args: map[string]any{"id": 1, "mode": "healthy"}}); err == nil || !strings.Contains(err.Error(), "want dead (the default) or decommission") {
		t.Errorf("unknown mode: %v", err)
	}
}
