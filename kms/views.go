package kms

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/kms/pb"
)

// NodeView is one node's own entry of its cluster status: what the node
// says about itself and the cluster it believes it belongs to.
type NodeView struct {
	Endpoint string            // the endpoint asked ("host:port")
	ID       uint32            // the node's own ID
	Role     string            // Leader, Follower or Candidate
	LeaderID int64             // the leader it sees; negative = none
	Commit   uint64            // state changes applied
	Version  string            // server version it reports
	Members  map[uint32]string // its cluster definition: node ID to endpoint
	UpIDs    []uint32          // nodes it sees up (itself included), sorted
	DownIDs  []uint32          // nodes it sees down, sorted
	Up       int               // len(UpIDs)
	Down     int               // len(DownIDs)
	Err      error             // the node did not answer, or answered without an entry for itself
}

// String is one line describing the view.
func (v NodeView) String() string {
	if v.Err != nil {
		return fmt.Sprintf("%-12s error: %v", v.Endpoint, v.Err)
	}
	return fmt.Sprintf("%-12s id=%d role=%-9s leader=%d commit=%d up=%d down=%d",
		v.Endpoint, v.ID, v.Role, v.LeaderID, v.Commit, v.Up, v.Down)
}

// Lists reports whether the view's cluster definition holds endpoint, and
// under which ID.
func (v NodeView) Lists(endpoint string) (uint32, bool) {
	for id, ep := range v.Members {
		if ep == endpoint {
			return id, true
		}
	}
	return 0, false
}

// ViewOf turns a node's cluster status into its own view: the entry among
// the nodes up whose host is endpoint (the node as the cluster knows it).
func ViewOf(endpoint string, st *pb.ClusterStatusResponse) NodeView {
	v := NodeView{Endpoint: endpoint}
	for id := range st.GetNodesUp() {
		v.UpIDs = append(v.UpIDs, id)
	}
	for id := range st.GetNodesDown() {
		v.DownIDs = append(v.DownIDs, id)
	}
	slices.Sort(v.UpIDs)
	slices.Sort(v.DownIDs)
	v.Up, v.Down = len(v.UpIDs), len(v.DownIDs)
	v.Err = fmt.Errorf("no entry for itself (%s) among %d up nodes", endpoint, v.Up)
	for _, s := range st.GetNodesUp() {
		if s.GetHost() == endpoint {
			v.ID, v.Role, v.LeaderID, v.Commit, v.Version, v.Err = s.GetID(), s.GetRole(), s.GetLeaderID(), s.GetCommit(), s.GetVersion(), nil
			v.Members = maps.Clone(s.GetNodes())
		}
	}
	return v
}

// View asks the node at endpoint for its cluster status (CLUSTER:STATUS,
// sent to exactly that node) and returns its own view.
func View(ctx context.Context, c *Client, endpoint string) NodeView {
	st, err := c.ClusterStatus(ctx, endpoint)
	if err != nil {
		return NodeView{Endpoint: endpoint, Err: err}
	}
	return ViewOf(endpoint, st)
}

// Views asks each endpoint, in parallel, for its own view, and returns the
// views in the order of endpoints.
func Views(ctx context.Context, c *Client, endpoints []string) []NodeView {
	out := make([]NodeView, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { out[i] = View(ctx, c, ep) })
	}
	wg.Wait()
	return out
}

// Converged reports, with the reason if not, whether every view answered,
// sees n nodes up and none down, names the same leader (one of the views'
// IDs, with role Leader) and has the same commit.
func Converged(views []NodeView, n int) error {
	var errs []error
	ids := map[uint32]string{}
	leaders := map[int64]bool{}
	commits := map[uint64]bool{}
	for _, v := range views {
		if v.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Endpoint, v.Err))
			continue
		}
		if v.Up != n || v.Down != 0 {
			errs = append(errs, fmt.Errorf("%s sees %d up and %d down, want %d up", v.Endpoint, v.Up, v.Down, n))
		}
		ids[v.ID] = v.Role
		leaders[v.LeaderID] = true
		commits[v.Commit] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(ids) != len(views) {
		errs = append(errs, fmt.Errorf("node IDs not distinct: %v", ids))
	}
	if len(leaders) != 1 {
		errs = append(errs, fmt.Errorf("views disagree on the leader: %v", slices.Sorted(maps.Keys(leaders))))
	} else {
		for l := range leaders {
			if l < 0 || !strings.EqualFold(ids[uint32(l)], "leader") {
				errs = append(errs, fmt.Errorf("leader %d is not a node reporting role Leader (roles %v)", l, ids))
			}
		}
	}
	if len(commits) != 1 {
		errs = append(errs, fmt.Errorf("commit indexes differ: %v", slices.Sorted(maps.Keys(commits))))
	}
	return errors.Join(errs...)
}

// pollInterval is the pause between two rounds of WaitConverged.
const pollInterval = 500 * time.Millisecond

// WaitConverged polls the views of endpoints until Converged holds or ctx
// ends; it returns the last views and, if ctx ended first, why they had not
// converged.
func WaitConverged(ctx context.Context, c *Client, endpoints []string) ([]NodeView, error) {
	n := len(endpoints)
	for {
		views := Views(ctx, c, endpoints)
		err := Converged(views, n)
		if err == nil {
			return views, nil
		}
		select {
		case <-ctx.Done():
			return views, fmt.Errorf("wait for %d converged nodes: %w (last: %w)", n, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// Join adds each of the fresh nodes at endpoints, one at a time, to the
// cluster of the member via (CLUSTER:ADDNODE), waiting after each, at most
// perNode, until the grown cluster converged.
func Join(ctx context.Context, c *Client, via string, endpoints []string, perNode time.Duration) error {
	members := []string{via}
	for _, ep := range endpoints {
		if err := c.AddNode(ctx, via, ep); err != nil {
			return err
		}
		members = append(members, ep)
		wctx, cancel := context.WithTimeout(ctx, perNode)
		_, err := WaitConverged(wctx, c, members)
		cancel()
		if err != nil {
			return fmt.Errorf("after adding %s: %w", ep, err)
		}
	}
	return nil
}
