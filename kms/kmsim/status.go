package kmsim

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kmsctl/kmsctl/kms/pb"
)

// serverStatus is this node's own ServerStatusResponse.
func (n *Node) serverStatus() *pb.ServerStatusResponse {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	nodes := make(map[uint32]string, len(st.Nodes))
	for id, h := range st.Nodes {
		nodes[id] = h
	}
	var sinceHB time.Duration
	if !n.lastHeartbeat.IsZero() {
		sinceHB = time.Since(n.lastHeartbeat)
	}
	return &pb.ServerStatusResponse{
		Version:           n.cfg.Version,
		APIVersion:        APIVersion,
		Host:              n.host,
		UpTime:            durationpb.New(time.Since(n.started)),
		Role:              n.roleLocked(),
		Commit:            st.Commit,
		Nodes:             nodes,
		ID:                st.NodeID,
		LeaderID:          n.leaderLocked(),
		LastHeartbeat:     durationpb.New(sinceHB),
		HeartbeatInterval: durationpb.New(n.interval),
		ElectionTimeout:   durationpb.New(n.downAfter),
		OS:                runtime.GOOS,
		Arch:              runtime.GOARCH,
		CPUs:              uint32(runtime.NumCPU()),
		UsableCPUs:        uint32(runtime.GOMAXPROCS(0)),
		HeapMemInUse:      ms.HeapInuse,
		StackMemInUse:     ms.StackInuse,
		HSMs:              []string{"hsm:aes256"},
		ConfiguredHSMs:    []string{"hsm:aes256"},
	}
}

// peerStatus answers the status RPC.
func (n *Node) peerStatus() *peerStatus {
	status, _ := proto.Marshal(n.serverStatus()) // a generated message always marshals
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	return &peerStatus{
		heartbeat: *st.heartbeat(),
		Fresh:     st.fresh(),
		Status:    status,
	}
}

// errNotMember marks a peer that answers as another cluster or node.
var errNotMember = errors.New("not a member of this cluster")

// clusterStatus asks every node of the definition for its status. Nodes
// that do not answer, answer as another cluster or node, or no longer list
// this node, are down.
func (n *Node) clusterStatus(ctx context.Context) *pb.ClusterStatusResponse {
	self := n.serverStatus()
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	resp := &pb.ClusterStatusResponse{
		NodesUp:   map[uint32]*pb.ServerStatusResponse{st.NodeID: self},
		NodesDown: map[uint32]string{},
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for id, host := range st.Nodes {
		if id == st.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, n.rpcTimeout())
			defer cancel()
			var ps peerStatus
			var status pb.ServerStatusResponse
			err := n.call(cctx, host, rpcStatus, struct{}{}, &ps)
			if err == nil && (ps.ClusterID != st.ClusterID || ps.NodeID != id || ps.Nodes[st.NodeID] != n.host) {
				err = errNotMember
			}
			if err == nil {
				err = proto.Unmarshal(ps.Status, &status)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.NodesDown[id] = host
				return
			}
			resp.NodesUp[id] = &status
		}()
	}
	wg.Wait()
	return resp
}
