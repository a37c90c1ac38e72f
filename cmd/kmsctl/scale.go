package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// newScaleCommand builds `kmsctl scale add HOST` and `kmsctl scale remove HOST`.
func newScaleCommand(e env, opts optionsFunc) *cli.Command {
	sub := func(op, usage string) *cli.Command {
		return &cli.Command{
			Name:      op,
			Usage:     usage,
			ArgsUsage: "HOST",
			Flags: []cli.Flag{
				clusterFlag(),
				&cli.BoolFlag{Name: "yes", Usage: "change the cluster without asking (for scripts)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return exit.Usagef("scale %s: name one host (kmsctl scale %s HOST)", op, op)
				}
				o, err := opts(c)
				if err != nil {
					return err
				}
				return scale(c.Context, e, o, op, c.String("cluster"), c.Args().First(), c.Bool("yes"))
			},
		}
	}
	return &cli.Command{
		Name:   "scale",
		Usage:  "add a node to a healthy cluster, or decommission a healthy node",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			sub("add", "provision if needed, start clean, add through a healthy member, wait until caught up (built-in playbooks provision and scale-add)"),
			sub("remove", "decommission a healthy node: CLUSTER:REMOVENODE through another member, wait, stop, remove its files, the env file with the HSM key first (built-in playbook scale-remove)"),
		},
	}
}

// Task names of the scale preflight beyond status's.
const (
	taskScaleHSM     = "HSM key to install"
	taskScaleStorage = "storage path's content"
)

// scale runs scale add or scale remove: the read-only preflight on every
// node of the cluster, the plan, the confirmation (unless yes or --check),
// then the built-in playbooks, under the cluster's lock.
func scale(ctx context.Context, e env, o options, op, group, target string, yes bool) error {
	if o.Limit != "" {
		return exit.Usagef("scale %s: --limit is not taken: the preflight asks every node of the cluster (name the cluster with --cluster GROUP)", op)
	}
	inv, hosts, nodes, err := loadCluster(e, o, group)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(nodes, func(n inventory.KMSNode) bool { return n.Host == target }) {
		return notAHost("scale "+op, "", target, group, nodes)
	}
	for i := range hosts {
		hosts[i] = layoutHost(hosts[i])
	}
	if op == "add" {
		// scale add provisions the target as `kmsctl provision` does.
		i := slices.IndexFunc(nodes, func(n inventory.KMSNode) bool { return n.Host == target })
		if err := peerCopyRefusal("scale add", nodes[i:i+1]); err != nil {
			printRefusal(e, o.Output == "json", "scale_refused", err.(refusal))
			return exit.With(exit.Refused, fmt.Errorf("scale %s %s: refused: %w", op, target, err))
		}
	}
	if err := recoverLockFree(e, o, nodes); err != nil {
		return err
	}
	var operatorOn []string
	if op == "add" {
		for _, n := range nodes {
			if n.Host != target {
				operatorOn = append(operatorOn, n.Host)
			}
		}
	}
	in, err := gatherScale(ctx, e, o, fmt.Sprintf("scale %s %s preflight --cluster %s", op, target, group), nil, inv, hosts, nodes, operatorOn)
	if err != nil {
		return err
	}
	in.Target = target
	plan, err := planScaleAdd(in)
	if op == "remove" {
		plan, err = planScaleRemove(in)
	}
	asJSON := o.Output == "json"
	var ref refusal
	var un unreachableTarget
	switch {
	case errors.As(err, &ref):
		printRefusal(e, asJSON, "scale_refused", ref)
		return exit.With(exit.Refused, fmt.Errorf("scale %s %s: refused: %w", op, target, err))
	case errors.As(err, &un):
		return exit.With(exit.Unreachable, fmt.Errorf("scale %s: %w", op, err))
	case err != nil:
		return err
	}
	if asJSON {
		jsonLine(e.stdout, "scale_plan").Interface("plan", plan).Bool("check", o.Check).Send()
	} else {
		fmt.Fprintf(e.stdout, "preflight: ok\n%s", scalePlanText(plan))
		if plan.Done != "" {
			fmt.Fprintln(e.stdout, plan.Done)
		}
	}
	if len(plan.Phases) == 0 && !plan.Provision {
		return nil
	}
	if o.Check {
		// The provision playbook's own --check shows what it would change.
		if plan.Provision {
			if err := scaleRun(ctx, e, o, inv, hosts, plan, true); err != nil {
				return err
			}
		}
		if !asJSON {
			fmt.Fprintln(e.stdout, "--check: nothing was changed")
		}
		return nil
	}
	if !yes {
		if !e.terminal || e.stdin == nil || asJSON {
			return exit.Usagef("scale %s changes the cluster: confirm on a terminal, or pass --yes (nothing was changed)", op)
		}
		fmt.Fprintf(e.stdout, "Scale %s %s now? [y/N] ", op, target)
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(e.stdout, "nothing was changed")
			return exit.Silent{Code: exit.Refused}
		}
	}
	return scaleRun(ctx, e, o, inv, hosts, plan, false)
}

// gatherScale runs status's read-only play on every node at once, plus
// kms_hsm_check (the operator's HSM key against the node's) on the hosts
// of operatorOn, and returns what it learned. It runs as a run of its own
// (command) when within is nil, else as the preflight of within's run.
func gatherScale(ctx context.Context, e env, o options, command string, within *runner, inv *inventory.Inventory, hosts []tasks.Host, nodes []inventory.KMSNode, operatorOn []string) (scaleInput, error) {
	var in scaleInput
	mods := map[string]string{taskService: "service", taskHSM: "kms_hsm_fingerprint", taskAPI: "kms_status", taskScaleHSM: "kms_hsm_check", taskScaleStorage: "command"}
	play := statusPlay(hosts)
	yes := true
	if len(operatorOn) > 0 {
		play.Tasks = append(play.Tasks, tasks.Task{Name: taskScaleHSM, Module: taskScaleHSM, Args: map[string]any{}, Become: &yes, IgnoreErrors: true,
			When: "inventory_hostname in scale_operator_on"},
			// What is in the target's storage path: a node started on it must start clean.
			tasks.Task{Name: taskScaleStorage, Module: taskScaleStorage, Become: &yes, IgnoreErrors: true, When: "not (inventory_hostname in scale_operator_on)",
				Args: map[string]any{"cmd": "find {{ " + inventory.VarStoragePath + " }} -mindepth 1 -maxdepth 1 -print -quit"}})
	}
	play.Vars = map[string]any{"scale_operator_on": anySlice(operatorOn)}
	g, _, err := runPreflight(ctx, e, o, inv, preflight{who: "scale", command: command, rerun: "the preflight only reads: run it again", play: play, modules: mods, within: within})
	if err != nil {
		return in, err
	}
	in.Nodes = g.states(nodes)
	if err := localSetupError(in.Nodes); err != nil {
		return in, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	in.Storage = map[string]string{}
	for _, n := range nodes {
		if r, ok := g.results[n.Host][taskScaleStorage]; ok {
			switch {
			case r.err == nil && !r.res.Failed:
				in.Storage[n.Host] = strings.TrimSpace(r.res.Stdout)
			case strings.Contains(r.res.Stderr, "No such file or directory"):
				// Absent: provision creates it empty.
			default:
				in.Storage[n.Host] = "(could not be listed: " + resultError(r) + ")"
			}
		}
	}
	for _, n := range nodes {
		r, ok := g.results[n.Host][taskScaleHSM]
		if !ok || in.OperatorFP != "" {
			continue
		}
		if fp, _ := r.res.Data["operator_fingerprint"].(string); fp != "" {
			in.OperatorFP = fp
		} else if in.OperatorErr == "" {
			in.OperatorErr = resultError(r)
		}
	}
	if in.OperatorFP == "" && in.OperatorErr == "" {
		in.OperatorErr = "no member could compare it"
	}
	return in, nil
}

// gatherStates is gatherScale for commands that need only each node's
// state (provision, drill), run as the preflight of r's run: the command
// writes one run log and one journal.
func gatherStates(ctx context.Context, e env, o options, r *runner, inv *inventory.Inventory, hosts []tasks.Host, nodes []inventory.KMSNode) ([]nodeState, error) {
	in, err := gatherScale(ctx, e, o, "", r, inv, hosts, nodes, nil)
	return in.Nodes, err
}

// scaleRun runs the plan's playbooks: for add, provision (when the plan
// says so) then scale-add's phases; for remove, scale-remove's phases. With
// check, only the provision playbook runs, in check mode.
func scaleRun(ctx context.Context, e env, o options, inv *inventory.Inventory, hosts []tasks.Host, plan scalePlan, check bool) error {
	reg := newRegistry(e, o)
	byName := map[string]tasks.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	hostsOf := func(pattern string) []tasks.Host {
		var hs []tasks.Host
		for _, n := range strings.Split(pattern, ",") {
			if h, ok := byName[n]; ok {
				hs = append(hs, h)
			}
		}
		return hs
	}
	vars := map[string]any{"scale_host": plan.Host, "scale_endpoint": plan.Endpoint, "scale_via": plan.Via, "scale_members": strings.Join(plan.Members, ",")}
	var plays []tasks.Play
	if plan.Provision {
		ps, err := builtinPlays(reg, "provision", hostsOf, map[string]any{"provision_hosts": plan.Host}, nil)
		if err != nil {
			return err
		}
		plays = append(plays, ps...)
	}
	if !check {
		ps, err := builtinPlays(reg, "scale-"+plan.Op, hostsOf, vars, plan.Phases)
		if err != nil {
			return err
		}
		plays = append(plays, ps...)
	}
	o.Check = check
	r, err := newRunner(e, o, fmt.Sprintf("scale %s %s", plan.Op, plan.Host), inv, reg, false)
	if err != nil {
		return err
	}
	asJSON := o.Output == "json"
	if !asJSON && !check {
		fmt.Fprintf(e.stdout, "run %s (its journal: kmsctl runs show %[1]s)\n", r.s.log.ID)
	}
	start := time.Now()
	return r.runWith(ctx, plays, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil {
			return exitError(ctx, recap, err)
		}
		if check {
			return nil
		}
		took := time.Since(start)
		if asJSON {
			jsonLine(e.stdout, "scale").Str("run", r.s.log.ID).Str("op", plan.Op).Str("host", plan.Host).Float64("seconds", took.Seconds()).Send()
			return nil
		}
		switch plan.Op {
		case "add":
			fmt.Fprintf(e.stdout, "ADDED %s (%s) to the cluster through %s in %.1fs\n", plan.Host, plan.Endpoint, plan.Via, took.Seconds())
		default:
			fmt.Fprintf(e.stdout, "REMOVED %s (%s) in %.1fs: no member lists it, its service is stopped and its files are gone\n", plan.Host, plan.Endpoint, took.Seconds())
		}
		return nil
	})
}
