package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// newRecoverClusterCommand builds `kmsctl recover cluster`.
func newRecoverClusterCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "rebuild a cluster that lost every node from a backup: check it, fence and wipe every node, restore onto a seed, verify, add the others (built-in playbook recover-cluster)",
		Flags: []cli.Flag{
			clusterFlag(),
			&cli.StringFlag{Name: "backup", Usage: "the snapshot to restore (`FILE`, its manifest beside it); default: the newest good backup of the cluster's backup directory"},
			&cli.StringFlag{Name: "seed", Usage: "the node restored first (`HOST`; default: the group's first node)"},
			&cli.StringSliceFlag{Name: "discard", Usage: "a node that still serves and is wiped anyway (`HOST`, repeatable): its state is lost"},
			&cli.BoolFlag{Name: "no-manifest", Usage: "restore a snapshot that has no manifest of kmsctl's (the vendor's CLI made it): nothing is checked before, the restored node is judged by what it reports"},
			&cli.BoolFlag{Name: "yes", Usage: "change the hosts without asking (for scripts)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return exit.Usagef("recover cluster takes no arguments (got %s): name the backup with --backup FILE and the cluster with --cluster GROUP", strings.Join(c.Args().Slice(), " "))
			}
			o, err := opts(c)
			if err != nil {
				return err
			}
			return recoverCluster(c.Context, e, o, recoverClusterOptions{Group: c.String("cluster"), Backup: c.String("backup"), Seed: c.String("seed"),
				Discard: c.StringSlice("discard"), NoManifest: c.Bool("no-manifest"), Yes: c.Bool("yes")})
		},
	}
}

// recoverClusterOptions are recover cluster's own flags.
type recoverClusterOptions struct {
	Group      string   `json:"group"`             // --cluster
	Backup     string   `json:"backup,omitempty"`  // --backup; "" = the newest good backup of the group's directory
	Seed       string   `json:"seed,omitempty"`    // --seed; "" = the group's first node
	Discard    []string `json:"discard,omitempty"` // --discard
	NoManifest bool     `json:"no_manifest,omitempty"`
	Yes        bool     `json:"-"` // --yes
}

// command is the command line that the run's journal records: enough to
// run it again (the backup by its absolute path).
func (co recoverClusterOptions) command(snapshot, seed string) string {
	s := fmt.Sprintf("recover cluster --cluster %s --backup %s --seed %s", co.Group, snapshot, seed)
	for _, d := range co.Discard {
		s += " --discard " + d
	}
	if co.NoManifest {
		s += " --no-manifest"
	}
	return s
}

// recoverCluster checks the backup on this machine, runs the read-only
// preflight on every node, prints the plan, asks (unless --yes or
// --check), and runs the built-in recover-cluster playbook.
func recoverCluster(ctx context.Context, e env, o options, co recoverClusterOptions) error {
	if o.Limit != "" {
		return exit.Usagef("recover cluster: --limit is not taken: every node of the cluster is wiped and rebuilt (name the cluster with --cluster GROUP)")
	}
	inv, hosts, nodes, err := loadCluster(e, o, co.Group)
	if err != nil {
		return err
	}
	isNode := func(h string) bool {
		return slices.ContainsFunc(nodes, func(n inventory.KMSNode) bool { return n.Host == h })
	}
	if co.Seed != "" && !isNode(co.Seed) {
		return notAHost("recover cluster", "--seed", co.Seed, co.Group, nodes)
	}
	for i, d := range co.Discard {
		if slices.Contains(co.Discard[:i], d) {
			return exit.Usagef("recover cluster: --discard %s is given twice", d)
		}
		if !isNode(d) {
			return notAHost("recover cluster", "--discard", d, co.Group, nodes)
		}
	}
	if err := recoverLockFree(e, o, nodes); err != nil {
		return err
	}
	asJSON := o.Output == "json"
	b, err := findClusterBackup(ctx, e, o, co, nodes)
	if err != nil {
		return err
	}
	// The backup first: a backup that cannot be used stops everything
	// before any host is asked.
	if err := checkClusterBackup(b); err != nil {
		return clusterRefused(e, asJSON, err)
	}
	in, err := clusterPreflight(ctx, e, o, co.Group, inv, hosts, nodes)
	if err != nil {
		return err
	}
	in.Seed, in.Discard, in.Backup = co.Seed, co.Discard, b
	plan, err := planClusterRecovery(in)
	if err != nil {
		return clusterRefused(e, asJSON, err)
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(e.stderr, "kmsctl: WARNING: %s\n", w)
	}
	for _, n := range plan.Nodes {
		if n.Discard != "" {
			fmt.Fprintf(e.stderr, "kmsctl: WARNING: --discard %s: %s; kmsctl will stop it and wipe %s\n", n.Host, n.Discard, n.StoragePath)
		}
	}
	if asJSON {
		jsonLine(e.stdout, "recover_cluster_plan").Interface("plan", plan).Bool("check", o.Check).Send()
	} else {
		fmt.Fprintf(e.stdout, "preflight: ok\n%s\n", clusterPlanText(plan))
	}
	if o.Check {
		if !asJSON {
			fmt.Fprintln(e.stdout, "--check: nothing was changed")
		}
		return nil
	}
	if !co.Yes {
		if !e.terminal || e.stdin == nil || asJSON {
			return exit.Usagef("recover cluster wipes every node of the cluster: confirm on a terminal, or pass --yes (nothing was changed)")
		}
		fmt.Fprintf(e.stdout, "Wipe every node of cluster %s and restore %s now? [y/N] ", co.Group, filepath.Base(plan.Backup))
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "nothing was changed")
			return exit.Silent{Code: exit.Refused}
		}
	}
	return recoverClusterRun(ctx, e, o, inv, hosts, clusterRecord{Plan: plan, Options: co}, nil)
}

// clusterRecord is what recover cluster records in its journal (the
// plan's Data) for kmsctl resume: the plan it runs and its flags.
type clusterRecord struct {
	Plan    clusterPlan           `json:"plan"`
	Options recoverClusterOptions `json:"options"`
}

// clusterRefused prints a refusal of the preflight and returns its exit
// error (4, or 3 for a host that does not answer).
func clusterRefused(e env, asJSON bool, err error) error {
	var ref refusal
	code := exit.Refused
	var er exitRefusal
	switch {
	case errors.As(err, &er):
		ref, code = er.refusal, er.code
	case !errors.As(err, &ref):
		return err
	}
	if asJSON {
		jsonLine(e.stdout, "recover_refused").Str("why", ref.why).Str("todo", ref.todo).Send()
	} else {
		fmt.Fprintf(e.stdout, "preflight\n  REFUSED  %s.\n  %s.\nnothing was changed\n", ref.why, ref.todo)
	}
	return exit.With(code, fmt.Errorf("recover cluster: refused: %w", ref))
}

// findClusterBackup finds the snapshot (--backup, or the newest good
// backup of the group's directory), checks it against its manifest, and
// reads the fingerprint of the HSM key kmsctl would install: all on this
// machine.
func findClusterBackup(ctx context.Context, e env, o options, co recoverClusterOptions, nodes []inventory.KMSNode) (clusterBackup, error) {
	snap := co.Backup
	if snap == "" {
		dir := backupDir(e, co.Group)
		nb, err := kmsmodules.NewestBackup(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return clusterBackup{}, exit.Usagef("recover cluster: no --backup given, and no good backup in %s (there is no such directory): name the snapshot with --backup FILE", dir)
		}
		if err != nil {
			return clusterBackup{}, exit.Usagef("recover cluster: no --backup given, and %v: name the snapshot with --backup FILE", err)
		}
		snap = nb.Snapshot
	}
	abs, err := filepath.Abs(snap)
	if err != nil {
		return clusterBackup{}, exit.Usagef("recover cluster: --backup %s: %v", snap, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return clusterBackup{}, exit.Usagef("recover cluster: --backup: %v", err)
	} else if !fi.Mode().IsRegular() {
		return clusterBackup{}, exit.Usagef("recover cluster: --backup %s is not a file", abs)
	}
	info, err := kmsmodules.CheckBackup(abs)
	b := clusterBackup{Snapshot: abs, Info: info, Err: err, NoManifest: co.NoManifest}
	// The key installed on every node: each node's source (usually one for
	// all) must give the same key.
	ko := kmsmodules.Options{Getenv: e.getenv, APIKeyFile: o.APIKeyFile}
	seen := map[string]string{} // source → fingerprint
	var first string
	for _, n := range nodes {
		src := n.HSMKeyFile + "\x00" + strings.Join(n.HSMKeyCommand, "\x00")
		fp, ok := seen[src]
		if !ok {
			if fp, err = kmsmodules.OperatorHSMFingerprint(ctx, ko, n); err != nil {
				b.OperatorErr = fmt.Sprintf("for %s: %v", n.Host, err)
				return b, nil
			}
			seen[src] = fp
		}
		switch {
		case first == "":
			first = fp
		case fp != first:
			b.OperatorErr = fmt.Sprintf("the inventory gives the nodes different HSM keys (%s for %s, %s for %s)", first, nodes[0].Host, fp, n.Host)
			return b, nil
		}
	}
	b.OperatorFP = first
	return b, nil
}

// clusterPreflight gathers, with one read-only play on every node at once,
// the state of its service (a stop planned, not done: the plan reads it,
// and a unit not installed is stopped), its own Key Manager status, and
// whether its files are there.
func clusterPreflight(ctx context.Context, e env, o options, group string, inv *inventory.Inventory, hosts []tasks.Host, nodes []inventory.KMSNode) (clusterInput, error) {
	in := clusterInput{Group: group, Layout: map[string]inventory.KMSNode{}, Files: map[string][]recoverFile{}}
	yes, no := true, false
	mods := map[string]string{taskService: "service", taskAPI: "kms_status"}
	play := tasks.Play{Name: "recover cluster preflight", Tasks: []tasks.Task{
		{Name: taskService, Module: taskService, Args: map[string]any{"name": "{{ " + inventory.VarService + " }}", "state": "stopped"},
			Become: &no, IgnoreErrors: true, CheckMode: &yes},
		{Name: taskAPI, Module: taskAPI, Args: map[string]any{}, Become: &no, IgnoreErrors: true},
	}}
	for i, f := range recoverFiles(inventory.KMSNode{}) {
		name := fileStatPrefix + f.What
		mods[name] = "stat"
		play.Tasks = append(play.Tasks, tasks.Task{Name: name, Module: name, Become: &yes, IgnoreErrors: true,
			Args: map[string]any{"path": fmt.Sprintf("{{ recover_files[%d] }}", i)}})
	}
	for _, n := range nodes {
		in.Layout[n.Host] = n
	}
	play.Hosts = make([]tasks.Host, len(hosts))
	for i, h := range hosts {
		var paths []any
		for _, f := range recoverFiles(nodes[i]) {
			paths = append(paths, f.Path)
		}
		h.Vars = maps.Clone(h.Vars)
		h.Vars["recover_files"] = paths
		play.Hosts[i] = h
	}
	g, _, err := runPreflight(ctx, e, o, inv, preflight{who: "recover cluster", command: "recover cluster preflight --cluster " + group, play: play, modules: mods})
	if err != nil {
		return in, err
	}
	in.Nodes = g.states(nodes)
	if err := localSetupError(in.Nodes); err != nil {
		return in, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range nodes {
		res := g.results[n.Host]
		if _, ok := g.unreachable[n.Host]; ok {
			continue
		}
		files := recoverFiles(n)
		for i, f := range files {
			r, ok := res[fileStatPrefix+f.What]
			switch {
			case !ok:
				files[i].Err = "not checked"
			case r.err != nil || r.res.Failed:
				files[i].Err = resultError(r)
			default:
				st, _ := r.res.Data["stat"].(map[string]any)
				files[i].Exists, _ = st["exists"].(bool)
			}
		}
		in.Files[n.Host] = files
	}
	return in, nil
}

// layoutHosts is hosts by name, each with the Key Manager layout variables
// set to their resolved values (defaults included), which the built-in
// recovery playbooks use.
func layoutHosts(hosts []tasks.Host) map[string]tasks.Host {
	byName := map[string]tasks.Host{}
	for _, h := range hosts {
		h.Vars = maps.Clone(h.Vars)
		n := h.Target.(inventory.Host).KMS
		for k, v := range map[string]any{inventory.VarService: n.Service, inventory.VarStoragePath: n.StoragePath, inventory.VarEnvFile: n.EnvFile,
			inventory.VarConfigFile: n.ConfigFile, inventory.VarCertsDir: n.CertsDir, inventory.VarBinary: n.Binary, inventory.VarKMSUser: n.User,
			inventory.VarKMSPort: n.Port, inventory.VarEndpoint: n.Endpoint, inventory.VarUnitFile: n.UnitFile} {
			h.Vars[k] = v
		}
		byName[h.Name] = h
	}
	return byName
}

// recoverClusterRun runs the recover-cluster playbook's phases as plan
// says, in one run (one journal): every node fenced and wiped; the seed
// pushed, started, restored and verified; each other node pushed,
// started, added and waited for, one at a time; every node proved. It
// records the plan in the run's journal and each phase ("HOST phase",
// "every node phase") once every host finished its tasks; prior, for
// kmsctl resume, is the journal of the run it continues (o.Resume): the
// phases it records as done are not run again. It prints one line per
// phase with its time.
func recoverClusterRun(ctx context.Context, e env, o options, inv *inventory.Inventory, hosts []tasks.Host, rec clusterRecord, prior *journal.Run) error {
	plan, co := rec.Plan, rec.Options
	reg := newRegistry(e, o)
	pb, err := playbooks.Load(playbooks.BuiltinPrefix+"recover-cluster", reg)
	if err != nil {
		return err
	}
	byName := layoutHosts(hosts)
	var names []string
	for _, n := range plan.Nodes {
		names = append(names, n.Host)
	}
	base := map[string]any{"recover_hosts": strings.Join(names, ","), "recover_seed": plan.Seed, "recover_backup": plan.Backup,
		"recover_manifest": plan.Manifest, "recover_discard": strings.Join(co.Discard, ",")}
	var plays []tasks.Play
	var keys []string              // every phase of the plan, in order
	phaseOf := map[string]string{} // play name → what the phase acts on, for the recap
	add := func(label string, extra map[string]any, phases []string) {
		for _, ph := range phases {
			keys = append(keys, label+" "+ph)
		}
		phases = slices.DeleteFunc(slices.Clone(phases), func(ph string) bool { return prior != nil && prior.IsDone(label+" "+ph) })
		vars := mergeVars(base, extra)
		for _, p := range pb.Plays {
			var ts []tasks.Task
			for _, task := range p.Tasks {
				if slices.ContainsFunc(task.Tags, func(tag string) bool { return slices.Contains(phases, tag) }) {
					ts = append(ts, task)
				}
			}
			if len(ts) == 0 {
				continue
			}
			pattern, err := tasks.RenderTemplate(p.Hosts, vars)
			if err != nil {
				continue
			}
			var hs []tasks.Host
			for _, name := range strings.Split(pattern, ",") {
				hs = append(hs, byName[name])
			}
			name := fmt.Sprintf("%s: %s", label, p.Name)
			phaseOf[name] = label
			plays = append(plays, tasks.Play{Name: name, Hosts: hs, Vars: mergeVars(p.Vars, vars), Tasks: ts, Handlers: p.Handlers, Files: pb.Files, Pos: p.Pos})
		}
	}
	node := func(n clusterNode) map[string]any {
		return map[string]any{"recover_host": n.Host, "recover_endpoint": n.Endpoint}
	}
	add("every node", nil, []string{"fence", "wipe"})
	add(plan.Seed, node(plan.Nodes[0]), []string{"push", "start", "restore", "verify"})
	for _, n := range plan.Nodes[1:] {
		add(n.Host, node(n), []string{"push", "start", "add", "wait"})
	}
	add("every node", nil, []string{"prove"})

	command := co.command(plan.Backup, plan.Seed)
	if prior != nil {
		command = "resume " + prior.ID
	}
	r, err := newRunner(e, o, command, inv, reg, false)
	if err != nil {
		return err
	}
	if err := r.beginResumable(o, hosts, prior, journal.Plan{Command: "recover cluster", Args: names, Group: co.Group, Phases: keys}, rec); err != nil {
		return r.s.finish(err)
	}
	times, marks := newPhases(plays, phaseOf)
	var restored string // what kms_restore reported
	sink := r.engine.Sink
	r.engine.Sink = tasks.SinkFunc(func(ev tasks.Event) {
		if ev.Status != tasks.StatusSkipped {
			// A phase whose tasks were all skipped (verify without a
			// manifest) is not in the recap.
			times.event(ev)
		}
		if ev.Type == tasks.EventHostResult && ev.Host == plan.Seed && strings.HasPrefix(ev.Task, "restore the snapshot") && ev.Status != tasks.StatusSkipped {
			restored = ev.Msg
		}
		sink.Event(ev)
		// Unrecorded, a phase runs again on resume: safe, each task is
		// idempotent (kms_restore is ok on a seed that holds exactly the
		// backup).
		r.journalPhase(marks, times, ev)
	})
	r.announceRun(e, o, prior != nil)
	start := time.Now()
	return r.runWith(ctx, plays, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil {
			return r.stopped(ctx, e, recap, err)
		}
		if o.Output == "json" {
			clusterRecapJSON(e.stdout, r.s.log.ID, times, plan, names, restored, time.Since(start))
		} else {
			clusterRecapText(e.stdout, times, plan, names, restored, time.Since(start))
		}
		return nil
	})
}

// clusterRecapText writes one line per phase with its time, and the
// outcome.
func clusterRecapText(w io.Writer, p *phaseTimes, plan clusterPlan, names []string, restored string, total time.Duration) {
	fmt.Fprintln(w, "\nrecap")
	for _, k := range p.order {
		fmt.Fprintf(w, "  %-24s %6.1fs\n", k, p.took[k].Seconds())
	}
	if plan.Manifest == "" {
		fmt.Fprintf(w, "WARNING: %s had no manifest: nothing was checked before the restore; %s\n", filepath.Base(plan.Backup), restored)
	}
	fmt.Fprintf(w, "RECOVERED cluster %s from %s in %.1fs: %s (seed %s)\n", plan.Cluster, filepath.Base(plan.Backup), total.Seconds(), joinAnd(names), plan.Seed)
}

// clusterRecapJSON writes the recap as one recover_cluster event.
func clusterRecapJSON(w io.Writer, run string, p *phaseTimes, plan clusterPlan, names []string, restored string, total time.Duration) {
	type phase struct {
		Phase   string  `json:"phase"`
		Seconds float64 `json:"seconds"`
	}
	phases := []phase{}
	for _, k := range p.order {
		phases = append(phases, phase{k, p.took[k].Seconds()})
	}
	ev := jsonLine(w, "recover_cluster").Str("run", run).Str("cluster", plan.Cluster).Str("backup", plan.Backup).Str("seed", plan.Seed).
		Strs("nodes", names).Interface("phases", phases).Float64("seconds", total.Seconds())
	if plan.Manifest == "" {
		ev = ev.Str("warning", "no manifest: nothing was checked before the restore; "+restored)
	}
	ev.Send()
}
