package kmsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// peer is what a node knows about another node of its definition.
type peer struct {
	lastOK   time.Time // last heartbeat exchange that proved the peer is our member
	commit   uint64
	syncing  bool // a state push to the peer is running
	inflight bool // a heartbeat to the peer is running
	dropsUs  bool // the peer's last answer did not list this node
}

// rpcTimeout bounds one inter-node call.
func (n *Node) rpcTimeout() time.Duration { return max(2*n.interval, time.Second) }

// heartbeatLoop exchanges heartbeats with every other node of the
// definition every interval (or at once when kicked) until the node stops.
func (n *Node) heartbeatLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.interval)
	defer t.Stop()
	for {
		n.heartbeatRound()
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
	}
}

// kickHeartbeat asks for a heartbeat round now.
func (n *Node) kickHeartbeat() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// heartbeatRound sends one heartbeat to every other node of the definition
// that has none in flight, without waiting: a black-holed peer must not delay
// the heartbeats of the others.
func (n *Node) heartbeatRound() {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	req := st.heartbeat()
	for id, host := range st.Nodes {
		if id == st.NodeID {
			continue
		}
		p := n.peerLocked(id)
		if p.inflight {
			continue
		}
		p.inflight = true
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, n.rpcTimeout())
			defer cancel()
			var resp heartbeat
			err := n.call(ctx, host, rpcHeartbeat, req, &resp)
			n.mu.Lock()
			p.inflight = false
			n.mu.Unlock()
			if err == nil {
				n.onHeartbeatAnswer(id, host, &resp)
			}
		}()
	}
}

// onHeartbeatAnswer records a peer's answer. A peer counts as up only if it
// answers as the expected node of our cluster: a wiped node (new cluster ID,
// ID 0) stays down.
//
// A peer whose definition no longer lists this node (CLUSTER:EDIT removed
// it, e.g. while it was down) is not up either: this node then has no
// leader and is not ready for writes, and its view (the old definition)
// disagrees with the members'.
func (n *Node) onHeartbeatAnswer(id uint32, host string, resp *heartbeat) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if resp.ClusterID != n.st.ClusterID || resp.NodeID != id || n.st.Nodes[id] != host {
		return
	}
	p := n.peerLocked(id)
	if resp.Nodes[n.st.NodeID] != n.host {
		if !p.dropsUs {
			n.logf("node %d (%s) does not list this node (node %d, %s) in its cluster definition %s (epoch %d): this node was removed from the cluster; wipe its data directory and add it again", id, host, n.st.NodeID, n.host, describeNodes(resp.Nodes), resp.Epoch)
		}
		p.dropsUs = true
		return
	}
	p.dropsUs = false
	p.lastOK, p.commit = time.Now(), resp.Commit
	n.lastHeartbeat = p.lastOK
	n.adoptDefinitionLocked(resp)
	if n.leaderLocked() == int64(n.st.NodeID) && (resp.Commit != n.st.Commit || resp.Head != n.st.Head) && !p.syncing {
		p.syncing = true
		n.wg.Add(1)
		go n.syncPeer(id)
	}
}

// onHeartbeat answers a peer's heartbeat.
func (n *Node) onHeartbeat(req *heartbeat) *heartbeat {
	n.mu.Lock()
	defer n.mu.Unlock()
	if req.ClusterID == n.st.ClusterID && n.st.Nodes[req.NodeID] != "" && n.st.Nodes[req.NodeID] == req.Nodes[req.NodeID] && req.NodeID != n.st.NodeID {
		p := n.peerLocked(req.NodeID)
		p.lastOK = time.Now()
		n.lastHeartbeat = p.lastOK
		n.adoptDefinitionLocked(req)
	}
	st := n.st
	return st.heartbeat()
}

// adoptDefinitionLocked takes over a newer cluster definition of the same
// cluster (CLUSTER:EDIT on another node), if it still lists this node. A
// peer with another commit may hold a write that failed (and that the
// leader will reset), so only peers with the same commit count.
func (n *Node) adoptDefinitionLocked(hb *heartbeat) {
	if hb.ClusterID != n.st.ClusterID || hb.Epoch <= n.st.Epoch || hb.Commit != n.st.Commit || hb.Head != n.st.Head || hb.Nodes[n.st.NodeID] != n.host {
		return
	}
	next := n.st.clone()
	next.Epoch, next.Nodes = hb.Epoch, maps.Clone(hb.Nodes)
	if err := n.store.save(next); err != nil {
		n.logf("adopt cluster definition (epoch %d): %v", hb.Epoch, err)
		return
	}
	n.setStateLocked(next)
	n.logf("adopted cluster definition %v (epoch %d)", describeNodes(next.Nodes), next.Epoch)
}

// syncPeer pushes the leader's state to a follower whose log differs (a
// write that failed elsewhere, or a node that was down).
func (n *Node) syncPeer(id uint32) {
	defer n.wg.Done()
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	n.mu.Lock()
	st, leader := n.st, n.leaderLocked() == int64(n.st.NodeID)
	host, ok := st.Nodes[id]
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if p, ok := n.peers[id]; ok {
			p.syncing = false
		}
		n.mu.Unlock()
	}()
	if !leader || !ok {
		return
	}
	// The heartbeat that showed a difference may predate the last write's
	// entry; with writes held off (writeMu), ask again before sending the
	// whole state.
	hctx, hcancel := context.WithTimeout(n.ctx, n.rpcTimeout())
	defer hcancel()
	var hb heartbeat
	if err := n.call(hctx, host, rpcHeartbeat, st.heartbeat(), &hb); err != nil {
		return
	}
	if hb.ClusterID == st.ClusterID && hb.Commit == st.Commit && hb.Head == st.Head {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.snapshotTimeout())
	defer cancel()
	n.logf("node %d (%s) is at commit %d, this leader at %d: sending the whole state", id, host, hb.Commit, st.Commit)
	if err := n.call(ctx, host, rpcReplicate, &replicateRequest{From: st.NodeID, To: id, Sync: true, State: st}, nil); err != nil {
		n.logf("sync node %d (%s): %v", id, host, err)
		return
	}
	n.mu.Lock()
	if p, ok := n.peers[id]; ok {
		p.commit = st.Commit
	}
	n.mu.Unlock()
}

func (n *Node) peerLocked(id uint32) *peer {
	p, ok := n.peers[id]
	if !ok {
		p = &peer{}
		n.peers[id] = p
	}
	return p
}

// upLocked reports whether node id of the definition is up in this node's view.
func (n *Node) upLocked(id uint32) bool {
	if id == n.st.NodeID {
		return true
	}
	p, ok := n.peers[id]
	return ok && time.Since(p.lastOK) < n.downAfter
}

// leaderLocked is the leader in this node's view: the lowest node ID that is
// up, provided a majority of the definition is up; otherwise -1.
func (n *Node) leaderLocked() int64 {
	if _, ok := n.st.Nodes[n.st.NodeID]; !ok {
		return -1
	}
	var up []uint32
	for id := range n.st.Nodes {
		if n.upLocked(id) {
			up = append(up, id)
		}
	}
	if 2*len(up) <= len(n.st.Nodes) {
		return -1
	}
	return int64(slices.Min(up))
}

// writableLocked reports whether writes are possible now: a leader exists
// and every node of the definition is up.
func (n *Node) writableLocked() bool {
	if n.leaderLocked() < 0 {
		return false
	}
	for id := range n.st.Nodes {
		if !n.upLocked(id) {
			return false
		}
	}
	return true
}

func (n *Node) roleLocked() string {
	switch l := n.leaderLocked(); {
	case l == int64(n.st.NodeID):
		return "Leader"
	case l >= 0:
		return "Follower"
	default:
		return "Candidate"
	}
}

// setStateLocked replaces the state (never modified in place) and forgets
// peers that left the definition.
func (n *Node) setStateLocked(st *nodeState) {
	n.st = st
	for id := range n.peers {
		if _, ok := st.Nodes[id]; !ok {
			delete(n.peers, id)
		}
	}
}

// membership describes the membership side effects of a write.
type membership struct {
	join   bool   // a fresh node joins
	joinID uint32 // as this ID
	leave  *leaveRequest
	host   string // where leave goes
}

// snapshotTimeout bounds an inter-node call that carries the whole state.
func (n *Node) snapshotTimeout() time.Duration { return max(10*n.rpcTimeout(), 10*time.Second) }

// commit runs a write on the leader: mutate builds the write's log entry on
// the current state (tx); the entry goes to every other node of the (new)
// definition, and the leader applies it only when all of them acknowledged
// (n of n). A node whose log does not match gets the whole new state
// instead, and so does a joining node, once every member has the entry.
func (n *Node) commit(ctx context.Context, mutate func(t *tx) (*membership, error)) error {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	n.mu.Lock()
	base := n.st
	leader := n.leaderLocked()
	n.mu.Unlock()
	if leader != int64(base.NodeID) {
		return errNoLeader
	}
	t := &tx{st: base}
	ch, err := mutate(t)
	if err != nil {
		return err
	}
	id, err := newEntryID()
	if err != nil {
		return err
	}
	e := &t.e
	e.Index, e.ID, e.Prev = base.Commit+1, id, base.Head
	next := t.st.clone()
	next.Commit, next.Head = e.Index, e.ID

	// Phase 1: the current members; phase 2: a joining node, only once all
	// members have the write, so that a failed write never leaves a fresh
	// node holding a cluster that did not commit it.
	var members, joining []uint32
	for id := range next.Nodes {
		switch {
		case id == next.NodeID:
		case ch != nil && ch.join && ch.joinID == id:
			joining = append(joining, id)
		default:
			members = append(members, id)
		}
	}
	if err := n.replicate(ctx, next, e, members, false); err != nil {
		return err
	}
	if err := n.replicate(ctx, next, e, joining, true); err != nil {
		return err
	}

	n.mu.Lock()
	// Heartbeats may have brought in the definition this write just sent
	// (same commit, epoch <= next.Epoch); anything else is a conflict.
	if cur := n.st; cur != base && (cur.ClusterID != base.ClusterID || cur.NodeID != base.NodeID || cur.Commit != base.Commit || cur.Head != base.Head || cur.Epoch > next.Epoch) {
		n.mu.Unlock()
		return errorf(http.StatusConflict, "the node's state changed during the write; retry")
	}
	if _, ok := next.Nodes[next.NodeID]; ok || ch == nil || ch.leave == nil {
		if err := n.store.append(e, next); err != nil {
			n.mu.Unlock()
			return errorf(http.StatusInternalServerError, "persist state: %v", err)
		}
		n.setStateLocked(next)
	}
	n.mu.Unlock()
	n.kickHeartbeat()

	if ch != nil && ch.leave != nil {
		if ch.leave.NodeID == base.NodeID && ch.host == n.host {
			return n.onLeave(ch.leave)
		}
		cctx, cancel := context.WithTimeout(ctx, n.rpcTimeout())
		defer cancel()
		if err := n.call(cctx, ch.host, rpcLeave, ch.leave, nil); err != nil {
			return errorf(http.StatusInternalServerError, "node %d (%s) was removed from the cluster, but could not be told so: %v; wipe its data directory before reusing it", ch.leave.NodeID, ch.host, err)
		}
	}
	return nil
}

// replicate gives the write (entry e, making state next) to the nodes ids in
// parallel and returns an error unless all of them acknowledged. join: the
// nodes are joining and get next as a snapshot.
func (n *Node) replicate(ctx context.Context, next *nodeState, e *entry, ids []uint32, join bool) error {
	var (
		wg      sync.WaitGroup
		emu     sync.Mutex
		errs    []string
		joinErr *apiError // the joining node's own refusal (e.g. not fresh)
	)
	for _, id := range ids {
		host := next.Nodes[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.sendWrite(ctx, next, e, id, join)
			if err == nil {
				// The acknowledgement proves the peer is up and our member.
				n.mu.Lock()
				p := n.peerLocked(id)
				p.lastOK, p.commit = time.Now(), next.Commit
				n.mu.Unlock()
				return
			}
			emu.Lock()
			defer emu.Unlock()
			errs = append(errs, fmt.Sprintf("node %d (%s): %v", id, host, err))
			var ae *apiError
			if join && errors.As(err, &ae) && ae.Status == http.StatusConflict {
				joinErr = ae
			}
		}()
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil
	}
	if joinErr != nil && len(errs) == 1 {
		return joinErr
	}
	sort.Strings(errs)
	n.logf("write (commit %d) not committed: %s", next.Commit, strings.Join(errs, "; "))
	return errNoQuorum(strings.Join(errs, "; "))
}

// outOfSync starts the answer of a node whose log does not match an entry.
const outOfSync = "out of sync"

// sendWrite gives node id the write: its log entry, or the whole state
// next if the node is joining or answers that its log does not match.
func (n *Node) sendWrite(ctx context.Context, next *nodeState, e *entry, id uint32, join bool) error {
	host := next.Nodes[id]
	if !join {
		cctx, cancel := context.WithTimeout(ctx, n.rpcTimeout())
		defer cancel()
		req := &replicateRequest{From: next.NodeID, To: id, ClusterID: next.ClusterID, Epoch: next.Epoch, Nodes: next.Nodes, Entry: e}
		err := n.call(cctx, host, rpcReplicate, req, nil)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.HasPrefix(ae.Message, outOfSync) {
			return err
		}
		n.logf("node %d (%s): %s: sending the whole state", id, host, ae.Message)
	}
	cctx, cancel := context.WithTimeout(ctx, n.snapshotTimeout())
	defer cancel()
	return n.call(cctx, host, rpcReplicate, &replicateRequest{From: next.NodeID, To: id, Join: join, Sync: !join, State: next}, nil)
}

// onReplicate applies a leader's log entry, or its whole state.
func (n *Node) onReplicate(req *replicateRequest) error {
	if req.Entry != nil {
		return n.onEntry(req)
	}
	if req.State == nil || req.State.Data == nil || len(req.State.Nodes) == 0 {
		return errorf(http.StatusBadRequest, "replicate: empty state")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.st
	if req.Join {
		if !cur.fresh() {
			return errNotFresh
		}
	} else {
		switch {
		case req.State.ClusterID != cur.ClusterID:
			return errorf(http.StatusConflict, "not a member of cluster %s", req.State.ClusterID)
		case cur.Nodes[req.From] == "" || req.From == cur.NodeID:
			return errorf(http.StatusConflict, "node %d is not in this node's cluster definition", req.From)
		case req.To != cur.NodeID:
			return errorf(http.StatusConflict, "this is node %d, not node %d", cur.NodeID, req.To)
		case req.State.Epoch < cur.Epoch && !req.Sync:
			return errorf(http.StatusConflict, "stale cluster definition (epoch %d < %d)", req.State.Epoch, cur.Epoch)
		}
	}
	if req.State.Nodes[req.To] != n.host {
		return errorf(http.StatusConflict, "the cluster definition lists node %d as %q, but this node is %q", req.To, req.State.Nodes[req.To], n.host)
	}
	next := req.State.clone()
	next.NodeID = req.To
	next.Data.normalize()
	if err := n.store.save(next); err != nil {
		return errorf(http.StatusInternalServerError, "persist state: %v", err)
	}
	if req.Join {
		n.peers = map[uint32]*peer{}
		n.logf("joined cluster %s as node %d", next.ClusterID, next.NodeID)
	}
	n.setStateLocked(next)
	// The sender is the leader and just proved it is up.
	n.peerLocked(req.From).lastOK = time.Now()
	n.lastHeartbeat = time.Now()
	return nil
}

// onEntry applies a leader's log entry. An entry that does not follow this
// node's log is refused as out of sync: the leader then sends its state.
func (n *Node) onEntry(req *replicateRequest) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.st
	switch {
	case req.ClusterID != cur.ClusterID:
		return errorf(http.StatusConflict, "not a member of cluster %s", req.ClusterID)
	case cur.Nodes[req.From] == "" || req.From == cur.NodeID:
		return errorf(http.StatusConflict, "node %d is not in this node's cluster definition", req.From)
	case req.To != cur.NodeID:
		return errorf(http.StatusConflict, "this is node %d, not node %d", cur.NodeID, req.To)
	case req.Epoch < cur.Epoch:
		return errorf(http.StatusConflict, "stale cluster definition (epoch %d < %d)", req.Epoch, cur.Epoch)
	case req.Nodes[req.To] != n.host:
		return errorf(http.StatusConflict, "the cluster definition lists node %d as %q, but this node is %q", req.To, req.Nodes[req.To], n.host)
	}
	next, err := cur.apply(req.Entry)
	if err != nil {
		return errorf(http.StatusConflict, "%s: %v", outOfSync, err)
	}
	save := func() error { return n.store.append(req.Entry, next) }
	if req.Epoch > next.Epoch {
		// The leader's definition is newer (an edit this node has not seen).
		next.Nodes, next.Epoch = maps.Clone(req.Nodes), req.Epoch
		save = func() error { return n.store.save(next) }
	}
	if err := save(); err != nil {
		return errorf(http.StatusInternalServerError, "persist state: %v", err)
	}
	n.setStateLocked(next)
	n.peerLocked(req.From).lastOK = time.Now()
	n.lastHeartbeat = time.Now()
	return nil
}

// onLeave resets a node that REMOVENODE removed: with Wipe it becomes a
// fresh node, otherwise a one-node cluster that keeps its data (and so
// cannot be added again without wiping).
func (n *Node) onLeave(req *leaveRequest) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if req.ClusterID != n.st.ClusterID || req.NodeID != n.st.NodeID {
		return errorf(http.StatusConflict, "not node %d of cluster %s", req.NodeID, req.ClusterID)
	}
	next, err := newNodeState(n.host, time.Now())
	if err != nil {
		return err
	}
	if !req.Wipe {
		next.Data, next.Commit = n.st.clone().Data, n.st.Commit
	}
	if err := n.store.save(next); err != nil {
		return errorf(http.StatusInternalServerError, "persist state: %v", err)
	}
	n.peers = map[uint32]*peer{}
	n.setStateLocked(next)
	n.logf("removed from the cluster; now node 0 of cluster %s", next.ClusterID)
	return nil
}

// onForward runs a write that a follower forwarded to this node (the leader).
// A node that is not a member of its definition (e.g. one removed by
// CLUSTER:EDIT while it was down, restarted with its old state) is refused.
func (n *Node) onForward(ctx context.Context, req *forwardRequest) *forwardResponse {
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	if req.ClusterID != st.ClusterID || req.From == st.NodeID || st.Nodes[req.From] != req.Host {
		e := errNotAMember(req.From, req.Host)
		return &forwardResponse{Status: e.Status, Message: e.Message}
	}
	body, err := n.execute(ctx, req.Identity, req.Enclave, req.Body, true)
	if err != nil {
		return &forwardResponse{Status: err.Status, Message: err.Message}
	}
	return &forwardResponse{Status: http.StatusOK, Body: body}
}

// forward sends a write to the leader.
func (n *Node) forward(ctx context.Context, identity, enclave string, body []byte) ([]byte, *apiError) {
	n.mu.Lock()
	leader := n.leaderLocked()
	st := n.st
	n.mu.Unlock()
	if leader < 0 {
		return nil, errNoLeader
	}
	return n.forwardTo(ctx, st, uint32(leader), identity, enclave, body)
}

// forwardTo sends a write to node id of the definition in st.
func (n *Node) forwardTo(ctx context.Context, st *nodeState, id uint32, identity, enclave string, body []byte) ([]byte, *apiError) {
	host := st.Nodes[id]
	req := &forwardRequest{ClusterID: st.ClusterID, From: st.NodeID, Host: n.host, Identity: identity, Enclave: enclave, Body: body}
	var resp forwardResponse
	if err := n.call(ctx, host, rpcForward, req, &resp); err != nil {
		return nil, errNoQuorum(fmt.Sprintf("cannot forward the write to leader node %d (%s): %v", id, host, err))
	}
	if resp.Status != http.StatusOK {
		return nil, &apiError{Status: resp.Status, Message: resp.Message}
	}
	return resp.Body, nil
}

// editCluster removes node IDs from this node's definition without quorum
// (CLUSTER:EDIT). The new definition reaches the other nodes it lists with
// the next heartbeat (higher epoch wins).
func (n *Node) editCluster(remove []uint32) *apiError {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(remove) != 1 {
		return fromWire(wire.ErrEditOneNode, "got %d node IDs", len(remove))
	}
	next := n.st.clone()
	for _, id := range remove {
		if id == next.NodeID {
			if len(next.Nodes) == 1 {
				return errLastNode
			}
			return errorf(http.StatusBadRequest, "cannot remove node %d from its own cluster definition: send the edit to another node", id)
		}
		if _, ok := next.Nodes[id]; !ok {
			return fromWire(wire.ErrNodeNotFound, "node %d is not in the cluster definition of node %d", id, next.NodeID)
		}
		delete(next.Nodes, id)
	}
	next.Epoch++
	if err := n.store.save(next); err != nil {
		return errorf(http.StatusInternalServerError, "persist state: %v", err)
	}
	n.setStateLocked(next)
	n.logf("cluster definition edited: removed %v, now %v (epoch %d)", remove, describeNodes(next.Nodes), next.Epoch)
	n.kickHeartbeat()
	return nil
}

// addNode joins a fresh node (CLUSTER:ADDNODE), on the leader.
func (n *Node) addNode(ctx context.Context, host string) *apiError {
	host = normalizeHost(host)
	if host == "" {
		return fromWire(wire.ErrBadRequest, "no host to add")
	}
	err := n.commit(ctx, func(t *tx) (*membership, error) {
		st := t.st
		if id, ok := st.idOf(host); ok {
			return nil, fromWire(wire.ErrNodeAlreadyMember, "%s is node %d", host, id)
		}
		cctx, cancel := context.WithTimeout(ctx, n.rpcTimeout())
		defer cancel()
		var ps peerStatus
		if err := n.call(cctx, host, rpcStatus, struct{}{}, &ps); err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusForbidden || errors.Is(err, errOpen) {
				return nil, fromWire(wire.ErrHSMMismatch, "%s refused this cluster's node credential: it runs with another HSM key", host)
			}
			return nil, fromWire(wire.ErrNodeUnreachable, "%s: %v (it must be running, with the same HSM key)", host, err)
		}
		if ps.ClusterID == st.ClusterID {
			// A former member that kept its data (removed by CLUSTER:EDIT while down).
			return nil, fromWire(wire.ErrNodeNotFresh, "%s is a former node %d of this cluster and still has its data; wipe its data directory and restart it", host, ps.NodeID)
		}
		if !ps.Fresh {
			return nil, fromWire(wire.ErrNodeNotFresh, "%s is node %d of a cluster of %d node(s) with commit %d; wipe its data directory and restart it", host, ps.NodeID, len(ps.Nodes), ps.Commit)
		}
		id := st.maxID() + 1
		nodes := maps.Clone(st.Nodes)
		nodes[id] = host
		t.setNodes(nodes)
		return &membership{join: true, joinID: id}, nil
	})
	if err == nil {
		n.logf("added %s to the cluster", host)
	}
	return asAPIError(err)
}

// removeNode removes a node with write quorum (CLUSTER:REMOVENODE), on the leader.
func (n *Node) removeNode(ctx context.Context, host string, wipe bool) *apiError {
	host = normalizeHost(host)
	err := n.commit(ctx, func(t *tx) (*membership, error) {
		st := t.st
		id, ok := st.idOf(host)
		if !ok {
			return nil, fromWire(wire.ErrNodeNotFound, "%s is not in the cluster definition", host)
		}
		if len(st.Nodes) == 1 {
			return nil, errLastNode
		}
		if id != st.NodeID {
			// Every node of the definition, the removed one included, must be up.
			cctx, cancel := context.WithTimeout(ctx, n.rpcTimeout())
			defer cancel()
			var ps peerStatus
			if err := n.call(cctx, host, rpcStatus, struct{}{}, &ps); err != nil || ps.ClusterID != st.ClusterID || ps.NodeID != id {
				return nil, errNoQuorum(fmt.Sprintf("node %d (%s) is down or no longer a member; remove a dead node with CLUSTER:EDIT", id, host))
			}
		}
		nodes := maps.Clone(st.Nodes)
		delete(nodes, id)
		t.setNodes(nodes)
		return &membership{leave: &leaveRequest{ClusterID: st.ClusterID, NodeID: id, Wipe: wipe}, host: host}, nil
	})
	if err == nil {
		n.logf("removed %s from the cluster", host)
	}
	return asAPIError(err)
}

// normalizeHost turns "https://host[:port]/" into "host:port" (port 7373 by default).
func normalizeHost(host string) string {
	host = strings.TrimSpace(host)
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	host = strings.TrimSuffix(host, "/")
	if host == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(strings.Trim(host, "[]"), wire.DefaultPort)
	}
	return host
}

func asAPIError(err error) *apiError {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return errorf(http.StatusInternalServerError, "%v", err)
}

// describeNodes renders a definition as "0=host 1=host".
func describeNodes(nodes map[uint32]string) string {
	ids := make([]uint32, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d=%s", id, nodes[id])
	}
	return b.String()
}
