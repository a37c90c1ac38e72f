package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

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

// newLockCommand builds `kmsctl lock status`.
func newLockCommand(e env) *cli.Command {
	return &cli.Command{
		Name:   "lock",
		Usage:  "show the local cluster locks",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "show, per cluster, whether a run on this machine holds its lock, and which",
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return exit.Usagef("lock status: takes no argument, got %d", c.NArg())
					}
					return lockStatus(e.stdout, e.stateDir, c.String("output") == "json")
				},
			},
		},
	}
}

// lockStatus prints every cluster that has a lock file: held (by whom) or
// free.
func lockStatus(w io.Writer, stateDir string, asJSON bool) error {
	states, err := lock.List(locksDir(stateDir))
	if err != nil {
		return err
	}
	if asJSON {
		if states == nil {
			states = []lock.State{}
		}
		return json.NewEncoder(w).Encode(states)
	}
	if len(states) == 0 {
		_, err := fmt.Fprintln(w, "no cluster has been locked on this machine")
		return err
	}
	for _, st := range states {
		if _, err := fmt.Fprintln(w, describeLock(st)); err != nil {
			return err
		}
	}
	return nil
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
