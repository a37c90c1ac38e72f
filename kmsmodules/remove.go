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

// removeNodeModule is kms_remove_node: it removes exactly one node ID from
// the cluster definition of the task host's node (the named survivor) by
// CLUSTER:EDIT, the recovery primitive for a dead node. The node is named
// by id or by endpoint (as the survivor's definition lists it).
//
// It refuses (a safety refusal, changing nothing) when the survivor or any
// other member that answers sees the node up, when the node itself answers
// as that ID of this cluster, and when the ID is the survivor's own. It is
// ok, changing nothing, when the ID is not (or no longer) in the survivor's
// definition: an edit that finds the ID gone because an earlier edit
// already propagated is already done.
//
// With mode decommission (never the default, and not used by the
// recover-node playbook) it is the opposite case: it removes a healthy
// member for good (`kmsctl scale remove`), by CLUSTER:REMOVENODE through the
// task host's node, a write with quorum in which the removed node takes
// part, with DeleteClusterOnHost so that the removed node drops its
// cluster state instead of keeping a definition that no longer describes
// it. It refuses (changing nothing) when the node is not seen up by the
// task host's node or does not answer as that member itself (a dead node
// is recover node's case), when it is the task host's own node (send it to
// another member), when it is the last member, and when a member is down
// (the write would fail half-way: every member must be up). It confirms
// that the task host's node no longer lists it.
type removeNodeModule struct{ m *mods }

// Modes of kms_remove_node.
const (
	removeDead         = "dead"         // CLUSTER:EDIT of a dead node's ID (the default)
	removeDecommission = "decommission" // CLUSTER:REMOVENODE of a healthy member
)

func (removeNodeModule) Spec() tasks.Spec {
	return tasks.Spec{
		ClusterLock: true,
		Args: map[string]tasks.ArgSpec{
			"id":       {Type: tasks.ArgInt},
			"endpoint": {Type: tasks.ArgString},
			"mode":     {Type: tasks.ArgString},
		},
		ExactlyOneOf: [][]string{{"id", "endpoint"}},
	}
}

// targetProbe bounds the question to the node being removed: it is
// expected dead, and a dead host may swallow packets.
const targetProbe = 5 * time.Second

// removal is what kms_remove_node found.
type removal struct {
	id       uint32
	endpoint string // the node's endpoint in the survivor's definition
	gone     bool   // the ID (or endpoint) is not in the survivor's definition
	unnamed  bool   // named by an endpoint the definition does not list: no ID
	silent   []string
}

func (rm removal) data(a *access) map[string]any {
	d := map[string]any{"endpoint": rm.endpoint, "survivor": a.self}
	if !rm.unnamed {
		d["id"] = int(rm.id)
	}
	return d
}

// CheckArgs checks a known mode before any host is touched.
func (removeNodeModule) CheckArgs(args tasks.Args) error {
	return checkMode(args)
}

func checkMode(args tasks.Args) error {
	if !args.Has("mode") || !args.Literal("mode") {
		return nil
	}
	mode, err := args.String("mode")
	if err != nil {
		return err
	}
	if mode != removeDead && mode != removeDecommission {
		return fmt.Errorf("argument mode: %q: want %s (the default) or %s", mode, removeDead, removeDecommission)
	}
	return nil
}

func (m removeNodeModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, true)
}

func (m removeNodeModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, false)
}

// run decodes and checks what kms_remove_node is asked; with check it reports what
// it would do, else it removes the node.
func (m removeNodeModule) run(ctx context.Context, env *tasks.Env, check bool) (tasks.Result, error) {
	if err := checkMode(env.Args); err != nil {
		return tasks.Result{}, err
	}
	a, err := m.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	if mode, _ := env.Args.String("mode"); env.Args.Has("mode") && mode == removeDecommission {
		return m.decommission(ctx, env, a, check)
	}
	rm, err := m.plan(ctx, env, a)
	if err != nil {
		return tasks.Result{}, err
	}
	if rm.gone {
		return tasks.Result{Msg: rm.goneMsg(a), Data: rm.data(a)}, nil
	}
	if check {
		return tasks.Result{Changed: true, Msg: "would remove " + rm.describe(a), Data: rm.data(a)}, nil
	}
	return m.edit(ctx, a, rm)
}

// edit sends the one CLUSTER:EDIT and confirms it. An edit that finds the ID
// gone, because an earlier edit propagated meanwhile, is already done.
func (m removeNodeModule) edit(ctx context.Context, a *access, rm removal) (tasks.Result, error) {
	if err := a.client.EditCluster(ctx, a.self, rm.id); err != nil {
		if !errors.Is(err, kms.ErrNodeNotFound) {
			return tasks.Result{}, fmt.Errorf("remove node %d from %s's definition: %w", rm.id, a.host, err)
		}
		// Gone between the plan and the edit: another edit propagated.
		v, verr := a.selfView(ctx)
		if verr != nil {
			return tasks.Result{}, fmt.Errorf("remove node %d: %s answered %w, and then: %w", rm.id, a.host, err, verr)
		}
		if _, listed := v.Members[rm.id]; listed {
			return tasks.Result{}, fmt.Errorf("remove node %d from %s's definition: %w, yet it still lists it", rm.id, a.host, err)
		}
		return tasks.Result{Msg: "already done: " + rm.goneMsg(a), Data: rm.data(a)}, nil
	}
	v, err := a.selfView(ctx)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("confirm the removal of node %d: %w", rm.id, err)
	}
	if _, listed := v.Members[rm.id]; listed {
		return tasks.Result{}, fmt.Errorf("%s accepted the removal of node %d but still lists it: %v", a.host, rm.id, v.Members)
	}
	return tasks.Result{Changed: true, Msg: "removed " + rm.describe(a), Data: rm.data(a)}, nil
}

func (rm removal) describe(a *access) string {
	s := fmt.Sprintf("node %d (%s) from the cluster definition of %s (%s)", rm.id, rm.endpoint, a.host, a.self)
	if len(rm.silent) > 0 {
		s += fmt.Sprintf("; members that did not answer (their view not checked): %s", strings.Join(rm.silent, ", "))
	}
	return s
}

func (rm removal) goneMsg(a *access) string {
	if rm.unnamed {
		return fmt.Sprintf("%s is not in the cluster definition of %s (%s)", rm.endpoint, a.host, a.self)
	}
	return fmt.Sprintf("node %d is not in the cluster definition of %s (%s)", rm.id, a.host, a.self)
}

// plan finds the ID to remove in the survivor's definition and applies the
// safety rules; a refusal is returned as an error.
func (m removeNodeModule) plan(ctx context.Context, env *tasks.Env, a *access) (removal, error) {
	self, err := a.selfView(ctx)
	if err != nil {
		return removal{}, err
	}
	var rm removal
	if env.Args.Has("id") {
		n, err := env.Args.Int("id", 0)
		if err != nil {
			return removal{}, err
		}
		if n < 0 || n > math.MaxUint32 {
			return removal{}, fmt.Errorf("argument id: %d is not a node ID (0 to %d)", n, uint32(math.MaxUint32))
		}
		rm.id = uint32(n)
		rm.endpoint = self.Members[rm.id]
	} else {
		s, err := env.Args.String("endpoint")
		if err != nil {
			return removal{}, err
		}
		if rm.endpoint, err = kms.ParseEndpoint(s); err != nil {
			return removal{}, fmt.Errorf("argument endpoint: %w", err)
		}
		id, ok := self.Lists(rm.endpoint)
		if !ok {
			return removal{endpoint: rm.endpoint, gone: true, unnamed: true}, nil
		}
		rm.id = id
	}
	if _, ok := self.Members[rm.id]; !ok {
		rm.gone = true
		return rm, nil
	}
	if rm.id == self.ID {
		return removal{}, &refusal{fmt.Sprintf("refused: node %d is %s's own ID; send the edit to another survivor (a node never removes itself with CLUSTER:EDIT)", rm.id, a.host)}
	}
	var seenUp []string
	if slices.Contains(self.UpIDs, rm.id) {
		seenUp = append(seenUp, fmt.Sprintf("%s (%s)", a.host, a.self))
	}
	var others []string
	for id, ep := range self.Members {
		if id != rm.id && id != self.ID {
			others = append(others, ep)
		}
	}
	slices.Sort(others)
	for _, v := range a.views(ctx, others) {
		switch {
		case v.Err != nil:
			rm.silent = append(rm.silent, v.Endpoint)
		case slices.Contains(v.UpIDs, rm.id):
			seenUp = append(seenUp, v.Endpoint)
		}
	}
	if len(seenUp) > 0 {
		return removal{}, &refusal{fmt.Sprintf("refused: node %d (%s) is up as seen by %s; removing a live node's ID splits the cluster. "+
			"Remove only a node that every survivor sees down (stop its service first if it must go)", rm.id, rm.endpoint, strings.Join(seenUp, ", "))}
	}
	pctx, cancel := context.WithTimeout(ctx, targetProbe)
	tv := kms.View(pctx, a.client, rm.endpoint)
	cancel()
	if tv.Err == nil && tv.ID == rm.id && tv.Members[self.ID] == a.self {
		return removal{}, &refusal{fmt.Sprintf("refused: node %d answers at %s as node %d of this cluster; it is not dead. "+
			"Stop its service first if it must go", rm.id, rm.endpoint, rm.id)}
	}
	return rm, nil
}
