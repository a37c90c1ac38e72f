package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/tasks"
)

// leaseModule is kms_lease: it reads the host's lease of its cluster
// (kms_lease_dir/lease-kms_cluster.json) and changes nothing. status,
// backup and recover node's preflight read the leases with it in the
// play they run anyway, over the connections they have.
type leaseModule struct{}

// Spec: no arguments; read-only.
func (leaseModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{}, ReadOnly: true}
}

// Plan reads the lease, as Apply does.
func (m leaseModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

// Apply reads the lease: Data has path, exists and content (the file, no
// secret in it); a file that cannot be read fails the task.
func (leaseModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	dir, _ := env.Vars[inventory.VarLeaseDir].(string)
	cluster, _ := env.Vars[inventory.VarCluster].(string)
	if cluster == "" {
		cluster = inventory.DefaultCluster
	}
	p := lease.Path(dir, cluster)
	var buf bytes.Buffer
	err := env.Conn.Download(ctx, p, &buf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tasks.Result{Msg: "no lease", Data: map[string]any{"path": p, "exists": false}}, nil
	case err != nil:
		return tasks.Result{}, fmt.Errorf("read the lease %s: %w", p, err)
	}
	return tasks.Result{Msg: "lease read", Data: map[string]any{"path": p, "exists": true, "content": buf.String()}}, nil
}

// taskLease is the name of the task that reads a node's lease in the
// plays of status, backup and recover node's preflight.
const taskLease = "lease"

// leaseTask reads the host's lease (kms_lease), never failing the play.
func leaseTask() tasks.Task {
	no := false
	return tasks.Task{Name: taskLease, Module: "kms_lease", Args: map[string]any{}, Become: &no, IgnoreErrors: true}
}

// heldLeases returns the leases the gathered kms_lease results show held
// (live, or a file that is not a lease) at now, node by node.
func (g *gathered) heldLeases(nodes []inventory.KMSNode, now time.Time) []lease.NodeLease {
	out := []lease.NodeLease{}
	for _, n := range nodes {
		r, ok := g.lookup(n.Host, taskLease)
		if !ok || r.err != nil || r.res.Failed {
			continue
		}
		content, ok := r.res.Data["content"].(string)
		if !ok {
			continue
		}
		p, _ := r.res.Data["path"].(string)
		if nl := lease.Decode(n.Host, p, []byte(content), now); nl.Held() {
			out = append(out, nl)
		}
	}
	return out
}

// lookup returns what host's task registered, if it ran.
func (g *gathered) lookup(host, task string) (gatheredResult, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.results[host][task]
	return r, ok
}

// leasesOrNone is leases, [] for none (JSON).
func leasesOrNone(leases []lease.NodeLease) []lease.NodeLease {
	if leases == nil {
		return []lease.NodeLease{}
	}
	return leases
}

// leasedLine is the line that says a run holds a node's lease.
func leasedLine(nl lease.NodeLease) string {
	if nl.Garbage != "" {
		return "LEASED: " + nl.Describe()
	}
	return fmt.Sprintf("LEASED: cluster %s is leased on %s by %s", nl.Lease.Cluster, nl.Node, nl.Lease)
}
