package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/lease"
	"github.com/kmsctl/kmsctl/lock"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// newRecoverCommand builds `kmsctl recover node HOST...`.
func newRecoverCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:   "recover",
		Usage:  "recover dead Key Manager nodes from the survivors, or a whole cluster from a backup",
		Action: unknownCommand,
		Subcommands: []*cli.Command{{
			Name:      "node",
			Usage:     "rebuild dead nodes: fence, wipe, remove the ID, push files, start, add, wait, prove (built-in playbook recover-node)",
			ArgsUsage: "HOST...",
			Flags: []cli.Flag{
				clusterFlag(),
				&cli.BoolFlag{Name: "yes", Usage: "change the hosts without asking (for scripts)"},
				&cli.BoolFlag{Name: "force", Usage: "lift exactly one check, \"service stopped or host unreachable\", for a node whose process is wedged " +
					"(service active, API silent) while the survivors already see it down; never the survivors' view, the last-survivor rule or the HSM checks"},
				&cli.BoolFlag{Name: "allow-version-change", Usage: "accept, with --yes, a binary whose version is not the survivors' (or unknown); without it --yes refuses such a plan, and a terminal asks"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return exit.Usagef("recover node: name the dead hosts (kmsctl recover node HOST...)")
				}
				o, err := opts(c)
				if err != nil {
					return err
				}
				return recoverNode(c.Context, e, o, c.String("cluster"), c.Args().Slice(), recoverFlags{yes: c.Bool("yes"), force: c.Bool("force"), allowVersionChange: c.Bool("allow-version-change")})
			},
		}, newRecoverClusterCommand(e, opts)},
	}
}

// Task names of the preflight play beyond status's.
const (
	taskOperatorHSM = "HSM key to install"
	taskBinaryVer   = "binary version"
	fileStatPrefix  = "file "
)

// recoverFlags are recover node's own flags.
type recoverFlags struct {
	yes, force, allowVersionChange bool
}

// recoverNode runs the read-only preflight, prints the plan, asks (unless
// yes or --check), and runs the built-in recover-node playbook: first the
// dead IDs removed one at a time, then each node rebuilt and added one at
// a time. A binary whose version is not the survivors' is named in the
// plan and asked about; --yes alone refuses it (--allow-version-change).
func recoverNode(ctx context.Context, e env, o options, group string, targets []string, f recoverFlags) error {
	yes, force := f.yes, f.force
	if o.Limit != "" {
		// Every node's view counts: a survivor left out could see HOST up.
		return exit.Usagef("recover node: --limit is not taken: the preflight asks every node of the cluster (name the cluster with --cluster GROUP)")
	}
	inv, hosts, nodes, err := loadCluster(e, o, group)
	if err != nil {
		return err
	}
	for i, t := range targets {
		if slices.Contains(targets[:i], t) {
			return exit.Usagef("recover node: %s is named twice", t)
		}
		if !slices.ContainsFunc(nodes, func(n inventory.KMSNode) bool { return n.Host == t }) {
			return notAHost("recover node", "", t, group, nodes)
		}
	}
	if err := recoverLockFree(e, o, nodes); err != nil {
		return err
	}
	in, err := recoverPreflight(ctx, e, o, group, inv, hosts, nodes, targets)
	if err != nil {
		return err
	}
	in.Force = force
	if err := recoverLeaseFree(o, in.Leases, ""); err != nil {
		return err
	}
	plan, err := planRecovery(in)
	plan.LeaseNotChecked = in.LeaseNotChecked
	var ref refusal
	asJSON := o.Output == "json"
	refuse := func(stage string, err error) error {
		if asJSON {
			jsonLine(e.stdout, "recover_refused").Str("why", ref.why).Str("todo", ref.todo).Send()
		} else {
			fmt.Fprintf(e.stdout, "%s\n  REFUSED  %s.\n  %s.\nnothing was changed\n", stage, ref.why, ref.todo)
		}
		return exit.With(exit.Refused, fmt.Errorf("recover node %s: refused: %w", strings.Join(targets, " "), err))
	}
	if errors.As(err, &ref) {
		return refuse("preflight", err)
	}
	if err != nil {
		return err
	}
	for _, t := range plan.Targets {
		if t.Forced != "" {
			fmt.Fprintf(e.stderr, "kmsctl: WARNING: --force: %s; kmsctl will stop it and wipe %s\n", t.Forced, t.StoragePath)
		}
	}
	if asJSON {
		jsonLine(e.stdout, "recover_plan").Interface("plan", plan).Bool("check", o.Check).Send()
	} else {
		fmt.Fprintf(e.stdout, "preflight: ok\n%s\n", planText(plan))
		for _, n := range plan.LeaseNotChecked {
			fmt.Fprintf(e.stdout, "lease: not checked on %s (no SSH); it does not block the run, which takes the lease on the nodes that answer\n", n)
		}
	}
	if o.Check {
		if !asJSON {
			fmt.Fprintln(e.stdout, "--check: nothing was changed")
		}
		return nil
	}
	var changes []string
	for _, t := range plan.Targets {
		if t.VersionChange != "" {
			changes = append(changes, t.Host+": "+t.VersionChange)
		}
	}
	if len(changes) > 0 && yes && !f.allowVersionChange {
		ref = versionRefusal(changes)
		return refuse("--yes", ref)
	}
	if !yes {
		if !e.terminal || e.stdin == nil || asJSON {
			return exit.Usagef("recover node changes hosts: confirm on a terminal, or pass --yes (nothing was changed)")
		}
		if len(changes) > 0 {
			fmt.Fprintf(e.stdout, "The Key Manager's version changes on %s (VERSION CHANGE above). ", strings.Join(targets, ", "))
		}
		fmt.Fprintf(e.stdout, "Change %s now? [y/N] ", strings.Join(targets, ", "))
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "nothing was changed")
			return exit.Silent{Code: exit.Refused}
		}
	}
	return recoverRun(ctx, e, o, group, inv, hosts, recoverRecord{Plan: plan, Force: force, AllowVersionChange: f.allowVersionChange}, nil)
}

// versionRefusal is why --yes alone refuses a binary whose version is not
// the survivors': changes are "HOST: how it differs".
func versionRefusal(changes []string) refusal {
	return refusal{"the version would change: " + strings.Join(changes, "; "),
		"Install the survivors' version (kms_binary_src, or kms_binary_from: peer), or accept the change with --allow-version-change"}
}

// recoverLockFree refuses (exit 5, before anything is asked) when another
// run holds the lock of the nodes' cluster, unless --lock-wait is given:
// then the run waits for it when it takes the lock.
func recoverLockFree(e env, o options, nodes []inventory.KMSNode) error {
	return lockFreeFor(e, o, nodes, "")
}

// lockFreeFor is recoverLockFree for kmsctl resume of run self: when self
// holds the lock, it is still going.
func lockFreeFor(e env, o options, nodes []inventory.KMSNode, self string) error {
	if o.LockWait > 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		c := n.Cluster
		if c == "" {
			c = inventory.DefaultCluster
		}
		if seen[c] {
			continue
		}
		seen[c] = true
		st, err := lock.Status(locksDir(e.stateDir), c)
		if err != nil {
			return fmt.Errorf("read the lock of cluster %s: %w", c, err)
		}
		if st.Held && self != "" && st.Holder != nil && st.Holder.Run == self {
			return exit.With(exit.Locked, fmt.Errorf("resume: run %s is still going: it holds the lock of cluster %s (%s); nothing was changed. "+
				"Wait for it to end (`kmsctl lock status`)", self, c, st.Holder))
		}
		if st.Held {
			holder := "another run (its record is not written yet)"
			if st.Holder != nil {
				holder = st.Holder.String()
			}
			return exit.With(exit.Locked, fmt.Errorf("cluster %s is locked by %s; nothing was changed. "+
				"Wait with --lock-wait DURATION, or see `kmsctl lock status`", c, holder))
		}
	}
	return nil
}

// recoverLeaseFree refuses (exit 5, before anything is asked) when another
// run than self (the run a resume finishes; "" for none) holds the
// cluster's lease on a node (or a file there is not a lease), unless
// --lock-wait is given: then the run waits for it when it takes the lease.
func recoverLeaseFree(o options, leases []lease.NodeLease, self string) error {
	if o.LockWait > 0 {
		return nil
	}
	for _, nl := range leases {
		if !nl.Held() || (self != "" && nl.Lease != nil && nl.Lease.Run == self) {
			continue
		}
		held := &lease.HeldError{Cluster: clusterOfLease(nl), NodeLease: nl}
		return exit.With(exit.Locked, fmt.Errorf("recover node: %w; nothing was changed. Wait with --lock-wait DURATION, or see `kmsctl lock status`", held))
	}
	return nil
}

// clusterOfLease is the cluster a node's lease names.
func clusterOfLease(nl lease.NodeLease) string {
	if nl.Lease != nil {
		return nl.Lease.Cluster
	}
	return strings.TrimSuffix(strings.TrimPrefix(path.Base(nl.Path), "lease-"), ".json")
}

// recoverPreflight gathers, with one read-only play on every node at once,
// what status gathers plus the fingerprint of the HSM key to install (on
// the survivors) and whether each node holds the node files (the targets'
// are kept or installed, a survivor's may be copied from).
func recoverPreflight(ctx context.Context, e env, o options, group string, inv *inventory.Inventory, hosts []tasks.Host, nodes []inventory.KMSNode, targets []string) (recoverInput, error) {
	in := recoverInput{Targets: targets, Layout: map[string]inventory.KMSNode{}, Files: map[string][]recoverFile{}, Binaries: map[string]binaryVersion{}}
	mods := map[string]string{taskService: "service", taskHSM: "kms_hsm_fingerprint", taskAPI: "kms_status", taskOperatorHSM: "kms_hsm_check",
		taskBinaryVer: "kms_binary_version", taskLease: "kms_lease"}
	play := statusPlay(hosts)
	play.Tasks = append(play.Tasks, leaseTask())
	yes := true
	play.Tasks = append(play.Tasks, tasks.Task{Name: taskOperatorHSM, Module: taskOperatorHSM, Args: map[string]any{}, Become: &yes, IgnoreErrors: true,
		When: "not (inventory_hostname in recover_targets)"})
	// The version of a binary kept on a target, run there.
	play.Tasks = append(play.Tasks, tasks.Task{Name: taskBinaryVer, Module: taskBinaryVer, Args: map[string]any{}, IgnoreErrors: true,
		When: "inventory_hostname in recover_targets and kms_binary_src is not defined and kms_binary_from is not defined"})
	for _, n := range nodes {
		in.Layout[n.Host] = n
	}
	for i, f := range recoverFiles(inventory.KMSNode{}) {
		name := fileStatPrefix + f.What
		mods[name] = "stat"
		play.Tasks = append(play.Tasks, tasks.Task{Name: name, Module: name, Become: &yes, IgnoreErrors: true,
			Args: map[string]any{"path": fmt.Sprintf("{{ recover_files[%d] }}", i)}})
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
	play.Vars = map[string]any{"recover_targets": anySlice(targets)}
	g, r, err := runPreflight(ctx, e, o, inv, preflight{who: "recover", command: "recover node preflight --cluster " + group, play: play, modules: mods})
	if err != nil {
		return in, err
	}
	in.Nodes = g.states(nodes)
	if err := localSetupError(in.Nodes); err != nil {
		return in, err
	}
	in.Leases = g.heldLeases(nodes, time.Now())
	for _, n := range nodes {
		if r, ok := g.lookup(n.Host, taskLease); !ok || r.err != nil || r.res.Failed {
			in.LeaseNotChecked = append(in.LeaseNotChecked, n.Host)
		}
	}
	in.HostKeys = r.dialer.hostKeyErrors()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range nodes {
		res := g.results[n.Host]
		if r, ok := res[taskOperatorHSM]; ok && in.OperatorFP == "" {
			if fp, _ := r.res.Data["operator_fingerprint"].(string); fp != "" {
				in.OperatorFP = fp
			} else if in.OperatorErr == "" {
				in.OperatorErr = resultError(r)
			}
		}
		if slices.Contains(targets, n.Host) {
			switch r, ok := res[taskBinaryVer]; {
			case n.BinarySrc != "":
				in.Binaries[n.Host] = localBinaryVersion(ctx, n.BinarySrc)
			case n.BinaryFrom != "":
			case ok:
				bv := binaryVersion{Where: n.Binary + " on " + n.Host}
				if bv.Version, _ = r.res.Data["version"].(string); bv.Version == "" {
					bv.Err = resultError(r)
				}
				in.Binaries[n.Host] = bv
			}
		}
		// Every node's files: the targets' are installed or kept, a
		// survivor's may be copied to them (kms_*_from: peer).
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
	if in.OperatorFP == "" && in.OperatorErr == "" {
		in.OperatorErr = "no survivor could compare it"
	}
	return in, nil
}

// localBinaryVersion runs `SRC --version` on this machine: the binary
// kms_binary_src names, which recover node would install. It runs with an
// empty environment (never the keys kmsctl may have been given in it),
// no input, and at most 10 seconds. A binary for another system (a Linux
// server binary on a Mac) does not run here: its version is then unknown.
func localBinaryVersion(ctx context.Context, src string) binaryVersion {
	bv := binaryVersion{Where: inventory.VarBinarySrc + " " + src + " on this machine"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, src, "--version")
	cmd.Env = []string{}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		bv.Err = fmt.Sprintf("it does not run here: %v", err)
		if msg := strings.TrimSpace(out.String()); msg != "" {
			bv.Err += ": " + firstLine(msg)
		}
		return bv
	}
	if bv.Version = kmsmodules.BinaryVersion(out.String()); bv.Version == "" {
		bv.Err = fmt.Sprintf("its --version prints no version in the Key Manager's format (%q)", firstLine(strings.TrimSpace(out.String())))
	}
	return bv
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// recoverRecord is what recover node records in its journal (the plan's
// Data) for kmsctl resume: the plan it runs and whether --force and
// --allow-version-change were given.
type recoverRecord struct {
	Plan               recoverPlan `json:"plan"`
	Force              bool        `json:"force,omitempty"`
	AllowVersionChange bool        `json:"allow_version_change,omitempty"`
}

// recoverRun runs the recover-node playbook's phases as the plan says, in
// one run: every dead ID removed first, one edit each, then each node
// rebuilt and added, one at a time. It records the plan in the run's
// journal and each phase ("HOST phase") once every host finished its
// tasks. prior, for kmsctl resume, is the journal of the run it continues
// (o.Resume): the phases it records as done are not run again. It prints
// one line per phase with its time and ends with exit 3 when a host could
// not be reached.
func recoverRun(ctx context.Context, e env, o options, group string, inv *inventory.Inventory, hosts []tasks.Host, rec recoverRecord, prior *journal.Run) error {
	plan := rec.Plan
	reg := newRegistry(e, o)
	pb, err := playbooks.Load(playbooks.BuiltinPrefix+"recover-node", reg)
	if err != nil {
		return err
	}
	byName := layoutHosts(hosts)
	var plays []tasks.Play
	var keys []string              // every "HOST phase" of the plan, in order
	phaseOf := map[string]string{} // play name → phase group, for the report
	add := func(t recoverTarget, phases []string) {
		for _, ph := range phases {
			keys = append(keys, t.Host+" "+ph)
		}
		phases = slices.DeleteFunc(slices.Clone(phases), func(ph string) bool { return prior != nil && prior.IsDone(t.Host+" "+ph) })
		vars := map[string]any{"recover_host": t.Host, "recover_id": t.ID, "recover_endpoint": t.Endpoint, "recover_via": plan.Via,
			"recover_survivors": strings.Join(plan.Survivors, ",")}
		for _, p := range pb.Plays {
			pattern, err := tasks.RenderTemplate(p.Hosts, vars)
			if err != nil {
				continue
			}
			var ts []tasks.Task
			for _, task := range p.Tasks {
				if slices.ContainsFunc(task.Tags, func(tag string) bool { return slices.Contains(phases, tag) }) {
					ts = append(ts, task)
				}
			}
			if len(ts) == 0 {
				continue
			}
			var hs []tasks.Host
			for _, name := range strings.Split(pattern, ",") {
				hs = append(hs, byName[name])
			}
			name := fmt.Sprintf("%s: %s", t.Host, p.Name)
			phaseOf[name] = t.Host
			plays = append(plays, tasks.Play{Name: name, Hosts: hs, Vars: mergeVars(p.Vars, vars), Tasks: ts, Handlers: p.Handlers, Files: pb.Files, Pos: p.Pos})
		}
	}
	var unreachable, removed []string
	for _, t := range plan.Targets {
		phases := []string{"fence", "wipe", "remove"}
		if !t.Reachable {
			phases = []string{"remove"}
			unreachable = append(unreachable, t.Host)
			if t.ID >= 0 {
				removed = append(removed, t.Host)
			}
		}
		if t.ID < 0 {
			phases = slices.DeleteFunc(phases, func(p string) bool { return p == "remove" })
		}
		add(t, phases)
	}
	for _, t := range plan.Targets {
		if t.Reachable {
			add(t, []string{"push", "start", "add", "wait", "prove"})
		}
	}
	command := "recover node " + strings.Join(targetNames(plan), " ")
	if prior != nil {
		command = "resume " + prior.ID
	}
	r, err := newRunner(e, o, command, inv, reg, false)
	if err != nil {
		return err
	}
	if err := r.beginResumable(o, hosts, prior, journal.Plan{Command: "recover node", Args: targetNames(plan), Group: group, Phases: keys}, rec); err != nil {
		return r.s.finish(err)
	}
	times, marks := newPhases(plays, phaseOf)
	sink := r.engine.Sink
	r.engine.Sink = tasks.SinkFunc(func(ev tasks.Event) {
		times.event(ev)
		sink.Event(ev)
		// Unrecorded, a phase runs again on resume: safe, each task is
		// idempotent.
		r.journalPhase(marks, times, ev)
	})
	r.announceRun(e, o, prior != nil)
	start := time.Now()
	return r.runWith(ctx, plays, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil {
			return r.stopped(ctx, e, recap, err)
		}
		if o.Output == "json" {
			times.json(e.stdout, r.s.log.ID, plan, unreachable, time.Since(start))
		} else {
			times.print(e.stdout, plan, unreachable, time.Since(start))
		}
		if len(unreachable) > 0 {
			what := fmt.Sprintf("%s: no SSH, and no survivor lists it any more", joinAnd(unreachable))
			if len(removed) > 0 {
				what = fmt.Sprintf("removed the IDs of %s, which do not answer SSH; writes are available again", joinAnd(removed))
			}
			return exit.With(exit.Unreachable, fmt.Errorf("%s. To finish: `kmsctl recover node %s` when the host answers again, "+
				"or provision a replacement and add it (kms_add_node)", what, strings.Join(unreachable, " ")))
		}
		return nil
	})
}

func targetNames(p recoverPlan) []string {
	var out []string
	for _, t := range p.Targets {
		out = append(out, t.Host)
	}
	return out
}

func mergeVars(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, b)
	return out
}

// clusterOf is the cluster (kms_cluster) of a host of the inventory.
func clusterOf(h tasks.Host) string {
	if ih, ok := h.Target.(inventory.Host); ok && ih.KMS.Cluster != "" {
		return ih.KMS.Cluster
	}
	return inventory.DefaultCluster
}

// beginResumable readies r for a resumable run of hosts: it holds the
// locks of the hosts' clusters to the run's end, records plan (with those
// clusters, the inventories and rec as its data) in a new run's journal (a
// resume, prior, goes on under the plan it has), and names the resume in
// the advice for a run stopped early.
func (r *runner) beginResumable(o options, hosts []tasks.Host, prior *journal.Run, plan journal.Plan, rec any) error {
	clusters := map[string]bool{}
	for _, h := range hosts {
		clusters[clusterOf(h)] = true
	}
	r.locks = slices.Sorted(maps.Keys(clusters))
	if prior == nil {
		data, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("record the plan: %w", err)
		}
		plan.Clusters, plan.Inventories, plan.Data = r.locks, o.Inventories, data
		if err := r.s.journal.Plan(plan); err != nil {
			return err
		}
	}
	r.s.rerun = fmt.Sprintf("Finish it with `kmsctl resume %s`: it checks again what the steps left need and skips the phases already done", r.s.log.ID)
	return nil
}

// newPhases returns the phase times of plays, each task's phase being its
// play's phaseOf and its first tag ("HOST phase"), and the marks that
// find each phase done on every host of its play.
func newPhases(plays []tasks.Play, phaseOf map[string]string) (*phaseTimes, phaseMarks) {
	times := &phaseTimes{tagOf: map[string]string{}, task: map[string]time.Duration{}, took: map[string]time.Duration{}}
	for _, p := range plays {
		for _, t := range p.Tasks {
			times.tagOf[p.Name+"\x00"+t.Name] = phaseOf[p.Name] + " " + t.Tags[0]
		}
	}
	marks := phaseMarks{want: map[string]int{}, got: map[string]int{}}
	for _, p := range plays {
		for _, t := range p.Tasks {
			marks.want[times.tagOf[p.Name+"\x00"+t.Name]] += len(p.Hosts)
		}
	}
	return times, marks
}

// journalPhase records in the run's journal the phase that ev completes,
// if any; a phase it cannot record is a warning in the run log.
func (r *runner) journalPhase(marks phaseMarks, times *phaseTimes, ev tasks.Event) {
	if k, ok := marks.event(ev, times.tagOf); ok {
		if err := r.s.journal.Done(k); err != nil {
			r.s.logger.Warn().Err(err).Str("phase", k).Msg("phase done, not recorded in the journal")
		}
	}
}

// announceRun prints the ID of a resumable run as it starts (--output
// json: a recover_start event).
func (r *runner) announceRun(e env, o options, resumed bool) {
	if o.Output == "json" {
		jsonLine(e.stdout, "recover_start").Str("run", r.s.log.ID).Bool("resumed", resumed).Send()
	} else {
		fmt.Fprintf(e.stdout, "run %s (its journal: kmsctl runs show %[1]s)\n", r.s.log.ID)
	}
}

// stopped is the error of a resumable run the engine stopped with err: its
// exit code, and, unless interrupted, how to finish the run on stderr.
func (r *runner) stopped(ctx context.Context, e env, recap tasks.Recap, err error) error {
	err = exitError(ctx, recap, err)
	if ctx.Err() == nil {
		fmt.Fprintf(e.stderr, "kmsctl: run %s stopped; once the cause below is fixed, finish it with `kmsctl resume %[1]s` "+
			"(it checks again what the steps left need and skips the phases already done)\n", r.s.log.ID)
	}
	return err
}

// phaseMarks finds, from the engine's events, the phases ("HOST phase")
// whose every task finished on every host of its play.
type phaseMarks struct {
	want, got map[string]int // phase → host results expected, and ok so far
}

// event counts a host result that did not fail, and reports the phase it
// completes.
func (m phaseMarks) event(ev tasks.Event, tagOf map[string]string) (string, bool) {
	if ev.Type != tasks.EventHostResult {
		return "", false
	}
	k, ok := tagOf[ev.Play+"\x00"+ev.Task]
	if !ok {
		return "", false
	}
	switch ev.Status {
	case tasks.StatusOK, tasks.StatusChanged, tasks.StatusSkipped:
	default:
		return "", false
	}
	m.got[k]++
	return k, m.got[k] == m.want[k]
}

// phaseTimes sums, per target and phase, the time of the tasks run.
type phaseTimes struct {
	tagOf map[string]string        // play NUL task → "HOST phase"
	task  map[string]time.Duration // play NUL task → its slowest host
	took  map[string]time.Duration
	order []string
}

func (p *phaseTimes) event(ev tasks.Event) {
	if ev.Type != tasks.EventHostResult {
		return
	}
	k, ok := p.tagOf[ev.Play+"\x00"+ev.Task]
	if !ok {
		return
	}
	if _, seen := p.took[k]; !seen {
		p.order = append(p.order, k)
	}
	// Hosts of one task run at once: a task takes as long as its slowest.
	tk := ev.Play + "\x00" + ev.Task
	if d := ev.Duration; d > p.task[tk] {
		p.took[k] += d - p.task[tk]
		p.task[tk] = d
	}
}

// json writes the recap as one recover event: the run ID, each target's
// phases with their times (seconds), the hosts rebuilt and those whose ID
// only was removed.
func (p *phaseTimes) json(w io.Writer, run string, plan recoverPlan, unreachable []string, total time.Duration) {
	type phase struct {
		Phase   string  `json:"phase"`
		Seconds float64 `json:"seconds"`
	}
	var phases []phase
	for _, k := range p.order {
		phases = append(phases, phase{k, p.took[k].Seconds()})
	}
	var rebuilt []string
	for _, t := range plan.Targets {
		if !slices.Contains(unreachable, t.Host) {
			rebuilt = append(rebuilt, t.Host)
		}
	}
	jsonLine(w, "recover").Str("run", run).Interface("phases", phases).Strs("recovered", rebuilt).Strs("id_removed_only", unreachable).
		Float64("seconds", total.Seconds()).Send()
}

// print writes one line per target and phase with its time, and the
// total.
func (p *phaseTimes) print(w io.Writer, plan recoverPlan, unreachable []string, total time.Duration) {
	fmt.Fprintln(w, "\nrecap")
	for _, k := range p.order {
		fmt.Fprintf(w, "  %-24s %6.1fs\n", k, p.took[k].Seconds())
	}
	var rebuilt []string
	for _, t := range plan.Targets {
		if !slices.Contains(unreachable, t.Host) {
			rebuilt = append(rebuilt, t.Host)
		}
	}
	if len(rebuilt) > 0 {
		fmt.Fprintf(w, "RECOVERED %s in %.1fs\n", joinAnd(rebuilt), total.Seconds())
	}
	if len(unreachable) > 0 {
		fmt.Fprintf(w, "ID REMOVED, NOT REBUILT: %s (no SSH)\n", joinAnd(unreachable))
	}
}
