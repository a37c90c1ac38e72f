package kms_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
)

func TestConverged(t *testing.T) {
	ok := []kms.NodeView{
		{Endpoint: "kms1:7373", ID: 0, Role: "Leader", LeaderID: 0, Commit: 3, Up: 3},
		{Endpoint: "kms2:7373", ID: 1, Role: "Follower", LeaderID: 0, Commit: 3, Up: 3},
		{Endpoint: "kms3:7373", ID: 2, Role: "Follower", LeaderID: 0, Commit: 3, Up: 3},
	}
	if err := kms.Converged(ok, 3); err != nil {
		t.Fatalf("converged views: %v", err)
	}
	cases := map[string]struct {
		change func(v []kms.NodeView)
		want   string
	}{
		"one node down":     {func(v []kms.NodeView) { v[2].Up, v[2].Down = 2, 1 }, "kms3:7373 sees 2 up and 1 down"},
		"no answer":         {func(v []kms.NodeView) { v[1].Err = errors.New("refused") }, "kms2:7373: refused"},
		"leader disagrees":  {func(v []kms.NodeView) { v[1].LeaderID = 1 }, "disagree on the leader"},
		"no leader":         {func(v []kms.NodeView) { v[0].LeaderID, v[1].LeaderID, v[2].LeaderID = -1, -1, -1 }, "leader -1 is not"},
		"leader not leader": {func(v []kms.NodeView) { v[0].Role = "Candidate" }, "leader 0 is not"},
		"commits differ":    {func(v []kms.NodeView) { v[2].Commit = 2 }, "commit indexes differ"},
		"same ids":          {func(v []kms.NodeView) { v[2].ID = 1 }, "not distinct"},
	}
	for name, c := range cases {
		v := append([]kms.NodeView(nil), ok...)
		c.change(v)
		err := kms.Converged(v, 3)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

func TestJoinAndViewsAgainstSimulator(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	nodes := []*kmsim.Node{e.start(hsmKey(5)), e.start(hsmKey(5)), e.start(hsmKey(5))}
	c := e.client(e.admin, nodes...)
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.Host())
	}
	for _, v := range kms.Views(ctx, c, eps) {
		if v.Err != nil || v.ID != 0 || v.Up != 1 || len(v.Members) != 1 {
			t.Fatalf("before joining, want every node alone as node 0: %s %v", v, v.Members)
		}
	}
	if err := kms.Join(ctx, c, eps[0], eps[1:], 20*time.Second); err != nil {
		t.Fatal(err)
	}
	views, err := kms.WaitConverged(ctx, c, eps)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if len(v.Members) != 3 || v.Version == "" {
			t.Errorf("%s: members %v, version %q", v, v.Members, v.Version)
		}
		for _, ep := range eps {
			if _, ok := v.Lists(ep); !ok {
				t.Errorf("%s does not list %s: %v", v.Endpoint, ep, v.Members)
			}
		}
	}
	nodes[2].Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := kms.WaitConverged(wctx, c, eps[:2]); err == nil || !strings.Contains(err.Error(), "1 down") {
		t.Fatalf("with a node down: %v, want a timeout naming the node seen down", err)
	}
}
