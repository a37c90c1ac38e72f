package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/metrics"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/tasks"
)

// newDrillCommand builds `kmsctl drill`.
func newDrillCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:  "drill",
		Usage: "restore the newest backup onto a scratch host, verify it against its manifest, tear the scratch node down, report (quiet on success, for cron)",
		Flags: []cli.Flag{
			clusterFlag(),
			&cli.StringFlag{Name: "scratch", Usage: "the scratch `HOST` (an inventory host in no cluster) to restore onto; provisioned, then torn down"},
			&cli.StringFlag{Name: "backup", Usage: "the snapshot `FILE` to restore (its manifest beside it); default: the newest good backup of --dir"},
			&cli.StringFlag{Name: "dir", Usage: "`DIR`ectory of the cluster's backups (default: backups/GROUP in kmsctl's state directory)"},
			&cli.StringFlag{Name: "report", Usage: "write the drill's report (JSON) to `FILE`, also when it fails"},
			metricsFileFlag(),
		},
		Action: func(c *cli.Context) error {
			o, err := clusterOptions(c, opts, "drill")
			if err != nil {
				return err
			}
			do := drillOptions{Group: c.String("cluster"), Scratch: c.String("scratch"), Backup: c.String("backup"), Dir: c.String("dir"),
				Report: c.String("report"), MetricsFile: c.String("metrics-file")}
			switch {
			case do.Scratch == "":
				return exit.Usagef("drill: --scratch HOST is required: the inventory host to restore onto")
			case do.Backup != "" && do.Dir != "":
				return exit.Usagef("drill: --backup names the backup; --dir is where to look for the newest one: give one of them")
			case o.Check:
				return exit.Usagef("drill: --check is not supported (a drill changes only its scratch host, and undoes it)")
			case o.Limit != "":
				return exit.Usagef("drill: --limit is not taken: the drill works on --scratch HOST alone")
			}
			if err := checkMetricsFile(do.MetricsFile); err != nil {
				return err
			}
			if do.Dir == "" {
				do.Dir = backupDir(e, do.Group)
			}
			rep := &drillReport{Cluster: do.Group, Scratch: do.Scratch, Started: e.clock().UTC(), Phases: []drillPhase{}}
			err = drill(c.Context, e, o, do, rep)
			rep.Ended = e.clock().UTC()
			rep.ExitCode = exit.Code(err)
			rep.Result = "ok"
			if err != nil {
				rep.Result, rep.Error = "failed", newRedactor(e).String(err.Error())
				if rep.ExitCode == exit.VerifyFailed {
					rep.Result = "verification_failed"
				} else if rep.ExitCode == exit.Refused {
					rep.Result = "refused"
				}
			}
			var werr []error
			if do.Report != "" {
				werr = append(werr, writeReport(do.Report, rep))
			}
			if do.MetricsFile != "" {
				werr = append(werr, writeDrillMetrics(do.MetricsFile, rep))
			}
			if err == nil {
				printDrill(e, o, rep)
			} else if o.Output == "json" {
				jsonLine(e.stdout, "drill").Interface("report", rep).Send()
			}
			return withMetricsError(e, err, errors.Join(werr...))
		},
	}
}

// drillOptions are drill's own flags.
type drillOptions struct {
	Group       string // --cluster: whose backups (and the metrics' label)
	Scratch     string // --scratch HOST
	Backup      string // --backup FILE ("" the newest good one of Dir)
	Dir         string // --dir
	Report      string // --report FILE
	MetricsFile string // --metrics-file FILE
}

// drillReport is what a drill did and found: its JSON report, and what
// its metrics are made of.
type drillReport struct {
	Cluster       string       `json:"cluster"`
	Scratch       string       `json:"scratch"`
	Backup        string       `json:"backup,omitempty"`
	BackupCreated *time.Time   `json:"backup_created,omitempty"`
	Result        string       `json:"result"` // ok, failed, verification_failed, refused
	ExitCode      int          `json:"exit_code"`
	Error         string       `json:"error,omitempty"`
	Started       time.Time    `json:"started"`
	Ended         time.Time    `json:"ended"`
	Phases        []drillPhase `json:"phases"`
	// RestoreSeconds is the time to restore: from the start of
	// provisioning until the restored node was verified.
	RestoreSeconds float64 `json:"restore_seconds,omitempty"`
	// Objects are the objects verified on the restored node (the
	// manifest's counts), when the verification passed.
	Objects map[string]int `json:"objects,omitempty"`
	Canary  bool           `json:"canary"` // the canary ciphertext decrypted
	// info is the backup's manifest, when read.
	info *kmsmodules.BackupInfo
}

// drillPhase is one phase of a drill and how long it took.
type drillPhase struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
	OK      bool    `json:"ok"`
}

// drill checks the scratch host and the backup, then under the scratch
// host's lock alone provisions it, starts its Key Manager clean, restores
// the backup (kms_restore: fresh node, the backup's HSM key, the node then
// holds what the manifest lists and decrypts its canary), verifies it
// again (kms_verify, exact), and tears it down (service stopped and
// disabled, kms_teardown: the env file with the HSM key first), timing
// each phase into rep.
func drill(ctx context.Context, e env, o options, do drillOptions, rep *drillReport) error {
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	hosts, nodes, err := namedHosts(inv, o, "drill", []string{do.Scratch})
	if err != nil {
		return err
	}
	if err := peerCopyRefusal("drill", nodes); err != nil {
		return exit.With(exit.Refused, fmt.Errorf("drill: refused: %w; nothing was changed", err))
	}
	if err := scratchInCluster(inv, o, do.Scratch, nodes[0]); err != nil {
		return err
	}
	b, err := drillBackup(do)
	if err != nil {
		return err
	}
	rep.Backup = b.Snapshot
	info, err := b.Info()
	if err != nil {
		return exit.With(exit.VerifyFailed, fmt.Errorf("drill: %w", err))
	}
	rep.info, rep.BackupCreated = &info, &info.Created
	if err := checkAPIKeys(e, o, nodes); err != nil {
		return err
	}
	reg := newRegistry(e, o)
	// One run, its preflight included: one run log, one journal.
	r, err := newRunner(e, o, "drill --scratch "+do.Scratch+" --cluster "+do.Group, inv, reg, true)
	if err != nil {
		return err
	}
	r.s.rerun = "a drill is safe to run again once its scratch host runs no Key Manager"
	r.s.hosts = 1
	states, err := gatherStates(ctx, e, o, r, inv, hosts, nodes)
	if err != nil {
		return r.s.finish(err)
	}
	if s := states[0]; !s.SSH {
		return r.s.finish(exit.With(exit.Unreachable, fmt.Errorf("drill: scratch host %s does not answer SSH (%s); nothing was changed", s.Host, orUnknown(s.SSHError))))
	} else if s.View != nil || s.Live {
		return r.s.finish(exit.With(exit.Refused, fmt.Errorf("drill: refused: scratch host %s runs a Key Manager (its API answers at %s): a drill restores only onto a host that runs none; "+
			"if it is a scratch node left by an earlier drill, stop %s and tear it down (kmsctl scale remove, or by hand); nothing was changed", s.Host, s.Endpoint, s.Service)))
	}

	// Only the scratch host's lock: a long drill never blocks a recovery
	// of the cluster.
	scratch := hosts[0]
	ih := scratch.Target.(inventory.Host)
	ih.KMS.Cluster = scratchLock(do.Scratch)
	scratch.Target = ih
	if err := checkHostKeys(inv, []tasks.Play{{Hosts: hosts}}); err != nil {
		return r.s.finish(err)
	}
	ctx, cancel := withTimeout(ctx, o)
	defer cancel()
	locks, err := r.s.acquireLocks(ctx, []string{ih.KMS.Cluster})
	if err != nil {
		return r.s.finish(err)
	}
	if r.engine.Journal != nil {
		r.engine.Journal = lockJournal{Journal: r.engine.Journal, locks: locks}
	}
	err = r.drillPhases(ctx, reg, scratch, b, rep)
	if rerr := locks.Release(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return r.s.finish(err)
}

// drillPhases runs the phases, teardown whatever happened before it.
func (r *runner) drillPhases(ctx context.Context, reg *tasks.Registry, scratch tasks.Host, b kmsmodules.Backup, rep *drillReport) error {
	yes, no := true, false
	one := []tasks.Host{scratch}
	provision, err := builtinPlays(reg, "provision", func(string) []tasks.Host { return one }, map[string]any{"provision_hosts": scratch.Name}, nil)
	if err != nil {
		return err
	}
	task := func(name, module string, args map[string]any, become bool) tasks.Play {
		b := &no
		if become {
			b = &yes
		}
		return tasks.Play{Name: "drill: " + name, Hosts: one, Tasks: []tasks.Task{{Name: name, Module: module, Args: args, Become: b}}}
	}
	plays := map[string][]tasks.Play{
		"provision": provision,
		"start": {task("start the scratch node clean", "service", map[string]any{"name": "{{ kms_service }}", "state": "started"}, true),
			task("wait until it is ready for writes", "kms_wait", map[string]any{"timeout": "5m", "interval": "200ms"}, false)},
		"restore": {task("restore the backup", "kms_restore", map[string]any{"src": b.Snapshot, "manifest": b.Manifest}, true)},
		"verify":  {task("verify against the manifest", "kms_verify", map[string]any{"manifest": b.Manifest, "exact": true}, false)},
		"teardown": {
			task("stop and disable the service", "service", map[string]any{"name": "{{ kms_service }}", "state": "stopped", "enabled": false}, true),
			task("remove the node's files, the env file with the HSM key first", "kms_teardown", map[string]any{}, true),
		},
	}
	var failed error
	began := time.Now()
	// In order; teardown runs whatever happened before it.
	for _, phase := range []string{"provision", "start", "restore", "verify", "teardown"} {
		if failed != nil && phase != "teardown" {
			continue
		}
		start := time.Now()
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if phase == "teardown" {
			// The HSM key must not stay on the scratch host because the
			// drill was interrupted or timed out: the teardown runs on
			// (for at most teardownTimeout) until a second Ctrl-C.
			pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		}
		recap, err := r.engine.Run(pctx, plays[phase])
		cancel()
		if err != nil {
			err = fmt.Errorf("drill %s: %w", phase, exitError(pctx, recap, err))
		}
		rep.Phases = append(rep.Phases, drillPhase{Phase: phase, Seconds: time.Since(start).Seconds(), OK: err == nil})
		switch {
		case phase == "verify" && err == nil:
			rep.RestoreSeconds = time.Since(began).Seconds()
			rep.Canary = rep.info.Canary
			rep.Objects = map[string]int{"enclaves": rep.info.Enclaves, "keys": rep.info.Keys, "policies": rep.info.Policies, "identities": rep.info.Identities}
		case phase == "teardown" && err != nil && failed == nil:
			return exit.With(exit.HostFailed, fmt.Errorf("the backup restored and verified, but the scratch node was not torn down: %w", err))
		case phase == "teardown" && err != nil:
			return errors.Join(failed, fmt.Errorf("and the scratch node was not torn down: %w", err))
		case err != nil:
			failed = err
		}
		if ctx.Err() != nil && phase != "teardown" {
			failed = errors.Join(failed, ctx.Err())
		}
	}
	return failed
}

// teardownTimeout bounds a drill's teardown, which runs also after the
// drill was interrupted or timed out.
const teardownTimeout = 5 * time.Minute

// scratchLock is the name of the lock a drill takes: the scratch host's,
// never a cluster's.
func scratchLock(host string) string {
	return "scratch-" + host
}

// scratchInCluster refuses (exit 4) a scratch host that is a member of a
// cluster of the inventory: a host of a cluster's group, or one with a
// cluster node's kms_endpoint or SSH address.
func scratchInCluster(inv *inventory.Inventory, o options, host string, n inventory.KMSNode) error {
	f, err := inventoryClusters(inv, o)
	if err != nil {
		return err
	}
	sh, err := inv.Resolve(host, o.ExtraVars)
	if err != nil {
		return exit.With(exit.Usage, fmt.Errorf("resolve host %s: %w", host, err))
	}
	addr := func(h inventory.Host) string { return fmt.Sprintf("%s:%d", h.SSH.Address, h.SSH.Port) }
	for _, c := range f.Clusters {
		for _, h := range c.hosts {
			ch := h.Target.(inventory.Host)
			var why string
			switch {
			case h.Name == host:
				why = "is a host of group " + c.Group
			case ch.KMS.Endpoint == n.Endpoint:
				why = fmt.Sprintf("has the kms_endpoint %s of %s", n.Endpoint, h.Name)
			case addr(ch) == addr(sh):
				why = fmt.Sprintf("is reached at %s, as %s is", addr(sh), h.Name)
			default:
				continue
			}
			return exit.With(exit.Refused, fmt.Errorf("drill: refused: scratch host %s %s, a node of cluster %s: a drill restores onto a host that is in no cluster "+
				"(name one outside every cluster's group, with its own kms_endpoint and address); nothing was changed", host, why, c.Group))
		}
	}
	if slices.ContainsFunc(f.Clusters, func(c fleetCluster) bool { return c.Group == scratchLock(host) }) {
		return exit.Usagef("drill: a cluster is named %s, the name of the scratch host's lock; rename the group", scratchLock(host))
	}
	return nil
}

// drillBackup is the backup to restore: --backup FILE, or the newest good
// backup of --dir. One that does not check out against its manifest, or
// none at all, fails the drill's verification (exit 7) before anything is
// changed.
func drillBackup(do drillOptions) (kmsmodules.Backup, error) {
	if do.Backup == "" {
		b, err := kmsmodules.NewestBackup(do.Dir)
		if err != nil {
			return b, exit.With(exit.VerifyFailed, fmt.Errorf("drill: %w; nothing was changed", err))
		}
		return b, nil
	}
	b := kmsmodules.Backup{Snapshot: do.Backup, Manifest: do.Backup + kmsmodules.ManifestSuffix}
	if err := b.Check(); err != nil {
		return b, exit.With(exit.VerifyFailed, fmt.Errorf("drill: backup %s: %w; nothing was changed", do.Backup, err))
	}
	return b, nil
}

// printDrill reports a good drill: with --output json one drill event,
// with -v one line, else nothing.
func printDrill(e env, o options, rep *drillReport) {
	if o.Output == "json" {
		jsonLine(e.stdout, "drill").Interface("report", rep).Send()
		return
	}
	if o.Verbosity <= 0 {
		return
	}
	var ph []string
	for _, p := range rep.Phases {
		ph = append(ph, fmt.Sprintf("%s %.1fs", p.Phase, p.Seconds))
	}
	fmt.Fprintf(e.stdout, "drill of %s on %s: %s restored and verified in %.1fs (%d keys, canary %v); %s\n",
		rep.Cluster, rep.Scratch, filepath.Base(rep.Backup), rep.RestoreSeconds, rep.Objects["keys"], rep.Canary, strings.Join(ph, ", "))
}

// writeReport writes the report as JSON, atomically, 0600.
func writeReport(path string, rep *drillReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("write the drill report: %w", err)
	}
	if err := renameio.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the drill report: %w", err)
	}
	return nil
}

// writeDrillMetrics writes the drill's metrics file: the run's result,
// the duration of each phase, the time to restore, the objects verified,
// the drilled backup's time, and the last successful drill's time (this
// run's when it succeeded, else carried over from the file as it was; 0
// when there never was one).
func writeDrillMetrics(path string, rep *drillReport) error {
	labels := prometheus.Labels{"cluster": rep.Cluster}
	const lastName = "kmsctl_drill_last_success_timestamp_seconds"
	last := 0.0
	if rep.ExitCode == exit.OK {
		last = unix(rep.Ended)
	} else if old, err := metrics.Read(path); err == nil {
		last, _ = metrics.Value(old, lastName, labels)
	}
	s := metrics.NewSet()
	var runErr error
	if rep.ExitCode != exit.OK {
		runErr = exit.With(rep.ExitCode, errors.New(rep.Error))
	}
	errs := []error{
		jobResult(s, "drill", labels, rep.Started, rep.Ended, runErr),
		s.Set(lastName, "when the last successful drill ended (Unix time; 0: none yet)", labels, last),
		s.Set("kmsctl_drill_restore_seconds", "the time to restore of the last drill: provision, start, restore and verify (0 when it did not get that far)", labels, rep.RestoreSeconds),
	}
	for _, p := range rep.Phases {
		l := prometheus.Labels{"cluster": rep.Cluster, "phase": p.Phase}
		errs = append(errs, s.Set("kmsctl_drill_phase_duration_seconds", "how long each phase of the last drill took", l, p.Seconds))
	}
	for kind, n := range rep.Objects {
		l := prometheus.Labels{"cluster": rep.Cluster, "kind": kind}
		errs = append(errs, s.Set("kmsctl_drill_objects_verified", "the objects the restored node held as the manifest lists them, by kind", l, float64(n)))
	}
	if rep.BackupCreated != nil {
		errs = append(errs, s.Set("kmsctl_drill_backup_timestamp_seconds", "when the backup the last drill restored was taken (Unix time)", labels, unix(*rep.BackupCreated)))
	}
	canary := 0.0
	if rep.Canary {
		canary = 1
	}
	errs = append(errs, s.Set("kmsctl_drill_canary_verified", "1 when the last drill decrypted the backup's canary on the restored node", labels, canary))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics of drill: %w", err)
	}
	return s.WriteFile(path)
}
