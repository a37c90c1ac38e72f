package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/tasks"
)

// leaseReleaseTimeout bounds the removal of a run's leases at its end,
// which runs also after Ctrl-C or --timeout ended the run.
const leaseReleaseTimeout = 30 * time.Second

// clusterHosts returns the hosts of cluster (kms_cluster): every host of
// the inventory in it, whatever --limit says (another operator's run may
// use another), then the plays' hosts in it that the inventory does not
// know. A host whose layout cannot be resolved is named in notices.
func clusterHosts(inv *inventory.Inventory, extra map[string]any, plays []tasks.Play, cluster string) (hosts []inventory.Host, notices []string) {
	seen := map[string]bool{}
	if inv != nil {
		for _, name := range inv.Hosts() {
			h, err := inv.Resolve(name, extra)
			if err != nil {
				notices = append(notices, fmt.Sprintf("lease of cluster %s on %s not checked: %v", cluster, name, err))
				continue
			}
			if nodeCluster(h.KMS) == cluster {
				hosts = append(hosts, h)
				seen[name] = true
			}
		}
	}
	for _, p := range plays {
		for _, th := range p.Hosts {
			h, ok := th.Target.(inventory.Host)
			if ok && !seen[th.Name] && nodeCluster(h.KMS) == cluster {
				hosts = append(hosts, h)
				seen[th.Name] = true
			}
		}
	}
	return hosts, notices
}

// nodeCluster is a node's cluster, kms_cluster or its default.
func nodeCluster(n inventory.KMSNode) string {
	if n.Cluster == "" {
		return inventory.DefaultCluster
	}
	return n.Cluster
}

// leaseNode is how the lease reaches h: the run's SSH settings, as the
// become user when the host asks for become (the lease directory is
// root's).
func (d *dialer) leaseNode(h inventory.Host) lease.Node {
	return lease.Node{Name: h.Name, Dir: h.KMS.LeaseDir, Dial: func(ctx context.Context) (lease.Conn, error) {
		c, err := d.dial(ctx, inventoryTarget(h.SSH))
		if err != nil {
			return nil, err
		}
		if h.SSH.Become {
			return become(c, h.SSH.BecomeUser), nil
		}
		return c, nil
	}}
}

// leaseNodes returns the lease nodes of cluster and the notices about the
// hosts left out.
func (r *runner) leaseNodes(plays []tasks.Play, cluster string) ([]lease.Node, []string) {
	hosts, notices := clusterHosts(r.inv, r.s.o.ExtraVars, plays, cluster)
	nodes := make([]lease.Node, len(hosts))
	for i, h := range hosts {
		nodes[i] = r.dialer.leaseNode(h)
	}
	return nodes, notices
}

// acquireLeases takes the lease of every cluster on its nodes, after the
// local locks (see docs/design.md §5.5), waiting up to --lock-wait for a
// holder to finish. Another run's live lease is exit 5, naming it; the
// notices (nodes whose lease could not be checked, leases taken over) are
// warnings. The leases are renewed until releaseLeases.
func (r *runner) acquireLeases(ctx context.Context, plays []tasks.Play, clusters []string) ([]*lease.Lease, error) {
	var out []*lease.Lease
	s := r.s
	h := lease.Record{User: operator(), PID: os.Getpid(), Run: s.log.ID, Command: "kmsctl " + s.command, Since: s.start}
	for _, c := range clusters {
		nodes, notices := r.leaseNodes(plays, c)
		l, err := lease.Acquire(ctx, lease.Options{Cluster: c, Nodes: nodes, Holder: h, Wait: s.o.LockWait})
		var held *lease.HeldError
		switch {
		case errors.As(err, &held) && s.o.LockWait > 0:
			err = exit.With(exit.Locked, fmt.Errorf("%w; waited --lock-wait %s; see `kmsctl lock status`", err, s.o.LockWait))
		case errors.As(err, &held):
			err = exit.With(exit.Locked, fmt.Errorf("%w; wait with --lock-wait DURATION, or see `kmsctl lock status`", err))
		case err != nil && ctx.Err() != nil:
			err = exit.With(exit.Interrupted, fmt.Errorf("interrupted while taking the lease of cluster %s: %w", c, err))
		}
		if err != nil {
			r.releaseLeases(out)
			return nil, err
		}
		for _, n := range append(notices, l.Notices()...) {
			s.logger.Warn().Msg(s.red.String(n))
		}
		l.Keep(ctx, lease.RenewEvery, func(err error) { s.logger.Warn().Err(err).Msg("lease renewal") })
		s.logger.Debug().Str("cluster", c).Int("nodes", len(nodes)).Msg("cluster lease taken")
		out = append(out, l)
	}
	return out, nil
}

// releaseLeases removes the run's leases from the nodes, also after Ctrl-C
// or --timeout ended the run. A lease that cannot be removed (its node
// does not answer) expires by itself: a warning says when.
func (r *runner) releaseLeases(leases []*lease.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), leaseReleaseTimeout)
	defer cancel()
	for _, l := range leases {
		if err := l.Release(ctx); err != nil {
			r.s.logger.Warn().Err(err).Msg("lease not removed")
		}
	}
}
