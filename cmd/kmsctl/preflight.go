package main

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// preflight is a read-only play a command runs before it plans, to learn
// the state of the nodes.
type preflight struct {
	// who names the command in its errors ("recover cluster").
	who string
	// command names the session (its run log and runs show).
	command string
	// rerun, when not empty, is the session's advice for a run stopped
	// early (see session.rerun).
	rerun string
	play  tasks.Play
	// within, when set, is the run the play is the preflight of: it runs
	// in that run's session (one run log and journal for the command),
	// not as a run of its own (command and rerun are then unused).
	within *runner
	// modules gives, by task name, the module each task of play so named
	// runs; those results are recorded.
	modules map[string]string
}

// runPreflight runs p's play on every host at once (whatever --forks) and
// not in check mode: its tasks only read. Each task that p.modules names
// runs its module wrapped so that the returned gathered records its
// results, and the unreachable hosts are recorded from the events. A
// failed task is left for the caller to read from what was gathered; only
// an interrupted run is an error (exit.Interrupted). The runner is
// returned for what its dialer saw (host keys).
func runPreflight(ctx context.Context, e env, o options, inv *inventory.Inventory, p preflight) (*gathered, *runner, error) {
	g := newGathered()
	for i := range p.play.Tasks {
		if _, ok := p.modules[p.play.Tasks[i].Name]; ok {
			p.play.Tasks[i].Module = p.play.Tasks[i].Name
		}
	}
	base := newRegistry(e, o)
	reg := tasks.NewRegistry()
	for task, module := range p.modules {
		m, ok := base.Lookup(module)
		if !ok {
			return nil, nil, fmt.Errorf("%s: module %s is not registered", p.who, module)
		}
		reg.Register(task, recorded{Module: m, g: g, task: task})
	}
	if p.within != nil {
		if err := p.within.gatherWithin(ctx, reg, p.play, g); err != nil {
			return nil, nil, err
		}
		return g, p.within, nil
	}
	r, err := newReadRunner(e, o, p.command, inv, reg, g, len(p.play.Hosts))
	if err != nil {
		return nil, nil, err
	}
	r.s.rerun = p.rerun
	err = r.runWith(ctx, []tasks.Play{p.play}, func(ctx context.Context, _ tasks.Recap, err error) error {
		if err != nil && ctx.Err() != nil {
			return exit.With(exit.Interrupted, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return g, r, nil
}
