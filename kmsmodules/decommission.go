package kmsmodules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// decommissionConfirm bounds how long kms_remove_node (mode decommission)
// waits for the task host's node to stop listing the removed member after
// CLUSTER:REMOVENODE was accepted.
const decommissionConfirm = 30 * time.Second

// decommission is kms_remove_node with mode decommission: CLUSTER:REMOVENODE
// of a healthy member through the task host's node (see removeNodeModule).
func (m removeNodeModule) decommission(ctx context.Context, env *tasks.Env, a *access, check bool) (tasks.Result, error) {
	self, err := a.selfView(ctx)
	if err != nil {
		return tasks.Result{}, err
	}
	var rm removal
	if env.Args.Has("id") {
		n, err := env.Args.Int("id", 0)
		if err != nil {
			return tasks.Result{}, err
		}
		if n < 0 || n > math.MaxUint32 {
			return tasks.Result{}, fmt.Errorf("argument id: %d is not a node ID (0 to %d)", n, uint32(math.MaxUint32))
		}
		rm.id = uint32(n)
		rm.endpoint = self.Members[rm.id]
		rm.gone = rm.endpoint == ""
	} else {
		s, err := env.Args.String("endpoint")
		if err != nil {
			return tasks.Result{}, err
		}
		if rm.endpoint, err = kms.ParseEndpoint(s); err != nil {
			return tasks.Result{}, fmt.Errorf("argument endpoint: %w", err)
		}
		id, ok := self.Lists(rm.endpoint)
		rm.id, rm.gone, rm.unnamed = id, !ok, !ok
	}
	if rm.gone {
		return tasks.Result{Msg: rm.goneMsg(a), Data: rm.data(a)}, nil
	}
	refuse := func(format string, args ...any) (tasks.Result, error) {
		return tasks.Result{}, &refusal{"refused: " + fmt.Sprintf(format, args...) + "; nothing was changed"}
	}
	switch {
	case rm.id == self.ID:
		// This also keeps the last member: any other listed node means
		// there are at least two.
		return refuse("node %d (%s) is %s's own node; decommission it through another member (the last member is never removed)", rm.id, rm.endpoint, a.host)
	case len(self.DownIDs) > 0:
		var down []string
		for _, id := range self.DownIDs {
			down = append(down, fmt.Sprintf("%d (%s)", id, self.Members[id]))
		}
		if slices.Contains(self.DownIDs, rm.id) {
			return refuse("node %d (%s) is down as seen by %s: decommissioning removes a healthy member; a dead node is `kmsctl recover node`'s", rm.id, rm.endpoint, a.host)
		}
		return refuse("%s sees %s down: CLUSTER:REMOVENODE is a write and needs every member up; recover the dead node first (kmsctl status)",
			a.host, strings.Join(down, ", "))
	}
	pctx, cancel := context.WithTimeout(ctx, targetProbe)
	tv := kms.View(pctx, a.client, rm.endpoint)
	cancel()
	if tv.Err != nil || tv.ID != rm.id || tv.Members[self.ID] != a.self {
		why := "it answers as another node"
		if tv.Err != nil {
			why = "it does not answer: " + tv.Err.Error()
		}
		return refuse("node %d (%s) is not a healthy member (%s); decommissioning removes a member that takes part in its removal", rm.id, rm.endpoint, why)
	}
	if check {
		return tasks.Result{Changed: true, Msg: "would decommission " + rm.describe(a) + " (CLUSTER:REMOVENODE)", Data: rm.data(a)}, nil
	}
	if err := a.client.RemoveNode(ctx, a.self, rm.endpoint, true); err != nil {
		if !errors.Is(err, kms.ErrNodeNotFound) {
			return tasks.Result{}, fmt.Errorf("decommission node %d through %s: %w", rm.id, a.host, err)
		}
	}
	deadline := time.Now().Add(decommissionConfirm)
	for {
		v, err := a.selfView(ctx)
		if err == nil {
			if _, listed := v.Members[rm.id]; !listed {
				break
			}
		}
		if time.Now().After(deadline) {
			return tasks.Result{}, fmt.Errorf("%s accepted the removal of node %d but still lists it after %s", a.host, rm.id, decommissionConfirm)
		}
		select {
		case <-ctx.Done():
			return tasks.Result{}, fmt.Errorf("confirm the removal of node %d: %w", rm.id, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return tasks.Result{Changed: true, Msg: "decommissioned " + rm.describe(a), Data: rm.data(a)}, nil
}
