package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/lock"
)

// newResumeCommand builds `kmsctl resume RUN-ID`.
func newResumeCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "finish a run that stopped (kmsctl killed, a host cut off): check again what its steps left need, skip the phases its journal records as done",
		ArgsUsage: "RUN-ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "yes", Usage: "change the hosts without asking (for scripts)"},
			&cli.BoolFlag{Name: "allow-version-change", Usage: "accept, with --yes, a binary still to push whose version is not the survivors' (or unknown), as recover node's flag does; a run begun with it keeps it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exit.Usagef("resume: want exactly one run ID (see 'kmsctl runs ls'), got %d arguments", c.NArg())
			}
			o, err := opts(c)
			if err != nil {
				return err
			}
			return resumeRun(c.Context, e, o, c.Args().First(), resumeFlags{yes: c.Bool("yes"), allowVersionChange: c.Bool("allow-version-change")})
		},
	}
}

// resumeFlags are resume's own flags.
type resumeFlags struct {
	// yes changes the hosts without asking; allowVersionChange accepts
	// with it a binary still to push whose version is not the
	// survivors' (recover node).
	yes, allowVersionChange bool
}

// resumeHook continues an unfinished run of one command: it checks again
// the preconditions of the steps still to run, then runs them under the
// run's ID (o.Resume), appending to its journal. Each resumable command
// records a journal.Plan naming itself and has a hook here.
type resumeHook func(ctx context.Context, e env, o options, run *journal.Run, f resumeFlags) error

// resumeHookFor returns the hook of a journal.Plan's command, nil when
// this kmsctl cannot resume it.
func resumeHookFor(command string) resumeHook {
	switch command {
	case "recover node":
		return resumeRecoverNode
	case "recover cluster":
		return resumeRecoverCluster
	}
	return nil
}

// resumeRun reads the journal of run id and hands it to its command's
// resume hook. An unknown run, one without a plan (a play) and one that
// ended ok are usage errors; one still going exits 5.
func resumeRun(ctx context.Context, e env, o options, id string, f resumeFlags) error {
	path, err := journal.Path(e.stateDir, id)
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	run, err := journal.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return exit.Usagef("resume: no run %s in %s; see 'kmsctl runs ls'", id, e.stateDir)
	}
	if err != nil {
		return err
	}
	if run.Plan == nil {
		return exit.Usagef("resume: run %s (`kmsctl %s`) cannot be resumed: only recover node and recover cluster record the plan resume needs; "+
			"see what it did with `kmsctl runs show %[1]s`", id, run.Command)
	}
	if run.End != nil && run.End.ExitCode == exit.OK {
		return exit.Usagef("resume: run %s (`kmsctl %s`) ended ok: there is nothing to resume (`kmsctl runs show %[1]s`)", id, run.Command)
	}
	if alive, who := runAlive(run); alive {
		return exit.With(exit.Locked, fmt.Errorf("resume: run %s is still going (%s); nothing was changed. Wait for it to end (`kmsctl lock status`)", id, who))
	}
	hook := resumeHookFor(run.Plan.Command)
	if hook == nil {
		return exit.Usagef("resume: run %s is a %q run, which this kmsctl (%s) cannot resume", id, run.Plan.Command, version)
	}
	return hook(ctx, e, o, run, f)
}

// runAlive reports whether the process that ran (or last resumed) run is
// still running on this machine, and names it.
func runAlive(run *journal.Run) (bool, string) {
	user, pid := run.User, run.PID
	if n := len(run.Resumes); n > 0 {
		user, pid = run.Resumes[n-1].User, run.Resumes[n-1].PID
	}
	// This process is not the run's: its PID was the run's once.
	if run.End != nil || user != operator() || pid <= 0 || pid == os.Getpid() {
		return false, ""
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false, ""
	}
	if err := p.Signal(syscall.Signal(0)); err != nil && !errors.Is(err, syscall.EPERM) {
		return false, ""
	}
	return true, fmt.Sprintf("pid %d of %s is running", pid, user)
}

// resumeRecoverNode is recover node's resume hook: the inventory must
// still say what the run began with (targets, endpoints, storage paths,
// cluster), the same read-only preflight runs again, and planResume
// checks the preconditions of the phases not done; then the plan is shown
// (the phases done marked), confirmed, and run under the same ID. A
// binary still to push whose version is not the survivors' is refused with
// --yes, as recover node refuses it, unless the run began with
// --allow-version-change, the resume is given it, or the run's plan showed
// that very change (it was accepted when the run began); a terminal asks.
func resumeRecoverNode(ctx context.Context, e env, o options, run *journal.Run, f resumeFlags) error {
	yes := f.yes
	var rec recoverRecord
	if err := json.Unmarshal(run.Plan.Data, &rec); err != nil {
		return fmt.Errorf("resume: read run %s's plan: %w", run.ID, err)
	}
	if o.Limit != "" {
		return exit.Usagef("resume: --limit is not taken: the preflight asks every node of the cluster")
	}
	if !o.InventoryExplicit && len(run.Plan.Inventories) > 0 {
		o.Inventories, o.InventoryExplicit = slices.Clone(run.Plan.Inventories), true
	}
	group := run.Plan.Group
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	hosts, nodes, err := statusHosts(inv, o, group)
	if err != nil {
		return err
	}
	if err := checkAPIKeys(e, o, nodes); err != nil {
		return err
	}
	asJSON := o.Output == "json"
	refuse := func(err error) error {
		var ref refusal
		if errors.As(err, &ref) {
			if asJSON {
				jsonLine(e.stdout, "recover_refused").Str("run", run.ID).Str("why", ref.why).Str("todo", ref.todo).Send()
			} else {
				fmt.Fprintf(e.stdout, "resume %s\n  REFUSED  %s.\n  %s.\nnothing was changed\n", run.ID, ref.why, ref.todo)
			}
			return exit.With(exit.Refused, fmt.Errorf("resume %s: refused: %w", run.ID, err))
		}
		return err
	}
	if err := resumeInventoryChanged(run, rec, nodes); err != nil {
		return refuse(err)
	}
	if err := lockFreeFor(e, o, nodes, run.ID); err != nil {
		return err
	}
	in, err := recoverPreflight(ctx, e, o, group, inv, hosts, nodes, targetNames(rec.Plan))
	if err != nil {
		return err
	}
	// The run's own lease, left on the nodes by a killed kmsctl, is the
	// resume's to take over (it goes on under the run's ID); another's
	// stops it here.
	if err := recoverLeaseFree(o, in.Leases, run.ID); err != nil {
		return err
	}
	done := func(host, phase string) bool { return run.IsDone(host + " " + phase) }
	plan, err := planResume(in, rec, done)
	if err != nil {
		return refuse(err)
	}
	ask := resumeAsk{yes: yes}
	if changes := versionChangesLeft(rec.Plan, plan, done); len(changes) > 0 {
		ask.note = fmt.Sprintf("The Key Manager's version changes on %s (VERSION CHANGE above). ", strings.Join(changedHosts(changes), ", "))
		if !f.allowVersionChange && !rec.AllowVersionChange {
			ask.refuseYes = func() error { return refuse(versionRefusal(changes)) }
		}
	}
	rec.Plan = plan
	if ok, err := confirmResume(e, o, run, plan, planTextDone(plan, done), ask); !ok {
		return err
	}
	o.Resume = run.ID
	return recoverRun(ctx, e, o, group, inv, hosts, rec, run)
}

// confirmResume shows the plan of run's resume (planText; --output json: a
// resume_plan event with plan) after what the run did and how it ended.
// With --check it stops there: false and nil. Else, unless yes, it asks on
// the terminal (none, or --output json: a usage error) and a "no" stops
// it: false and exit.Refused. With yes, ask.refuseYes, when set, stops it
// instead (what it returns); ask.note comes before the question. True: the
// resume goes on.
func confirmResume(e env, o options, run *journal.Run, plan any, planText string, ask resumeAsk) (bool, error) {
	yes := ask.yes
	asJSON := o.Output == "json"
	ended := "it has no end (kmsctl was killed)"
	if run.End != nil {
		ended = fmt.Sprintf("it ended %s (exit %d)", run.End.Outcome, run.End.ExitCode)
	}
	if asJSON {
		jsonLine(e.stdout, "resume_plan").Str("run", run.ID).Str("command", run.Command).Strs("done", nonNil(run.Done)).
			Interface("plan", plan).Bool("check", o.Check).Send()
	} else {
		fmt.Fprintf(e.stdout, "run %s: kmsctl %s, started %s by %s; %s\ndone: %s\npreflight of the steps left: ok\n%s\n",
			run.ID, run.Command, run.Start.UTC().Format(time.DateTime+" MST"), run.User, ended, doneText(run.Done), planText)
	}
	if o.Check {
		if !asJSON {
			fmt.Fprintln(e.stdout, "--check: nothing was changed")
		}
		return false, nil
	}
	if yes && ask.refuseYes != nil {
		return false, ask.refuseYes()
	}
	if !yes {
		if !e.terminal || e.stdin == nil || asJSON {
			return false, exit.Usagef("resume changes hosts: confirm on a terminal, or pass --yes (nothing was changed)")
		}
		fmt.Fprintf(e.stdout, "%sResume run %s now? [y/N] ", ask.note, run.ID)
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "nothing was changed")
			return false, exit.Silent{Code: exit.Refused}
		}
	}
	return true, nil
}

// resumeAsk is what confirmResume asks: yes goes on without asking,
// unless refuseYes is set (it says what --yes alone does not accept and
// returns the error); note comes before the question on a terminal.
type resumeAsk struct {
	yes       bool
	refuseYes func() error
	note      string
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func doneText(done []string) string {
	if len(done) == 0 {
		return "no phase yet"
	}
	return strings.Join(done, ", ")
}

// versionChangesLeft are the targets of plan (the resume's) whose binary is
// still to push and whose version is not the survivors' (or unknown),
// when the plan the run began with (began) did not show that same change:
// a change shown then was accepted then (--allow-version-change, or on a
// terminal). Each is "HOST: how it differs", as recover node names them.
func versionChangesLeft(began, plan recoverPlan, done func(host, phase string) bool) []string {
	var changes []string
	for _, t := range plan.Targets {
		if !t.Reachable || done(t.Host, "push") || t.VersionChange == "" {
			continue
		}
		if slices.ContainsFunc(began.Targets, func(b recoverTarget) bool { return b.Host == t.Host && b.VersionChange == t.VersionChange }) {
			continue
		}
		changes = append(changes, t.Host+": "+t.VersionChange)
	}
	return changes
}

// changedHosts are the hosts of versionChangesLeft's changes.
func changedHosts(changes []string) []string {
	var hosts []string
	for _, c := range changes {
		h, _, _ := strings.Cut(c, ": ")
		hosts = append(hosts, h)
	}
	return hosts
}

// resumeInventoryChanged refuses a resume when the inventory no longer says
// what the run began with, where that matters: every target still a host
// of the group, with the same kms_endpoint (the ID to remove and the node
// to add), kms_storage_path (what is wiped) and cluster (the lock). The
// sources of the node's files may change: the push installs what the
// inventory names now, and the plan shows it.
func resumeInventoryChanged(run *journal.Run, rec recoverRecord, nodes []inventory.KMSNode) error {
	byHost := map[string]inventory.KMSNode{}
	for _, n := range nodes {
		byHost[n.Host] = n
	}
	var changes []string
	for _, t := range rec.Plan.Targets {
		n, ok := byHost[t.Host]
		cluster := n.Cluster
		if cluster == "" {
			cluster = inventory.DefaultCluster
		}
		switch {
		case !ok:
			changes = append(changes, fmt.Sprintf("%s is no longer a host of group %s", t.Host, run.Plan.Group))
			continue
		case n.Endpoint != t.Endpoint:
			changes = append(changes, fmt.Sprintf("%s's kms_endpoint is %s, the run began with %s", t.Host, n.Endpoint, t.Endpoint))
		case n.StoragePath != t.StoragePath:
			changes = append(changes, fmt.Sprintf("%s's kms_storage_path is %s, the run began with %s", t.Host, n.StoragePath, t.StoragePath))
		}
		if len(run.Plan.Clusters) > 0 && !slices.Contains(run.Plan.Clusters, cluster) {
			changes = append(changes, fmt.Sprintf("%s's kms_cluster is %s, the run locked %s", t.Host, cluster, strings.Join(run.Plan.Clusters, ", ")))
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return refusal{"the inventory changed since run " + run.ID + " began: " + strings.Join(changes, "; "),
		fmt.Sprintf("Put it back as it was (`kmsctl runs show %s` shows the run), or start over with `kmsctl recover node %s`, which checks everything again",
			run.ID, strings.Join(targetNames(rec.Plan), " "))}
}

// recoverPhasesOnHost are the phases that work on the target's host over
// SSH (the others go through a survivor).
var recoverPhasesOnHost = []string{"fence", "wipe", "push", "start", "prove"}

// planResume applies to what the preflight gathered only the rules of the
// phases not done (done reports those the journal records): a pure
// function. A target not yet fenced and wiped must still be proven dead; a
// target whose ID is still to be removed must not be seen up; files are
// checked when the push is still to come, and the HSM keys (also against
// the key the run began with) when an env file is still to be written. A
// target already added answers and is a member: no reason to refuse. A
// target with steps left on its host that does not answer SSH stops the
// resume (exit 3) before anything changes.
func planResume(in recoverInput, rec recoverRecord, done func(host, phase string) bool) (recoverPlan, error) {
	byHost := map[string]nodeState{}
	for _, n := range in.Nodes {
		byHost[n.Host] = n
	}
	var p recoverPlan
	survivors, err := p.pickSurvivors(in, "The steps left go through a survivor; check with `kmsctl status`, and resume when one answers")
	if err != nil {
		return p, err
	}
	for _, s := range survivors {
		if s.Version != "" && !slices.Contains(p.Versions, s.Version) {
			p.Versions = append(p.Versions, s.Version)
		}
	}
	slices.Sort(p.Versions)
	p.HSM = rec.Plan.HSM
	pushLeft := slices.ContainsFunc(rec.Plan.Targets, func(t recoverTarget) bool { return t.Reachable && !done(t.Host, "push") })
	if pushLeft {
		hp, err := planRecovery(recoverInput{Nodes: survivors, OperatorFP: in.OperatorFP, OperatorErr: in.OperatorErr})
		if err != nil {
			return p, err
		}
		if hp.HSM != rec.Plan.HSM {
			return p, refusal{fmt.Sprintf("the survivors' HSM key (%s) is not the one the run began with (%s)", hp.HSM, rec.Plan.HSM),
				"Find out which key the cluster's data is sealed with before going on (`kmsctl status`)"}
		}
	}
	in.Force = rec.Force
	var unreachable []string
	for _, t := range rec.Plan.Targets {
		n, ok := byHost[t.Host]
		if !ok {
			return p, refusal{t.Host + " is not a node of the cluster's inventory group", "Put the inventory back as the run began with it"}
		}
		hostLeft := t.Reachable && slices.ContainsFunc(recoverPhasesOnHost, func(ph string) bool { return !done(t.Host, ph) })
		if hostLeft && !n.SSH {
			unreachable = append(unreachable, t.Host)
			continue
		}
		switch {
		case t.Reachable && (!done(t.Host, "fence") || !done(t.Host, "wipe")):
			if _, err := deadTarget(t.Host, byHost, survivors, in); err != nil {
				return p, err
			}
		case !done(t.Host, "remove") && t.ID >= 0:
			var seenUp []string
			for _, s := range survivors {
				if id, listed := s.View.memberID(t.Endpoint); listed && id == t.ID && !slices.Contains(s.View.Down, id) {
					seenUp = append(seenUp, s.Host)
				}
			}
			if len(seenUp) > 0 {
				return p, refusal{fmt.Sprintf("node %d (%s) is up as seen by %s, and the run has still to remove its ID", t.ID, t.Host, joinAnd(seenUp)),
					"Something started it since the run stopped: find out what with `kmsctl status` before going on"}
			}
		}
		if files, ok := in.Files[t.Host]; ok {
			t.Files = files
		}
		if t.Reachable && !done(t.Host, "push") {
			if err := checkLayout(t, n); err != nil {
				return p, err
			}
			// Files copied from a peer come from the survivor the
			// resume goes through, which may not be the one the run
			// began with.
			if err := checkPeerFiles(t, p.Via, in); err != nil {
				return p, err
			}
			// The binary pushed is the one the inventory names now:
			// its version is checked again, as recover node checks it.
			t.BinaryVersion, t.VersionChange = "", ""
			checkVersion(&t, p, byHost, in)
		}
		p.Targets = append(p.Targets, t)
	}
	if len(unreachable) > 0 {
		return p, exit.With(exit.Unreachable, fmt.Errorf("%s does not answer SSH, and the run still has steps to do on it; nothing was changed. "+
			"Resume again when it answers", joinAnd(unreachable)))
	}
	return p, nil
}

// interruptedRuns are the runs of a resumable command on one of clusters
// that stopped without an end, whose process is gone (it holds no lock and
// does not run here), and that no later run of the same command on the
// same hosts finished: the runs `kmsctl resume` is for.
func interruptedRuns(stateDir string, clusters []string) ([]*journal.Run, error) {
	runs, err := journal.List(stateDir)
	if err != nil {
		return nil, err
	}
	var out []*journal.Run
	for i, r := range runs {
		if r.Plan == nil || !unfinished(r) || !slices.ContainsFunc(r.Plan.Clusters, func(c string) bool { return slices.Contains(clusters, c) }) {
			continue
		}
		if alive, _ := runAlive(r); alive || lockedBy(stateDir, r) {
			continue
		}
		superseded := slices.ContainsFunc(runs[i+1:], func(l *journal.Run) bool {
			return l.Plan != nil && l.End != nil && l.End.ExitCode == exit.OK && l.Plan.Command == r.Plan.Command &&
				!slices.ContainsFunc(r.Plan.Args, func(a string) bool { return !slices.Contains(l.Plan.Args, a) })
		})
		if !superseded {
			out = append(out, r)
		}
	}
	return out, nil
}

// unfinished reports whether run r stopped before its plan's end: killed
// (its journal has no end), interrupted by Ctrl-C or SIGTERM (an end with
// exit 130), or stopped by a failed or unreachable host. A run that ended
// well, was refused or found the cluster locked (it changed nothing) or
// stopped on a usage error is not.
func unfinished(r *journal.Run) bool {
	if r.End == nil {
		return true
	}
	switch r.End.ExitCode {
	case exit.OK, exit.Usage, exit.Refused, exit.Locked:
		return false
	}
	return true
}

// lockedBy reports whether run r holds the lock of one of its clusters on
// this machine: it is still going.
func lockedBy(stateDir string, r *journal.Run) bool {
	for _, c := range r.Plan.Clusters {
		if st, err := lock.Status(locksDir(stateDir), c); err == nil && st.Held && st.Holder != nil && st.Holder.Run == r.ID {
			return true
		}
	}
	return false
}

// noticeInterrupted says on stderr, for a command starting on the clusters
// of nodes, which runs on them stopped unfinished, with the command that
// finishes each. A journal that cannot be read is said too; neither stops
// the command.
func noticeInterrupted(e env, nodes []inventory.KMSNode) {
	clusters := map[string]bool{}
	for _, n := range nodes {
		c := n.Cluster
		if c == "" {
			c = inventory.DefaultCluster
		}
		clusters[c] = true
	}
	var names []string
	for c := range clusters {
		names = append(names, c)
	}
	runs, err := interruptedRuns(e.stateDir, names)
	if err != nil {
		fmt.Fprintf(e.stderr, "kmsctl: warning: could not look for interrupted runs: %v\n", err)
		return
	}
	for _, r := range runs {
		fmt.Fprintf(e.stderr, "kmsctl: NOTE: run %s (`kmsctl %s`, started %s by %s) on cluster %s stopped unfinished%s; finish it with `kmsctl resume %[1]s`\n",
			r.ID, r.Command, r.Start.UTC().Format("2006-01-02 15:04 MST"), r.User, strings.Join(r.Plan.Clusters, ", "), lastDone(r))
	}
}

// lastDone names the last phase the run finished, for the notice.
func lastDone(r *journal.Run) string {
	if len(r.Done) == 0 {
		return " before its first phase finished"
	}
	return fmt.Sprintf(" after %q", r.Done[len(r.Done)-1])
}
