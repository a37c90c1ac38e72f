package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// newProvisionCommand builds `kmsctl provision HOST...`.
func newProvisionCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:      "provision",
		Usage:     "prepare Key Manager hosts: service user, directories, binary, certificates, config, env file, unit; service stopped, node outside any cluster (built-in playbook provision)",
		ArgsUsage: "HOST...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return exit.Usagef("provision: name the hosts to prepare (kmsctl provision HOST...)")
			}
			o, err := opts(c)
			if err != nil {
				return err
			}
			return provision(c.Context, e, o, c.Args().Slice())
		},
	}
}

// provision refuses any target whose service runs or whose Key Manager
// answers (a read-only preflight on every target at once), then runs the
// built-in provision playbook on the targets.
func provision(ctx context.Context, e env, o options, targets []string) error {
	if o.Limit != "" {
		return exit.Usagef("provision: --limit is not taken: name the hosts to prepare")
	}
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	hosts, nodes, err := namedHosts(inv, o, "provision", targets)
	if err != nil {
		return err
	}
	asJSON := o.Output == "json"
	if err := peerCopyRefusal("provision", nodes); err != nil {
		printRefusal(e, asJSON, "provision_refused", err.(refusal))
		return exit.With(exit.Refused, fmt.Errorf("provision %s: refused: %w", strings.Join(targets, " "), err))
	}
	if err := checkAPIKeys(e, o, nodes); err != nil {
		return err
	}
	reg := newRegistry(e, o)
	plays, err := builtinPlays(reg, "provision", func(string) []tasks.Host { return hosts }, map[string]any{"provision_hosts": strings.Join(targets, ",")}, nil)
	if err != nil {
		return err
	}
	// One run, its preflight included: one run log, one journal.
	r, err := newRunner(e, o, "provision "+strings.Join(targets, " "), inv, reg, false)
	if err != nil {
		return err
	}
	states, err := gatherStates(ctx, e, o, r, inv, hosts, nodes)
	if err != nil {
		return r.s.finish(err)
	}
	if err := provisionRefusal(states); err != nil {
		var ref refusal
		errors.As(err, &ref)
		printRefusal(e, asJSON, "provision_refused", ref)
		return r.s.finish(exit.With(exit.Refused, fmt.Errorf("provision %s: refused: %w", strings.Join(targets, " "), err)))
	}
	var unreachable []string
	for _, s := range states {
		if !s.SSH {
			unreachable = append(unreachable, fmt.Sprintf("%s (%s)", s.Host, orUnknown(s.SSHError)))
		}
	}
	if len(unreachable) > 0 {
		return r.s.finish(exit.With(exit.Unreachable, fmt.Errorf("provision: %s did not answer SSH; nothing was changed", joinAnd(unreachable))))
	}
	return r.runWith(ctx, plays, func(ctx context.Context, recap tasks.Recap, err error) error {
		if err != nil {
			return exitError(ctx, recap, err)
		}
		if !asJSON {
			switch {
			case o.Check:
				fmt.Fprintln(e.stdout, "--check: nothing was changed")
			default:
				fmt.Fprintf(e.stdout, "PROVISIONED %s: service stopped, outside any cluster. Next: kmsctl scale add HOST\n", joinAnd(targets))
			}
		}
		return nil
	})
}

// provisionRefusal is the first target provision must not touch: one whose
// Key Manager answers (a running node, member of a cluster, of one of its
// own maybe) or whose service is running.
func provisionRefusal(states []nodeState) error {
	for _, s := range states {
		switch {
		case s.View != nil:
			return refusal{fmt.Sprintf("%s is a running Key Manager: it answers as node %d of a cluster of %d (%s)", s.Host, s.View.ID, len(s.View.Members), memberList(s.View.Members)),
				"provision prepares hosts that do not run one; to take a member out of its cluster use `kmsctl scale remove " + s.Host + "`"}
		case s.SSH && isRunning(s.ServiceState):
			return refusal{fmt.Sprintf("%s is %s on %s although its API does not answer", s.Service, s.ServiceState, s.Host),
				"provision leaves the service stopped and never stops a running one: find out why (journalctl -u " + s.Service + ") and stop it first if it is no member"}
		}
	}
	return nil
}

// isRunning reports whether a systemd ActiveState is a running service.
func isRunning(state string) bool {
	return state == "active" || state == "activating" || state == "reloading" || state == "deactivating"
}

// printRefusal prints why a command refused and what to do: one event with
// --output json, else the lines recover node prints.
func printRefusal(e env, asJSON bool, event string, ref refusal) {
	if asJSON {
		jsonLine(e.stdout, event).Str("why", ref.why).Str("todo", ref.todo).Send()
		return
	}
	fmt.Fprintf(e.stdout, "preflight\n  REFUSED  %s.\n  %s.\nnothing was changed\n", ref.why, ref.todo)
}

// namedHosts resolves the inventory hosts named on the command line, each
// with its kms_* layout variables (layoutHost); a name that is not a host
// of the inventory, or named twice, is a usage error.
func namedHosts(inv *inventory.Inventory, o options, command string, names []string) ([]tasks.Host, []inventory.KMSNode, error) {
	var hosts []tasks.Host
	var nodes []inventory.KMSNode
	var errs []error
	for i, n := range names {
		switch {
		case slices.Contains(names[:i], n):
			return nil, nil, exit.Usagef("%s: %s is named twice", command, n)
		case !inv.HasHost(n):
			return nil, nil, exit.Usagef("%s: %s is not a host of the inventory", command, n)
		}
		h, err := inv.Resolve(n, o.ExtraVars)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve host %s: %w", n, err))
			continue
		}
		hosts = append(hosts, layoutHost(playbooks.TaskHost(h)))
		nodes = append(nodes, h.KMS)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, exit.With(exit.Usage, err)
	}
	return hosts, nodes, nil
}

// layoutHost sets h's kms_* layout variables to their resolved values,
// defaults included, for the built-in playbooks and their templates (as
// layoutHosts does for several).
func layoutHost(h tasks.Host) tasks.Host { return layoutHosts([]tasks.Host{h})[h.Name] }

// builtinPlays loads the built-in playbook name and turns its plays into
// the engine's, with the hosts hostsOf gives for each play's hosts pattern
// (rendered over vars), vars over each play's own, and only the tasks
// tagged with one of phases (nil: every task). A play left without tasks
// is dropped.
func builtinPlays(reg *tasks.Registry, name string, hostsOf func(pattern string) []tasks.Host, vars map[string]any, phases []string) ([]tasks.Play, error) {
	pb, err := playbooks.Load(playbooks.BuiltinPrefix+name, reg)
	if err != nil {
		return nil, err
	}
	var plays []tasks.Play
	for _, p := range pb.Plays {
		pattern, err := tasks.RenderTemplate(p.Hosts, vars)
		if err != nil {
			return nil, fmt.Errorf("built-in playbook %s: hosts of play %q: %w", name, p.Name, err)
		}
		ts := p.Tasks
		if phases != nil {
			ts = nil
			for _, t := range p.Tasks {
				if slices.ContainsFunc(t.Tags, func(tag string) bool { return slices.Contains(phases, tag) }) {
					ts = append(ts, t)
				}
			}
		}
		hs := hostsOf(pattern)
		if len(ts) == 0 || len(hs) == 0 {
			continue
		}
		plays = append(plays, tasks.Play{Name: p.Name, Hosts: hs, Vars: mergeVars(p.Vars, vars), Tasks: ts, Handlers: p.Handlers, Files: pb.Files, Pos: p.Pos})
	}
	return plays, nil
}

// peerCopyRefusal is the first file a node of nodes copies from a peer
// (kms_binary_from, kms_ca_from, kms_config_from): only `recover node`
// acts on those variables, so command (which pushes node files from the
// kms_*_src sources or the built-in templates) refuses them up front
// rather than install something the inventory did not ask for.
func peerCopyRefusal(command string, nodes []inventory.KMSNode) error {
	for _, n := range nodes {
		for _, f := range []struct{ from, src, val string }{
			{inventory.VarBinaryFrom, inventory.VarBinarySrc, n.BinaryFrom},
			{inventory.VarCAFrom, inventory.VarCASrc, n.CAFrom},
			{inventory.VarConfigFrom, inventory.VarConfigSrc, n.ConfigFrom},
		} {
			if f.val != "" {
				return refusal{fmt.Sprintf("the inventory sets %s: %s for %s, but %s does not copy files from a peer (only `kmsctl recover node` does)", f.from, f.val, n.Host, command),
					"Name a file on this machine with " + f.src + " instead (or unset " + f.from + " for " + n.Host + ")"}
			}
		}
	}
	return nil
}
