package kmsmodules

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// addNodeModule is kms_add_node: it adds the node at endpoint (its
// kms_endpoint, as it announces itself) to the cluster of the task host's
// node (CLUSTER:ADDNODE through it). The member must be ready for writes;
// the new node must answer, reached the way the member reaches its peers,
// and be clean: a one-node cluster with no history. It is ok, changing
// nothing, when the member already lists endpoint, unless that entry is a
// dead node's (seen down, while a fresh node answers at endpoint): that
// fails, naming the ID to remove first. Adding a node that holds
// state is refused (a safety refusal): joining needs a wiped data
// directory.
type addNodeModule struct{ m *mods }

func (addNodeModule) Spec() tasks.Spec {
	return tasks.Spec{ClusterLock: true, Args: map[string]tasks.ArgSpec{"endpoint": {Type: tasks.ArgString, Required: true}}}
}

// addition is what kms_add_node found.
type addition struct {
	endpoint string
	memberID uint32 // the node's ID when already a member
	member   bool
}

func (ad addition) data(a *access) map[string]any {
	d := map[string]any{"endpoint": ad.endpoint, "via": a.self}
	if ad.member {
		d["id"] = int(ad.memberID)
	}
	return d
}

func (m addNodeModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, true)
}

func (m addNodeModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.run(ctx, env, false)
}

// run decodes and checks what kms_add_node is asked; with check it reports what
// it would do, else it adds the node.
func (m addNodeModule) run(ctx context.Context, env *tasks.Env, check bool) (tasks.Result, error) {
	a, err := m.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	ad, err := m.plan(ctx, env, a)
	if err != nil {
		return tasks.Result{}, err
	}
	if ad.member {
		return tasks.Result{Msg: ad.memberMsg(a), Data: ad.data(a)}, nil
	}
	if check {
		return tasks.Result{Changed: true, Msg: fmt.Sprintf("would add %s to the cluster through %s (%s)", ad.endpoint, a.host, a.self), Data: ad.data(a)}, nil
	}
	if err := a.client.AddNode(ctx, a.self, ad.endpoint); err != nil {
		if errors.Is(err, kms.ErrNodeAlreadyMember) {
			return tasks.Result{Msg: fmt.Sprintf("already done: %s is a member (%v)", ad.endpoint, err), Data: ad.data(a)}, nil
		}
		return tasks.Result{}, fmt.Errorf("add %s through %s: %w", ad.endpoint, a.host, err)
	}
	v, err := a.selfView(ctx)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("confirm the addition of %s: %w", ad.endpoint, err)
	}
	id, ok := v.Lists(ad.endpoint)
	if !ok {
		return tasks.Result{}, fmt.Errorf("%s accepted %s but does not list it: %v", a.host, ad.endpoint, v.Members)
	}
	ad.member, ad.memberID = true, id
	return tasks.Result{Changed: true, Msg: fmt.Sprintf("added %s as node %d through %s (%s); kms_wait waits until every member agrees", ad.endpoint, id, a.host, a.self),
		Data: ad.data(a)}, nil
}

func (ad addition) memberMsg(a *access) string {
	return fmt.Sprintf("%s is already node %d of the cluster of %s (%s)", ad.endpoint, ad.memberID, a.host, a.self)
}

// staleEntry is an error when endpoint, listed by the task host's node
// (its view self) as node id, is an entry left by a dead node rather than
// a member: the task host's node sees id down, and the node answering at
// endpoint is fresh (a one-node cluster with no history: the machine was
// wiped and started again). That node is not node id and can never become
// it, so "already a member" would leave kms_wait waiting in vain: id must
// be removed first (kms_remove_node), then the node added.
func (a *access) staleEntry(ctx context.Context, self kms.NodeView, endpoint string, id uint32) error {
	if !slices.Contains(self.DownIDs, id) {
		return nil
	}
	nv := a.view(ctx, endpoint)
	if nv.Err != nil || len(nv.Members) != 1 || nv.Commit != 0 {
		return nil
	}
	return fmt.Errorf("%s is listed by %s (%s) as node %d, which it sees down, and the node answering there is fresh (a cluster of its own with no history): "+
		"it is not node %d and cannot rejoin as it; remove node %d first (kms_remove_node id: %d), then add the node", endpoint, a.host, a.self, id, id, id, id)
}

// plan checks that the member is healthy and the new node clean; a node
// holding state is refused.
func (m addNodeModule) plan(ctx context.Context, env *tasks.Env, a *access) (addition, error) {
	s, err := env.Args.String("endpoint")
	if err != nil {
		return addition{}, err
	}
	var ad addition
	if ad.endpoint, err = kms.ParseEndpoint(s); err != nil {
		return addition{}, fmt.Errorf("argument endpoint: %w", err)
	}
	self, err := a.selfView(ctx)
	if err != nil {
		return addition{}, err
	}
	if id, ok := self.Lists(ad.endpoint); ok {
		if err := a.staleEntry(ctx, self, ad.endpoint, id); err != nil {
			return addition{}, err
		}
		ad.member, ad.memberID = true, id
		return ad, nil
	}
	rctx, cancel := context.WithTimeout(ctx, askTimeout)
	err = a.client.Ready(rctx, a.self, true)
	cancel()
	if err != nil {
		return addition{}, fmt.Errorf("%s (%s) is not ready for writes, and adding a node is a write: %w; remove dead nodes first (kms_remove_node) and wait (kms_wait)", a.host, a.self, err)
	}
	nv := a.view(ctx, ad.endpoint)
	if nv.Err != nil {
		return addition{}, fmt.Errorf("the new node %s does not answer (it must be running, with the cluster's HSM key): %w", ad.endpoint, nv.Err)
	}
	if len(nv.Members) != 1 || nv.Commit != 0 {
		return addition{}, &refusal{fmt.Sprintf("refused: %s is not clean: it is node %d of a cluster of %d node(s) with commit %d. "+
			"Joining needs a fresh node: stop it, wipe its data directory (kms_storage_path) and start it again", ad.endpoint, nv.ID, len(nv.Members), nv.Commit)}
	}
	return ad, nil
}
