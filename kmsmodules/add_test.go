package kmsmodules_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
)

// TestAddNodeAndWait: a fresh node is added through a member (check mode
// changes nothing, a second run is ok), and kms_wait returns once every
// member lists it and the cluster is whole.
func TestAddNodeAndWait(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(2)
	fresh := l.start()
	kms1 := l.sshHost("kms1", nodes[0])
	args := map[string]any{"endpoint": fresh.Host()}

	r, err := l.run("kms_add_node", kms1, args, true)
	if err != nil || !r.Changed || !strings.Contains(r.Msg, "would add") {
		t.Fatalf("check mode: %+v, %v", r, err)
	}
	if _, ok := kms.View(t.Context(), l.client(nodes[0]), nodes[0].Host()).Lists(fresh.Host()); ok {
		t.Fatal("check mode added the node")
	}
	r, err = l.run("kms_add_node", kms1, args, false)
	if err != nil || !r.Changed || r.Data["id"] == nil {
		t.Fatalf("add: %+v, %v", r, err)
	}
	w, err := l.run("kms_wait", kms1, map[string]any{"endpoint": fresh.Host(), "timeout": "20s", "interval": "50ms"}, false)
	if err != nil || w.Changed {
		t.Fatalf("kms_wait: %+v, %v", w, err)
	}
	views, err := kms.WaitConverged(t.Context(), l.client(nodes[0]), []string{nodes[0].Host(), nodes[1].Host(), fresh.Host()})
	if err != nil {
		t.Fatalf("after kms_wait the cluster is not converged: %v", err)
	}
	for _, v := range views {
		if id, ok := v.Lists(fresh.Host()); !ok || int(id) != r.Data["id"] {
			t.Errorf("%s lists %s as %d, %v; want %v", v.Endpoint, fresh.Host(), id, ok, r.Data["id"])
		}
	}
	for _, check := range []bool{true, false} {
		r, err := l.run("kms_add_node", l.sshHost("kms2", nodes[1]), args, check)
		if err != nil || r.Changed || !strings.Contains(r.Msg, "already node") {
			t.Errorf("second add (check %v): %+v, %v", check, r, err)
		}
	}
}

// TestAddNodeRefusesNodeWithState: a node that is not clean (a member of
// another cluster, or one holding state) is refused (exit 4) and nothing
// changes; an unreachable node and a member not ready for writes fail.
func TestAddNodeRefusesNodeWithState(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(2)
	other := l.cluster(2) // another cluster of two
	used := l.start()
	c := l.client(used)
	waitReady(t, c, used.Host())
	if err := c.CreateEnclave(t.Context(), "tenant"); err != nil {
		t.Fatal(err)
	}
	kms1 := l.sshHost("kms1", nodes[0])
	for _, ep := range []string{other[1].Host(), used.Host()} {
		for _, check := range []bool{true, false} {
			_, err := l.run("kms_add_node", kms1, map[string]any{"endpoint": ep}, check)
			if err == nil || !isRefusal(err) || !strings.Contains(err.Error(), "is not clean") || !strings.Contains(err.Error(), "wipe its data directory") {
				t.Errorf("adding %s (check %v): %v; want a refusal", ep, check, err)
			}
		}
	}
	if v := kms.View(t.Context(), l.client(nodes[0]), nodes[0].Host()); len(v.Members) != 2 {
		t.Errorf("a refused add changed the cluster: %v", v.Members)
	}
	if _, err := l.run("kms_add_node", kms1, map[string]any{"endpoint": "127.0.0.1:1"}, false); err == nil || isRefusal(err) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("adding a node that does not run: %v", err)
	}
	nodes[1].Close()
	fresh := l.start()
	kmsimtest.Eventually(t, "kms1 not ready for writes", func() error {
		if l.client(nodes[0]).Ready(context.Background(), nodes[0].Host(), true) == nil {
			return errors.New("still ready")
		}
		return nil
	})
	if _, err := l.run("kms_add_node", kms1, map[string]any{"endpoint": fresh.Host()}, false); err == nil || !strings.Contains(err.Error(), "not ready for writes") {
		t.Errorf("adding through a member that cannot write: %v", err)
	}
}

// TestWaitTimesOut: with a member down, kms_wait runs out of time (exit 6)
// naming what is missing; check mode looks once and does not wait.
func TestWaitTimesOut(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	nodes[2].Close()
	kms1 := l.sshHost("kms1", nodes[0])
	start := time.Now()
	_, err := l.run("kms_wait", kms1, map[string]any{"timeout": "1s", "interval": "100ms"}, false)
	if err == nil || !isTimeout(err) || !strings.Contains(err.Error(), nodes[2].Host()) {
		t.Fatalf("kms_wait with a dead member: %v; want a timeout naming %s", err, nodes[2].Host())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("kms_wait took %s with timeout 1s", d)
	}
	r, err := l.run("kms_wait", kms1, map[string]any{"timeout": "1h"}, true)
	if err != nil || r.Changed || !strings.Contains(r.Msg, "not met yet") {
		t.Errorf("kms_wait in check mode: %+v, %v", r, err)
	}
}

// TestWaitNeverListed: kms_wait for an endpoint that no member lists (a
// node never added, a wrong endpoint) fails at once, saying so, rather
// than waiting out its timeout: waiting cannot add a node. Check mode says
// it cannot be met.
func TestWaitNeverListed(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	kms1 := l.sshHost("kms1", nodes[0])
	r, err := l.run("kms_wait", kms1, map[string]any{"endpoint": "127.0.0.1:1", "timeout": "2s", "interval": "50ms"}, false)
	if err == nil || isTimeout(err) || !strings.Contains(err.Error(), "no member lists 127.0.0.1:1") || !strings.Contains(err.Error(), "add it first (kms_add_node)") {
		t.Errorf("kms_wait for a node never added: %+v, %v; want a failure at once (not a timeout) saying no member lists it", r, err)
	}
	for _, n := range nodes {
		if !strings.Contains(fmt.Sprint(err), n.Host()) {
			t.Errorf("the error does not name %s, a member asked: %v", n.Host(), err)
		}
	}
	r, err = l.run("kms_wait", kms1, map[string]any{"endpoint": "127.0.0.1:1", "timeout": "1h"}, true)
	if err != nil || !strings.Contains(r.Msg, "cannot be met: no member lists 127.0.0.1:1") {
		t.Errorf("kms_wait in check mode for a node never added: %+v, %v", r, err)
	}
}

// TestAddNodeStaleEntry: an endpoint the member still lists under a dead
// node's ID (seen down), where a fresh node now answers (the machine wiped
// and restarted, its ID never removed), is not "already a member": the add
// fails, changing nothing and naming the ID to remove first, rather than
// leaving kms_wait to wait for a node that can never rejoin as that ID.
func TestAddNodeStaleEntry(t *testing.T) {
	l := newLab(t)
	nodes := l.cluster(3)
	c := l.client(nodes[0])
	id := kms.View(t.Context(), c, nodes[2].Host()).ID
	addr := nodes[2].Host()
	nodes[2].Close()
	kmsimtest.Eventually(t, "kms1 sees kms3 down", func() error {
		v := kms.View(context.Background(), c, nodes[0].Host())
		if !slices.Contains(v.DownIDs, id) {
			return fmt.Errorf("kms1 sees down %v", v.DownIDs)
		}
		return nil
	})
	fresh := l.startIn(filepath.Join(t.TempDir(), "data"), addr)
	waitReady(t, l.client(fresh), fresh.Host())
	kms1 := l.sshHost("kms1", nodes[0])
	for _, check := range []bool{true, false} {
		_, err := l.run("kms_add_node", kms1, map[string]any{"endpoint": addr}, check)
		want := fmt.Sprintf("remove node %d first (kms_remove_node id: %d)", id, id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("adding %s listed as dead node %d (check %v): %v; want a failure with %q", addr, id, check, err, want)
		}
	}
	if v := kms.View(t.Context(), c, nodes[0].Host()); len(v.Members) != 3 {
		t.Errorf("the failed add changed the cluster: %v", v.Members)
	}
}
