package kmsim

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// converged checks, from every node's own view, that the cluster is
// exactly ids (node ID → node), all up, with one leader (the lowest ID), the
// same commit everywhere and writes possible.
func converged(e *env, ids map[uint32]*Node) error {
	var problems []string
	var want []uint32
	for id := range ids {
		want = append(want, id)
	}
	slices.Sort(want)
	commits := map[uint64]bool{}
	for id, n := range ids {
		st, err := status(e.admin, n.Addr())
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %d: status: %v", id, err))
			continue
		}
		if len(st.NodesDown) != 0 {
			problems = append(problems, fmt.Sprintf("node %d sees down %v", id, st.NodesDown))
		}
		self := st.NodesUp[id]
		if self == nil {
			problems = append(problems, fmt.Sprintf("node %d does not report itself as %d", id, id))
			continue
		}
		var got []uint32
		for nid := range self.Nodes {
			got = append(got, nid)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("node %d definition %v, want %v", id, got, want))
		}
		if self.LeaderID != int64(want[0]) {
			problems = append(problems, fmt.Sprintf("node %d leader %d, want %d", id, self.LeaderID, want[0]))
		}
		commits[self.Commit] = true
		if code := ready(e.admin, n.Addr(), true); code != 200 {
			problems = append(problems, fmt.Sprintf("node %d ready?write = %d", id, code))
		}
	}
	if len(commits) > 1 {
		problems = append(problems, fmt.Sprintf("commits differ: %v", commits))
	}
	return errorsJoin(problems)
}

func addNode(e *env, via *Node, host string) error {
	return send(e.admin, via.Addr(), "", wire.ClusterAddNode, &pb.AddClusterNodeRequest{Host: host}, nil)
}

func createKey(e *env, n *Node, name string) error {
	return send(e.admin, n.Addr(), "", wire.KeyCreate, &pb.CreateKeyRequest{Name: name}, nil)
}

func decrypt(e *env, n *Node, name string, version uint32, ct []byte) ([]byte, error) {
	var resp pb.DecryptResponse
	err := send(e.admin, n.Addr(), "", wire.KeyDecrypt, &pb.DecryptRequest{Name: name, Version: version, Ciphertext: ct, AssociatedData: []byte("ad")}, &resp)
	return resp.Plaintext, err
}

// threeNodes starts three fresh nodes and joins them into one cluster.
func threeNodes(t *testing.T, e *env) (nodes [3]*Node, dirs [3]string) {
	t.Helper()
	for i := range nodes {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))
		nodes[i] = e.start(dirs[i])
		if id := nodes[i].NodeID(); id != 0 {
			t.Fatalf("fresh node has ID %d, want 0", id)
		}
	}
	for i := 1; i < 3; i++ {
		if err := addNode(e, nodes[0], nodes[i].Host()); err != nil {
			t.Fatalf("add node %d: %v", i, err)
		}
		if id := nodes[i].NodeID(); id != uint32(i) {
			t.Fatalf("joined node has ID %d, want %d (max+1)", id, i)
		}
	}
	kmsimtest.Eventually(t, "three-node cluster converges", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: nodes[2]})
	})
	return nodes, dirs
}

func TestClusterRecovery(t *testing.T) {
	e := newEnv(t)
	nodes, dirs := threeNodes(t, e)

	// Keys, created through different nodes (followers forward to the leader).
	for i, name := range []string{"key-a", "key-b", "key-c"} {
		if err := createKey(e, nodes[i], name); err != nil {
			t.Fatalf("create %s via node %d: %v", name, i, err)
		}
	}
	var enc pb.EncryptResponse
	plaintext := []byte("sentinel plaintext")
	if err := send(e.admin, nodes[2].Addr(), "", wire.KeyEncrypt, &pb.EncryptRequest{Name: "key-b", Plaintext: plaintext, AssociatedData: []byte("ad")}, &enc); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if got, err := decrypt(e, n, "key-b", enc.Version, enc.Ciphertext); err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("decrypt on node %d: %q, %v", i, got, err)
		}
	}
	if err := createKey(e, nodes[1], "key-a"); !isErr(err, wire.ErrKeyExists) {
		t.Fatalf("duplicate key: %v", err)
	}

	// Node 2 dies: writes fail, reads work, ready?write turns 503.
	addr2 := nodes[2].Addr()
	nodes[2].Close()
	if err := createKey(e, nodes[0], "key-d"); err == nil || !(isErr(err, wire.ErrNoWriteQuorum) || isErr(err, wire.ErrNoLeader)) {
		t.Fatalf("write with a dead node: %v, want no write quorum", err)
	}
	if got, err := decrypt(e, nodes[1], "key-b", enc.Version, enc.Ciphertext); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("read with a dead node: %q, %v", got, err)
	}
	kmsimtest.Eventually(t, "ready?write is 503 with a dead node", func() error {
		for i := range 2 {
			if code := ready(e.admin, nodes[i].Addr(), true); code != 503 {
				return fmt.Errorf("node %d ready?write = %d", i, code)
			}
			if code := ready(e.admin, nodes[i].Addr(), false); code != 200 {
				return fmt.Errorf("node %d ready = %d", i, code)
			}
		}
		return nil
	})
	st, err := status(e.admin, nodes[0].Addr())
	if err != nil || st.NodesDown[2] != addr2 || len(st.NodesUp) != 2 {
		t.Fatalf("status with node 2 dead: %v, %v", st, err)
	}

	// Edit-remove node 2 on node 1 (a follower), without quorum: writes work again.
	if err := send(e.admin, nodes[1].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{1}}, nil); err == nil {
		t.Fatal("edit removed the receiving node itself")
	}
	if err := send(e.admin, nodes[1].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{7}}, nil); !isErr(err, wire.ErrNodeNotFound) {
		t.Fatalf("edit of an unknown ID: %v", err)
	}
	if err := send(e.admin, nodes[1].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{Host: nodes[1].Host(), RemoveIDs: []uint32{2}}, nil); err != nil {
		t.Fatalf("edit: %v", err)
	}
	kmsimtest.Eventually(t, "writes work after the edit", func() error { return createKey(e, nodes[0], "key-d") })
	kmsimtest.Eventually(t, "edit reaches node 0", func() error { return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1]}) })

	// Wipe node 2, restart it fresh on its address, add it via node 1: it catches up.
	if err := os.RemoveAll(dirs[2]); err != nil {
		t.Fatal(err)
	}
	nodes[2] = e.startWith(dirs[2], addr2, e.hsmKey)
	if err := addNode(e, nodes[1], nodes[2].Host()); err != nil {
		t.Fatalf("add wiped node: %v", err)
	}
	if err := addNode(e, nodes[0], nodes[2].Host()); !isErr(err, wire.ErrNodeAlreadyMember) {
		t.Fatalf("adding a member again: %v", err)
	}
	kmsimtest.Eventually(t, "re-added node converges", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: nodes[2]})
	})
	for _, name := range []string{"key-a", "key-b", "key-c", "key-d"} {
		if err := send(e.admin, nodes[2].Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: name}, &pb.KeyStatusResponse{}); err != nil {
			t.Fatalf("re-added node lacks %s: %v", name, err)
		}
	}
	if got, err := decrypt(e, nodes[2], "key-b", enc.Version, enc.Ciphertext); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("re-added node decrypts %q, %v", got, err)
	}
	if err := createKey(e, nodes[2], "key-e"); err != nil {
		t.Fatalf("write via the re-added node: %v", err)
	}

	// Node 1 dies and is edited out, but comes back with its data: refused.
	addr1 := nodes[1].Addr()
	nodes[1].Close()
	if err := send(e.admin, nodes[0].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{1}}, nil); err != nil {
		t.Fatalf("edit out node 1: %v", err)
	}
	nodes[1] = e.startWith(dirs[1], addr1, e.hsmKey)
	if err := addNode(e, nodes[0], nodes[1].Host()); !isErr(err, wire.ErrNodeNotFresh) {
		t.Fatalf("adding a node with data: %v, want node is not fresh", err)
	}
	// The stale node does not disturb the others.
	kmsimtest.Eventually(t, "cluster without node 1", func() error { return converged(e, map[uint32]*Node{0: nodes[0], 2: nodes[2]}) })
	if err := createKey(e, nodes[2], "key-f"); err != nil {
		t.Fatalf("write with a stale ex-member around: %v", err)
	}

	// REMOVENODE with quorum, then the last node cannot be removed.
	if err := send(e.admin, nodes[2].Addr(), "", wire.ClusterRemoveNode, &pb.RemoveClusterNodeRequest{Host: nodes[2].Host(), DeleteClusterOnHost: true}, nil); err != nil {
		t.Fatalf("remove node 2: %v", err)
	}
	kmsimtest.Eventually(t, "node 2 left", func() error {
		if nodes[2].NodeID() != 0 || nodes[2].ClusterID() == nodes[0].ClusterID() {
			return fmt.Errorf("node 2 is still %d of %s", nodes[2].NodeID(), nodes[2].ClusterID())
		}
		return converged(e, map[uint32]*Node{0: nodes[0]})
	})
	if err := send(e.admin, nodes[0].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{0}}, nil); !isErr(err, wire.ErrLastNode) {
		t.Fatalf("edit removing the last node: %v", err)
	}
	if err := send(e.admin, nodes[0].Addr(), "", wire.ClusterRemoveNode, &pb.RemoveClusterNodeRequest{Host: nodes[0].Host()}, nil); !isErr(err, wire.ErrLastNode) {
		t.Fatalf("remove of the last node: %v", err)
	}
	// The removed node was wiped (DeleteClusterOnHost) and can join again.
	if err := addNode(e, nodes[0], nodes[2].Host()); err != nil {
		t.Fatalf("re-add the removed node: %v", err)
	}
	kmsimtest.Eventually(t, "two-node cluster", func() error { return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[2]}) })
}

func TestWipedNodeStillListed(t *testing.T) {
	e := newEnv(t)
	nodes, dirs := threeNodes(t, e)
	if err := createKey(e, nodes[0], "k"); err != nil {
		t.Fatal(err)
	}
	addr := nodes[2].Addr()
	nodes[2].Close()
	if err := os.RemoveAll(dirs[2]); err != nil {
		t.Fatal(err)
	}
	nodes[2] = e.startWith(dirs[2], addr, e.hsmKey) // fresh, still listed by the others
	if nodes[2].NodeID() != 0 || nodes[2].ClusterID() == nodes[0].ClusterID() {
		t.Fatal("wiped node did not start fresh")
	}
	// The others keep seeing node 2 as down, and the fresh node keeps its own cluster.
	kmsimtest.Eventually(t, "wiped node seen as down", func() error {
		st, err := status(e.admin, nodes[0].Addr())
		if err != nil {
			return err
		}
		if st.NodesDown[2] != addr {
			return fmt.Errorf("down = %v", st.NodesDown)
		}
		return nil
	})
	if err := createKey(e, nodes[0], "k2"); err == nil {
		t.Fatal("write succeeded although node 2 is wiped")
	}
	st, err := status(e.admin, nodes[2].Addr())
	if err != nil || len(st.NodesUp) != 1 || len(st.NodesUp[0].Nodes) != 1 || st.NodesUp[0].Commit != 0 {
		t.Fatalf("the wiped node was changed by the old cluster: %v %v", st, err)
	}
	if err := send(e.admin, nodes[2].Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "k"}, nil); !isErr(err, wire.ErrKeyNotFound) {
		t.Fatalf("wiped node has the old key: %v", err)
	}
}

func TestAddNodeWithOtherHSMKeyRefused(t *testing.T) {
	e := newEnv(t)
	a := e.start(filepath.Join(t.TempDir(), "a"))
	b := e.startWith(filepath.Join(t.TempDir(), "b"), "", testHSMKey(99))
	if err := addNode(e, a, b.Host()); !isErr(err, wire.ErrHSMMismatch) {
		t.Fatalf("add node with another HSM key: %v", err)
	}
	if b.NodeID() != 0 || b.ClusterID() == a.ClusterID() {
		t.Fatal("node with another HSM key joined")
	}
	if err := addNode(e, a, "127.0.0.1:1"); !isErr(err, wire.ErrNodeUnreachable) {
		t.Fatalf("add unreachable node: %v", err)
	}
}

func TestRestartedNodeRejoins(t *testing.T) {
	e := newEnv(t)
	nodes, dirs := threeNodes(t, e)
	// The leader itself restarts with its data: the cluster comes back as it was.
	addr := nodes[0].Addr()
	nodes[0].Close()
	kmsimtest.Eventually(t, "a leader among the survivors", func() error {
		st, err := status(e.admin, nodes[1].Addr())
		if err != nil {
			return err
		}
		if st.NodesUp[1].LeaderID != 1 || st.NodesUp[1].Role != "Leader" {
			return fmt.Errorf("node 1: leader %d role %s", st.NodesUp[1].LeaderID, st.NodesUp[1].Role)
		}
		return nil
	})
	if err := createKey(e, nodes[1], "while-down"); err == nil {
		t.Fatal("write succeeded with node 0 down")
	}
	nodes[0] = e.startWith(dirs[0], addr, e.hsmKey)
	kmsimtest.Eventually(t, "restarted node rejoins", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: nodes[2]})
	})
	kmsimtest.Eventually(t, "writes after the restart", func() error { return createKey(e, nodes[2], "after-restart") })
	for i, n := range nodes {
		if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "after-restart"}, nil); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if err := send(e.admin, n.Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "while-down"}, nil); !isErr(err, wire.ErrKeyNotFound) {
			t.Fatalf("node %d has the failed write: %v", i, err)
		}
	}
}

// ADDNODE while a member is dead fails without touching the new node, so
// that it can be added once the dead member is edited out.
func TestAddNodeWithDeadMember(t *testing.T) {
	e := newEnv(t)
	nodes, _ := threeNodes(t, e)
	nodes[2].Close()
	fresh := e.start(filepath.Join(t.TempDir(), "fresh"))
	if err := addNode(e, nodes[0], fresh.Host()); !isErr(err, wire.ErrNoWriteQuorum) {
		t.Fatalf("add with a dead member: %v", err)
	}
	if fresh.NodeID() != 0 || fresh.ClusterID() == nodes[0].ClusterID() {
		t.Fatal("a failed ADDNODE changed the new node")
	}
	// The survivors are reset to the leader's state (no trace of the failed add).
	kmsimtest.Eventually(t, "failed add rolled back", func() error {
		st, err := status(e.admin, nodes[1].Addr())
		if err != nil {
			return err
		}
		if s := st.NodesUp[1]; len(s.Nodes) != 3 || s.Commit != st.NodesUp[0].Commit {
			return fmt.Errorf("node 1: nodes %v commit %d, node 0 commit %d", s.Nodes, s.Commit, st.NodesUp[0].Commit)
		}
		return nil
	})
	if err := send(e.admin, nodes[1].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{2}}, nil); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "add after the edit", func() error { return addNode(e, nodes[0], fresh.Host()) })
	if fresh.NodeID() != 2 {
		t.Fatalf("new node has ID %d, want 2", fresh.NodeID())
	}
	kmsimtest.Eventually(t, "cluster with the new node", func() error {
		return converged(e, map[uint32]*Node{0: nodes[0], 1: nodes[1], 2: fresh})
	})
}

// REMOVENODE of the leader itself, without wiping it: the others carry on
// with a new leader; the removed node keeps its data and is not fresh.
func TestRemoveLeader(t *testing.T) {
	e := newEnv(t)
	nodes, _ := threeNodes(t, e)
	if err := createKey(e, nodes[2], "k"); err != nil {
		t.Fatal(err)
	}
	old := nodes[0].ClusterID()
	if err := send(e.admin, nodes[1].Addr(), "", wire.ClusterRemoveNode, &pb.RemoveClusterNodeRequest{Host: nodes[0].Host()}, nil); err != nil {
		t.Fatalf("remove the leader: %v", err)
	}
	kmsimtest.Eventually(t, "cluster without node 0", func() error { return converged(e, map[uint32]*Node{1: nodes[1], 2: nodes[2]}) })
	if nodes[0].ClusterID() == old || nodes[0].NodeID() != 0 {
		t.Fatal("removed node still in the old cluster")
	}
	if err := send(e.admin, nodes[0].Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: "k"}, nil); err != nil {
		t.Fatalf("removed node lost its data: %v", err)
	}
	if err := addNode(e, nodes[1], nodes[0].Host()); !isErr(err, wire.ErrNodeNotFresh) {
		t.Fatalf("re-adding a removed node with data: %v", err)
	}
	if err := createKey(e, nodes[2], "k2"); err != nil {
		t.Fatalf("write after removing the leader: %v", err)
	}
}

// A node removed by CLUSTER:EDIT while it was down, restarted with its old
// state, does not pass as healthy: it has no leader and is not ready for
// writes, its view (the old definition) disagrees with the members', and the
// members refuse its forwarded writes.
func TestRemovedWhileDownIsNotHealthy(t *testing.T) {
	e := newEnv(t)
	nodes, dirs := threeNodes(t, e)
	addr := nodes[1].Addr()
	nodes[1].Close()
	if err := send(e.admin, nodes[0].Addr(), "", wire.ClusterEdit, &pb.EditClusterRequest{RemoveIDs: []uint32{1}}, nil); err != nil {
		t.Fatal(err)
	}
	kmsimtest.Eventually(t, "cluster without node 1", func() error { return converged(e, map[uint32]*Node{0: nodes[0], 2: nodes[2]}) })
	stale := e.startWith(dirs[1], addr, e.hsmKey)

	// Long enough for many heartbeat exchanges with both members.
	time.Sleep(2 * stale.downAfter)
	for range 3 {
		if code := ready(e.admin, stale.Addr(), true); code == 200 {
			t.Fatal("the removed node is ready for writes")
		}
		st, err := status(e.admin, stale.Addr())
		if err != nil {
			t.Fatal(err)
		}
		self := st.NodesUp[1]
		if self == nil || self.LeaderID >= 0 || len(self.Nodes) != 3 || len(st.NodesDown) != 2 {
			t.Fatalf("the removed node's view: %v", st)
		}
		time.Sleep(stale.interval)
	}
	for _, m := range []*Node{nodes[0], nodes[2]} {
		st, err := status(e.admin, m.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.NodesUp[m.NodeID()].Nodes[1]; ok || len(st.NodesUp) != 2 {
			t.Fatalf("member %d's view: %v", m.NodeID(), st)
		}
	}
	if err := createKey(e, stale, "via-stale"); err == nil {
		t.Fatal("a write through the removed node succeeded")
	}
	// Even if it forwards a write to the leader, the leader refuses it.
	body, err := wire.AppendFrame(nil, wire.KeyCreate, &pb.CreateKeyRequest{Name: "forwarded"})
	if err != nil {
		t.Fatal(err)
	}
	stale.mu.Lock()
	st := stale.st
	stale.mu.Unlock()
	if _, aerr := stale.forwardTo(context.Background(), st, 0, e.adminID, defaultEnclave, body); aerr == nil || aerr.Status != http.StatusConflict {
		t.Fatalf("the leader ran a write forwarded by a removed node: %v", aerr)
	}
	for _, name := range []string{"via-stale", "forwarded"} {
		if err := send(e.admin, nodes[2].Addr(), "", wire.KeyStatus, &pb.KeyStatusRequest{Name: name}, nil); !isErr(err, wire.ErrKeyNotFound) {
			t.Fatalf("key %s: %v", name, err)
		}
	}
	if err := converged(e, map[uint32]*Node{0: nodes[0], 2: nodes[2]}); err != nil {
		t.Fatalf("the members with the removed node back: %v", err)
	}
}
