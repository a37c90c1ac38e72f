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
// pattern (a template over ExtraVars, as in Ansible: hosts: "{{ target }}"),
// intersected with Limit. Each selected host is resolved once
// (inventory.Resolve, with ExtraVars), however many plays it is in, and
// every play holds the same value (see Host). Plays left without hosts are
// dropped; when none is left the error wraps ErrNoHosts. A host whose
// variables or settings are invalid is an error, before anything runs.
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
		plays    []tasks.Play
		errs     []error
		resolved = map[string]*tasks.Host{} // nil: the host failed to resolve
	)
	for _, p := range pb.Plays {
		pattern, err := tasks.RenderTemplate(p.Hosts, o.ExtraVars)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: play %q: hosts: %w (a hosts: template sees only the extra vars: give them with -e)", p.Pos, p.Name, err))
			continue
		}
		names, err := o.Inventory.Select(pattern)
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
		for _, name := range names {
			h, seen := resolved[name]
			if !seen {
				ih, err := o.Inventory.Resolve(name, o.ExtraVars)
				if err != nil {
					errs = append(errs, fmt.Errorf("resolve host %s: %w", name, err))
				} else {
					th := TaskHost(ih)
					h = &th
				}
				resolved[name] = h
			}
			if h != nil {
				tp.Hosts = append(tp.Hosts, *h)
			}
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

// TaskHost is the engine's view of a resolved inventory host: its name and
// variables, with the whole resolved value as the Target that Connect and
// the modules get (so the dialer reads h.Target.(inventory.Host).SSH).
func TaskHost(h inventory.Host) tasks.Host {
	return tasks.Host{Name: h.Name, Vars: h.Vars, Target: h}
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

// Unresolved returns pb's plays as the engine runs them, but without
// hosts: for checks of what the playbook alone says (tasks.Engine.Validate
// for --syntax-check), before any inventory is read.
func Unresolved(pb *Playbook) []tasks.Play {
	plays := make([]tasks.Play, len(pb.Plays))
	for i, p := range pb.Plays {
		plays[i] = tasks.Play{
			Name: p.Name, Serial: p.Serial, AnyErrorsFatal: p.AnyErrorsFatal,
			Vars: p.Vars, Tasks: p.Tasks, Handlers: p.Handlers, Files: pb.Files, Pos: p.Pos,
		}
	}
	return plays
}
