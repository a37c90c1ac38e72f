package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/output"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/modules"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// playOptions are the flags of the play command.
type playOptions struct {
	// Tags and SkipTags select tasks by tag (--tags, --skip-tags).
	Tags, SkipTags []string
	// SyntaxCheck only decodes and validates the playbook.
	SyntaxCheck bool
	// ListHosts only prints the hosts of each play.
	ListHosts bool
}

// play runs a playbook (a built-in name or a file) over the inventory.
func play(ctx context.Context, e env, o options, name string, po playOptions) error {
	reg := tasks.NewRegistry()
	modules.Register(reg)
	pb, err := playbooks.Load(name, reg)
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	if po.SyntaxCheck {
		_, err := fmt.Fprintf(e.stdout, "playbook %s: %s, syntax OK\n", pb.Name, output.Count(len(pb.Plays), "play"))
		return err
	}
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	popts := playbooks.Options{Inventory: inv, Limit: o.Limit, ExtraVars: o.ExtraVars}
	plays, err := playbooks.Plays(pb, popts)
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	if err := checkExtraVars(inv, plays, o.ExtraVars); err != nil {
		return exit.With(exit.Usage, err)
	}
	if po.ListHosts {
		for _, p := range plays {
			fmt.Fprintf(e.stdout, "play %q (%s): %s\n", p.Name, p.Pos, output.Count(len(p.Hosts), "host"))
			for _, h := range p.Hosts {
				fmt.Fprintf(e.stdout, "  %s\n", h.Name)
			}
		}
		return nil
	}
	s, err := newSession(e, o, "play "+name)
	if err != nil {
		return err
	}
	if err := registerInventorySecrets(s.red, inv, o.ExtraVars); err != nil {
		return s.finish(err)
	}
	return s.finish(runPlays(ctx, s, inv, reg, plays, po))
}

// checkExtraVars validates the -e values of the connection and Key Manager
// variables for every inventory host of plays before any host is touched,
// so that bad input changes nothing. Only problems that -e brings are
// reported; the inventory itself was validated when it was loaded.
func checkExtraVars(inv *inventory.Inventory, plays []tasks.Play, extra map[string]any) error {
	if len(extra) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var errs []error
	for _, p := range plays {
		for _, h := range p.Hosts {
			if seen[h.Name] || !inv.HasHost(h.Name) {
				continue
			}
			seen[h.Name] = true
			if _, err := inv.Connection(h.Name, extra); err != nil {
				if _, err0 := inv.Connection(h.Name, nil); err0 == nil {
					errs = append(errs, err)
				}
			}
			if _, err := inv.Node(h.Name, extra); err != nil {
				if _, err0 := inv.Node(h.Name, nil); err0 == nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("check -e variables: %w", errors.Join(errs...))
	}
	return nil
}

// runPlays runs resolved plays with the engine within a session, and maps
// the outcome to the documented exit codes.
func runPlays(ctx context.Context, s *session, inv *inventory.Inventory, reg *tasks.Registry, plays []tasks.Play, po playOptions) error {
	ctx, cancel := withTimeout(ctx, s.o)
	defer cancel()
	kh, err := stateKnownHosts(s.e)
	if err != nil {
		return err
	}
	d := &dialer{o: s.o, stateKnownHosts: kh, logger: s.logger, red: s.red}
	eng := &tasks.Engine{
		Forks:     s.o.Forks,
		Check:     s.o.Check,
		Diff:      s.o.Diff,
		Sink:      s.sink,
		Redactor:  s.red,
		Modules:   reg,
		ExtraVars: s.o.ExtraVars,
		Tags:      po.Tags,
		SkipTags:  po.SkipTags,
		Become:    become,
		Connect: func(ctx context.Context, h tasks.Host) (tasks.Conn, error) {
			if !inv.HasHost(h.Name) {
				// A delegate_to host outside the inventory: an ssh_config
				// alias or [user@]host[:port], as for ping.
				t, err := parseHostArg(h.Name)
				if err != nil {
					return nil, fmt.Errorf("delegate host: %w", err)
				}
				return d.dial(ctx, t)
			}
			c, err := inv.Connection(h.Name, s.o.ExtraVars)
			if err != nil {
				return nil, fmt.Errorf("connection settings of host %s: %w", h.Name, err)
			}
			return d.dial(ctx, inventoryTarget(c))
		},
	}
	recap, err := eng.Run(ctx, plays)
	if err == nil {
		return nil
	}
	var re *tasks.RunError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return exit.With(exit.TimedOut, err)
	case re.Cancelled != nil:
		return exit.With(exit.Interrupted, err)
	}
	return recapError(recap, err)
}
