package playbooks

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// ErrNoHosts is returned when no play of a playbook has a host left after
// --limit.
var ErrNoHosts = errors.New("no hosts matched")

// Options say which hosts a playbook runs on and with which variables.
type Options struct {
	// Inventory resolves the plays' hosts: patterns and the hosts' variables.
	Inventory *inventory.Inventory
	// Limit further restricts the hosts (--limit), "" = no restriction.
	Limit string
	// ExtraVars (-e) override every other variable.
	ExtraVars map[string]any
}

// Plays resolves pb's plays against the inventory: each play's hosts:
// pattern, intersected with Limit, with each host's inventory variables.
// Plays left without hosts are dropped; when none is left the error wraps
// ErrNoHosts.
func Plays(pb *Playbook, o Options) ([]tasks.Play, error) {
	if o.Inventory == nil {
		return nil, fmt.Errorf("run playbook %s: no inventory", pb.Name)
	}
	var limit []string
	if o.Limit != "" {
		var err error
		if limit, err = o.Inventory.Select(o.Limit); err != nil {
			return nil, fmt.Errorf("--limit %q: %w", o.Limit, err)
		}
	}
	var (
		plays []tasks.Play
		errs  []error
	)
	for _, p := range pb.Plays {
		names, err := o.Inventory.Select(p.Hosts)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: play %q: hosts: %w", p.Pos, p.Name, err))
			continue
		}
		if o.Limit != "" {
			names = slices.DeleteFunc(names, func(h string) bool { return !slices.Contains(limit, h) })
		}
		if len(names) == 0 {
			continue
		}
		tp := tasks.Play{
			Name: p.Name, Serial: p.Serial, AnyErrorsFatal: p.AnyErrorsFatal,
			Vars: p.Vars, Tasks: p.Tasks, Handlers: p.Handlers, Files: pb.Files, Pos: p.Pos,
		}
		for _, h := range names {
			vars, err := o.Inventory.Vars(h, o.ExtraVars)
			if err != nil {
				errs = append(errs, fmt.Errorf("variables of host %s: %w", h, err))
				continue
			}
			tp.Hosts = append(tp.Hosts, tasks.Host{Name: h, Vars: vars})
		}
		plays = append(plays, tp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(plays) == 0 {
		return nil, fmt.Errorf("run playbook %s: %w (hosts: patterns of its plays, --limit %q)", pb.Name, ErrNoHosts, o.Limit)
	}
	return plays, nil
}

// Run resolves pb's plays (see Plays) and runs them with eng, whose
// ExtraVars are set from o. The recap and error are the engine's.
func Run(ctx context.Context, eng *tasks.Engine, pb *Playbook, o Options) (tasks.Recap, error) {
	plays, err := Plays(pb, o)
	if err != nil {
		return nil, err
	}
	eng.ExtraVars = o.ExtraVars
	return eng.Run(ctx, plays)
}
