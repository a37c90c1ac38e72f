package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/tasks"
)

// taskBackup is the task of backup's second play.
const taskBackup = "snapshot and manifest"

// newBackupCommand builds `kmsctl backup`.
func newBackupCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "take a snapshot and its manifest from a healthy node of a Key Manager cluster (quiet on success, for cron)",
		Flags: []cli.Flag{
			clusterFlag(),
			&cli.StringFlag{Name: "dir", Usage: "`DIR`ectory of the backups (default: backups/GROUP in kmsctl's state directory)"},
			&cli.IntFlag{Name: "keep", Usage: "keep the `N` newest backups of the directory (and always the newest good one); 0 keeps all"},
			metricsFileFlag(),
		},
		Action: func(c *cli.Context) error {
			o, err := clusterOptions(c, opts, "backup")
			if err != nil {
				return err
			}
			if c.Int("keep") < 0 {
				return exit.Usagef("--keep %d: want 0 (keep all) or more", c.Int("keep"))
			}
			if o.Check {
				return exit.Usagef("backup: --check is not supported (a backup changes nothing on the cluster but its canary key)")
			}
			bo := backupOptions{Group: c.String("cluster"), Dir: c.String("dir"), Keep: c.Int("keep"), MetricsFile: c.String("metrics-file")}
			if err := checkMetricsFile(bo.MetricsFile); err != nil {
				return err
			}
			if bo.Dir == "" {
				bo.Dir = backupDir(e, bo.Group)
			}
			start := e.clock()
			err = backup(c.Context, e, o, bo)
			if bo.MetricsFile == "" {
				return err
			}
			return withMetricsError(e, err, writeBackupMetrics(bo.MetricsFile, bo.Group, bo.Dir, start, e.clock(), err))
		},
	}
}

// backupOptions are backup's own flags.
type backupOptions struct {
	Group string // --cluster
	Dir   string // --dir; "" is backupDir
	Keep  int    // --keep; 0 keeps all
	// MetricsFile is --metrics-file: where the run's Prometheus metrics
	// go ("" none).
	MetricsFile string
}

// backupDir is the default directory of a cluster's backups.
func backupDir(e env, group string) string {
	return filepath.Join(e.stateDir, "backups", group)
}

// backup asks every node of the group at once for its status (one
// read-only play), takes the snapshot and manifest (kms_backup) from the
// first healthy node that gives one (ready, with a leader; ready for
// writes first), then applies --keep. It prints nothing on success unless
// -v; --output json prints one backup event. It needs no lock: it changes
// nothing on the cluster but the canary key it creates once; a lock held
// on its cluster is shown (-v, JSON).
func backup(ctx context.Context, e env, o options, bo backupOptions) (err error) {
	inv, hosts, nodes, err := loadCluster(e, o, bo.Group)
	if err != nil {
		return err
	}
	dir := bo.Dir
	if dir == "" {
		dir = backupDir(e, bo.Group)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exit.With(exit.HostFailed, fmt.Errorf("create the backup directory: %w", err))
	}
	// A name of its own, also when another backup runs in the same second.
	dest, release, err := kmsmodules.ReserveBackup(dir, e.clock())
	if err != nil {
		return exit.With(exit.HostFailed, err)
	}
	defer func() {
		if rerr := release(); rerr != nil && err == nil {
			err = exit.With(exit.HostFailed, rerr)
		}
	}()

	g := newGathered()
	base := newRegistry(e, o)
	reg, err := g.registry(base)
	if err != nil {
		return err
	}
	kb, ok := base.Lookup("kms_backup")
	if !ok {
		return errors.New("backup: module kms_backup is not registered")
	}
	reg.Register("kms_backup", recorded{Module: kb, g: g, task: taskBackup})
	r, err := newRunner(e, o, "backup --cluster "+bo.Group, inv, reg, true)
	if err != nil {
		return err
	}
	r.s.rerun = "backup is safe to run again: its files are written atomically, and on the cluster it only creates its canary key once"
	r.engine.Forks = max(o.Forks, len(hosts))
	r.s.hosts = len(hosts) // for the journal: the nodes asked
	g.listen(r.engine)
	if err := checkHostKeys(inv, []tasks.Play{{Hosts: hosts}}); err != nil {
		return r.s.finish(err)
	}
	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	return r.s.finish(r.backup(ctx, e, o, bo, g, hosts, nodes, dest))
}

// backup runs backup's plays and applies --keep.
func (r *runner) backup(ctx context.Context, e env, o options, bo backupOptions, g *gathered, hosts []tasks.Host, nodes []inventory.KMSNode, dest string) error {
	recap, err := r.engine.Run(ctx, []tasks.Play{apiPlay(hosts)})
	if err != nil && ctx.Err() != nil {
		return exitError(ctx, recap, err)
	}
	states := g.states(nodes)
	if err := localSetupError(states); err != nil {
		return err
	}
	candidates, err := backupSources(bo.Group, states)
	if err != nil {
		return err
	}
	byName := map[string]tasks.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	failed := &tasks.RunError{}
	var done *nodeState
	for _, c := range candidates {
		recap, err := r.engine.Run(ctx, []tasks.Play{backupPlay(byName[c.Host], dest, bo.Group)})
		if err == nil {
			done = &c
			break
		}
		mapped := exitError(ctx, recap, err)
		if ctx.Err() != nil || exit.Code(mapped) == exit.VerifyFailed {
			return mapped
		}
		var re *tasks.RunError
		if !errors.As(err, &re) {
			return mapped
		}
		failed.Hosts = append(failed.Hosts, re.Hosts...)
	}
	if done == nil {
		return exit.With(exit.HostFailed, failed)
	}
	res := g.result(done.Host, taskBackup)
	removed, perr := kmsmodules.PruneBackups(filepath.Dir(dest), bo.Keep)
	// backup takes no lock, but says when a run holds its cluster's.
	locks, lerr := heldLocks(e.stateDir, nodes)
	if err := printBackup(e, o, bo, *done, res.Data, removed, locks, g.heldLeases(nodes, time.Now())); err != nil {
		return err
	}
	var errs []error
	if perr != nil {
		errs = append(errs, fmt.Errorf("--keep %d: %w", bo.Keep, perr))
	}
	if lerr != nil {
		errs = append(errs, fmt.Errorf("look for held cluster locks: %w", lerr))
	}
	if len(errs) > 0 {
		return exit.With(exit.HostFailed, fmt.Errorf("backup %s written, but %w", dest, errors.Join(errs...)))
	}
	return nil
}

// apiPlay is backup's first play, read-only: each node's own status.
func apiPlay(hosts []tasks.Host) tasks.Play {
	no := false
	return tasks.Play{Name: "backup: find a healthy node", Hosts: hosts, Tasks: []tasks.Task{
		{Name: taskAPI, Module: "kms_status", Args: map[string]any{}, Become: &no, IgnoreErrors: true},
		leaseTask(),
	}}
}

// backupPlay is backup's second play: kms_backup on h (become root, to read
// the HSM key's fingerprint from the node's env file).
func backupPlay(h tasks.Host, dest, group string) tasks.Play {
	yes := true
	return tasks.Play{Name: "backup", Hosts: []tasks.Host{h}, Tasks: []tasks.Task{
		{Name: taskBackup, Module: "kms_backup", Args: map[string]any{"dest": dest, "gzip": true, "cluster": group}, Become: &yes},
	}}
}

// backupSources are the nodes a backup may come from: those whose API
// answered, ready for reads, that see a leader; those ready for writes
// first (the canary key may have to be created). None is an error: exit 3
// when no node answered at all, else exit 2.
func backupSources(group string, states []nodeState) ([]nodeState, error) {
	var rw, ro []nodeState
	var why []string
	answered := false
	for _, s := range states {
		answered = answered || s.View != nil || s.Live
		switch {
		case s.View != nil && s.Ready && s.View.Leader >= 0 && s.ReadyWrite:
			rw = append(rw, s)
		case s.View != nil && s.Ready && s.View.Leader >= 0:
			ro = append(ro, s)
		default:
			why = append(why, s.Host+": "+notHealthy(s))
		}
	}
	if out := append(rw, ro...); len(out) > 0 {
		return out, nil
	}
	if !answered {
		return nil, exit.With(exit.Unreachable, fmt.Errorf("backup: no node of group %s answers: %s", group, strings.Join(why, "; ")))
	}
	return nil, exit.With(exit.HostFailed, fmt.Errorf("backup: no node of group %s is healthy (ready, with a leader): %s", group, strings.Join(why, "; ")))
}

// notHealthy says why a node cannot give a backup.
func notHealthy(s nodeState) string {
	switch {
	case s.SSHError != "":
		return "does not answer SSH (" + s.SSHError + ")"
	case s.APIError != "":
		return s.APIError
	case !s.Ready:
		return "not ready"
	default:
		return "sees no leader"
	}
}

// result is what host's task registered.
func (g *gathered) result(host, task string) tasks.Result {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.results[host][task].res
}

// printBackup reports a backup: with --output json one backup event (the
// held cluster locks in it as locks, the held leases on the nodes as
// leases), with -v one line on stdout and a LOCKED or LEASED line on
// stderr for each held lock or lease, else nothing; a warning (no canary)
// always goes to stderr.
func printBackup(e env, o options, bo backupOptions, n nodeState, d map[string]any, removed []string, locks []lock.State, leases []lease.NodeLease) error {
	if removed == nil {
		removed = []string{}
	}
	if locks == nil {
		locks = []lock.State{}
	}
	warning, _ := d["canary_warning"].(string)
	counts := map[string]any{}
	for _, k := range []string{"enclaves", "keys", "policies", "identities"} {
		counts[k] = d[k]
	}
	if o.Output == "json" {
		ev := jsonLine(e.stdout, "backup").Str("cluster", bo.Group).Str("dir", filepath.Dir(fmt.Sprint(d["dest"]))).
			Interface("snapshot", d["dest"]).Interface("manifest", d["manifest"]).Str("node", n.Host).Interface("endpoint", d["endpoint"]).
			Interface("node_id", d["node_id"]).Interface("version", d["version"]).Interface("size", d["size"]).Interface("sha256", d["sha256"]).
			Interface("hsm_fingerprint", d["hsm_fingerprint"]).Interface("counts", counts).Interface("canary", d["canary"]).
			Strs("removed", removed).Int("keep", bo.Keep).Interface("locks", locks).Interface("leases", leasesOrNone(leases))
		if warning != "" {
			ev = ev.Str("warning", warning)
		}
		ev.Send()
		return nil
	}
	if warning != "" {
		fmt.Fprintf(e.stderr, "kmsctl: warning: backup %s has no canary: %s\n", d["dest"], warning)
	}
	if o.Verbosity <= 0 {
		return nil
	}
	for _, st := range locks {
		fmt.Fprintln(e.stderr, lockedLine(st))
	}
	for _, nl := range leases {
		fmt.Fprintln(e.stderr, leasedLine(nl))
	}
	line := fmt.Sprintf("backed up %s (%s) to %s: %v bytes, sha256 %v; %v enclaves, %v keys, %v policies, %v identities",
		n.Host, d["endpoint"], d["dest"], d["size"], d["sha256"], d["enclaves"], d["keys"], d["policies"], d["identities"])
	if len(removed) > 0 {
		names := slices.Clone(removed)
		for i := range names {
			names[i] = filepath.Base(names[i])
		}
		line += "; removed " + strings.Join(names, ", ")
	}
	_, err := fmt.Fprintln(e.stdout, line)
	return err
}
