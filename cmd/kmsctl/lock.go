package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/tasks"
)

// locksDir is the directory of the cluster locks under the state directory.
func locksDir(stateDir string) string { return filepath.Join(stateDir, "locks") }

// lockClusters returns the clusters (kms_cluster of their hosts, sorted)
// of the plays that use a module whose Spec asks for the cluster lock in
// a task that really runs (not in check mode); none when no play does.
func lockClusters(reg *tasks.Registry, plays []tasks.Play, check bool) []string {
	seen := map[string]bool{}
	for _, p := range plays {
		if !usesClusterLock(reg, p, check) {
			continue
		}
		for _, h := range p.Hosts {
			c := inventory.DefaultCluster
			if ih, ok := h.Target.(inventory.Host); ok && ih.KMS.Cluster != "" {
				c = ih.KMS.Cluster
			}
			seen[c] = true
		}
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// usesClusterLock reports whether a task or handler of p uses a module
// that takes the cluster lock, outside check mode.
func usesClusterLock(reg *tasks.Registry, p tasks.Play, check bool) bool {
	for _, list := range [][]tasks.Task{p.Tasks, p.Handlers} {
		for _, t := range list {
			m, ok := reg.Lookup(t.Module)
			if !ok || !m.Spec().ClusterLock {
				continue
			}
			taskCheck := check
			if t.CheckMode != nil {
				taskCheck = *t.CheckMode
			}
			if !taskCheck {
				return true
			}
		}
	}
	return false
}

// acquireLocks takes the locks of clusters for the session's run, waiting
// up to --lock-wait. A lock held by another run is exit 5, naming it.
func (s *session) acquireLocks(ctx context.Context, clusters []string) (*lock.Set, error) {
	h := lock.Holder{User: operator(), PID: os.Getpid(), Run: s.log.ID, Command: "kmsctl " + s.command, Since: s.start}
	set, err := lock.Acquire(ctx, locksDir(s.e.stateDir), clusters, h, s.o.LockWait)
	var held *lock.HeldError
	switch {
	case errors.As(err, &held) && s.o.LockWait > 0:
		return nil, exit.With(exit.Locked, fmt.Errorf("%w; waited --lock-wait %s; see `kmsctl lock status`", err, s.o.LockWait))
	case errors.As(err, &held):
		return nil, exit.With(exit.Locked, fmt.Errorf("%w; wait with --lock-wait DURATION, or see `kmsctl lock status`", err))
	case errors.Is(err, context.Canceled):
		return nil, exit.With(exit.Interrupted, fmt.Errorf("interrupted while waiting for a cluster lock: %w", err))
	case err != nil:
		return nil, err
	}
	s.logger.Debug().Strs("clusters", set.Clusters()).Msg("cluster locks taken")
	return set, nil
}

// lockJournal is the engine's journal hook of a run that holds cluster
// locks: it journals the step, then names it in the holder records, so
// that a second run says which step the holder is at.
type lockJournal struct {
	tasks.Journal
	locks  *lock.Set
	leases []*lease.Lease
}

// Intent journals step and records it as the step in flight.
func (j lockJournal) Intent(step tasks.Step) error {
	if err := j.Journal.Intent(step); err != nil {
		return err
	}
	where := step.Host
	if step.Pos != "" {
		where += ", " + step.Pos
	}
	inFlight := fmt.Sprintf("%q on %s", step.Task, where)
	for _, l := range j.leases {
		l.SetStep(inFlight)
	}
	return j.locks.SetStep(inFlight)
}

// newLockCommand builds `kmsctl lock status|release`.
func newLockCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:   "lock",
		Usage:  "show the cluster locks (this machine's) and leases (on the nodes), release stale ones",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			{
				Name: "status",
				Usage: "show, per cluster, whether a run on this machine holds its lock, and which; with an inventory, " +
					"the lease each node of --cluster GROUP holds (a run on any bastion)",
				Flags: []cli.Flag{clusterFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return exit.Usagef("lock status: takes no argument, got %d", c.NArg())
					}
					o, err := opts(c)
					if err != nil {
						return err
					}
					return lockStatus(c.Context, e, o, c.String("cluster"), c.IsSet("cluster"))
				},
			},
			{
				Name: "release",
				Usage: "remove the stale leases of --cluster GROUP from its nodes: expired ones, files that are not leases, " +
					"and leases of runs of this machine whose process is gone; never a live run's (asks first; --yes)",
				Flags: []cli.Flag{clusterFlag(), &cli.BoolFlag{Name: "yes", Usage: "remove without asking (for scripts); it never lifts a refusal"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return exit.Usagef("lock release: takes no argument, got %d", c.NArg())
					}
					o, err := opts(c)
					if err != nil {
						return err
					}
					return lockRelease(c.Context, e, o, c.String("cluster"), c.Bool("yes"))
				},
			},
		},
	}
}

// clusterLock is what `lock status` shows of one cluster: the local lock
// and, with an inventory, the lease on each node.
type clusterLock struct {
	lock.State
	Leases []lease.NodeLease `json:"leases,omitempty"`
}

// lockStatus prints every cluster that has a lock file (held, by whom, or
// free) and, when an inventory is found, the lease of every node of
// group. A group that is not in the inventory is an error when named.
func lockStatus(ctx context.Context, e env, o options, group string, explicit bool) error {
	states, err := lock.List(locksDir(e.stateDir))
	if err != nil {
		return err
	}
	out := make([]clusterLock, len(states))
	for i, st := range states {
		out[i] = clusterLock{State: st}
	}
	surveys, err := surveyLeases(ctx, e, o, group, explicit)
	if err != nil {
		return err
	}
	for _, sv := range surveys {
		i := slices.IndexFunc(out, func(c clusterLock) bool { return c.Cluster == sv.cluster })
		if i < 0 {
			st, err := lock.Status(locksDir(e.stateDir), sv.cluster)
			if err != nil {
				return err
			}
			out = append(out, clusterLock{State: st})
			i = len(out) - 1
		}
		out[i].Leases = sv.leases
	}
	if o.Output == "json" {
		return json.NewEncoder(e.stdout).Encode(out)
	}
	if len(out) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no cluster has been locked on this machine")
		return err
	}
	for _, c := range out {
		if _, err := fmt.Fprintln(e.stdout, describeLock(c.State)); err != nil {
			return err
		}
		if c.Leases != nil {
			fmt.Fprintf(e.stdout, "cluster %s: leases on the nodes:\n", c.Cluster)
			for _, nl := range c.Leases {
				fmt.Fprintf(e.stdout, "  %s\n", nl.Describe())
			}
		}
	}
	return nil
}

// leaseSurvey is the leases of one cluster, node by node.
type leaseSurvey struct {
	cluster string
	nodes   []lease.Node
	leases  []lease.NodeLease
}

// surveyLeases reads the lease of every node of group, per cluster
// (kms_cluster), when an inventory is found; none without one, or when
// the default group is not in it.
func surveyLeases(ctx context.Context, e env, o options, group string, explicit bool) ([]leaseSurvey, error) {
	inv, err := loadInventory(o, !explicit)
	if err != nil || inv == nil {
		return nil, err
	}
	if !explicit && !slices.Contains(inv.Groups(), group) {
		return nil, nil
	}
	_, nodes, err := statusHosts(inv, o, group)
	if err != nil {
		return nil, err
	}
	kh, err := stateKnownHosts(e)
	if err != nil {
		return nil, err
	}
	d := &dialer{o: o, inv: inv, stateKnownHosts: kh, logger: zerolog.Nop(), red: newRedactor(e)}
	var out []leaseSurvey
	for _, n := range nodes {
		h, err := inv.Resolve(n.Host, o.ExtraVars)
		if err != nil {
			return nil, fmt.Errorf("resolve host %s: %w", n.Host, err)
		}
		c := nodeCluster(n)
		i := slices.IndexFunc(out, func(s leaseSurvey) bool { return s.cluster == c })
		if i < 0 {
			out = append(out, leaseSurvey{cluster: c})
			i = len(out) - 1
		}
		out[i].nodes = append(out[i].nodes, d.leaseNode(h))
	}
	for i := range out {
		out[i].leases = lease.Survey(ctx, out[i].cluster, out[i].nodes, time.Now())
	}
	return out, nil
}

// lockRelease removes the stale leases of group's clusters from their
// nodes, after asking (or with yes). It refuses (exit 4, nothing removed
// anywhere) while a run may be alive: a local lock of the cluster held, a
// live lease of a run on another machine (kmsctl cannot tell from here
// whether it lives; it expires by itself), or of a run on this machine
// whose process is alive. --yes skips the question only.
func lockRelease(ctx context.Context, e env, o options, group string, yes bool) error {
	surveys, err := surveyLeases(ctx, e, o, group, true)
	if err != nil {
		return err
	}
	type removal struct {
		node lease.Node
		nl   lease.NodeLease
		why  string
	}
	var todo []removal
	var refusals []string
	for _, sv := range surveys {
		st, err := lock.Status(locksDir(e.stateDir), sv.cluster)
		if err != nil {
			return err
		}
		if st.Held {
			holder := "a run that has not written its holder record yet"
			if st.Holder != nil {
				holder = st.Holder.String()
			}
			refusals = append(refusals, fmt.Sprintf("cluster %s is locked on this machine by %s, which is alive: let it finish, or stop it", sv.cluster, holder))
			continue
		}
		for i, nl := range sv.leases {
			why, refusal := staleLease(nl)
			switch {
			case refusal != "":
				refusals = append(refusals, fmt.Sprintf("cluster %s: %s", sv.cluster, refusal))
			case why != "":
				todo = append(todo, removal{sv.nodes[i], nl, why})
			}
		}
	}
	if len(refusals) > 0 {
		return exit.With(exit.Refused, fmt.Errorf("lock release: refused, nothing was removed: %s", strings.Join(refusals, "; ")))
	}
	if len(todo) == 0 {
		fmt.Fprintf(e.stdout, "no stale lease on the nodes of group %s; nothing to release\n", group)
		return nil
	}
	for _, r := range todo {
		fmt.Fprintf(e.stdout, "remove %s on %s: %s\n", r.nl.Path, r.node.Name, r.why)
	}
	if !yes {
		if !e.terminal || e.stdin == nil || o.Output == "json" {
			return exit.Usagef("lock release removes leases: confirm on a terminal, or pass --yes (nothing was removed)")
		}
		fmt.Fprint(e.stdout, "Remove them now? [y/N] ")
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "nothing was removed")
			return exit.Silent{Code: exit.Refused}
		}
	}
	var errs []error
	for _, r := range todo {
		if err := lease.RemoveIfUnchanged(ctx, r.node, r.nl); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(e.stdout, "removed %s on %s\n", r.nl.Path, r.node.Name)
	}
	if len(errs) > 0 {
		return exit.With(exit.HostFailed, errors.Join(errs...))
	}
	return nil
}

// staleLease says why a node's lease may be removed (why), or why it may
// not (refusal); both "" when there is nothing to remove.
func staleLease(nl lease.NodeLease) (why, refusal string) {
	switch {
	case nl.Err != "" || (nl.Lease == nil && nl.Garbage == ""):
		return "", ""
	case nl.Garbage != "":
		return "it is not a kmsctl lease (" + nl.Garbage + ")", ""
	case nl.Expired:
		return "expired lease of " + nl.Lease.String(), ""
	}
	_, host, _ := strings.Cut(nl.Lease.User, "@")
	if me, err := os.Hostname(); err != nil || host != me {
		return "", fmt.Sprintf("%s is leased by %s, a run on another machine that kmsctl cannot see from here: ask its operator, "+
			"or wait until it expires at %s UTC if it was killed", nl.Node, nl.Lease, nl.Lease.Expires.UTC().Format("15:04:05"))
	}
	if processAlive(nl.Lease.PID) {
		return "", fmt.Sprintf("%s is leased by %s, whose process %d is alive on this machine: let it finish, or stop it", nl.Node, nl.Lease, nl.Lease.PID)
	}
	return fmt.Sprintf("lease of %s, whose process is gone from this machine", nl.Lease), ""
}

// processAlive reports whether a process pid exists on this machine (one
// of another user counts).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// describeLock says in one line whether a cluster is locked, and by whom.
func describeLock(st lock.State) string {
	switch {
	case !st.Held:
		return fmt.Sprintf("cluster %s: free", st.Cluster)
	case st.Holder == nil:
		return fmt.Sprintf("cluster %s: locked by a run that has not written its holder record yet", st.Cluster)
	}
	return fmt.Sprintf("cluster %s: locked by %s", st.Cluster, st.Holder)
}
