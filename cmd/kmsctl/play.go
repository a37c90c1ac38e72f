package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/output"
	"github.com/kmsctl/kmsctl/inventory"
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

// newPlayCommand builds `kmsctl play PLAYBOOK`.
func newPlayCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:      "play",
		Usage:     "run a playbook (a built-in name or a file)",
		ArgsUsage: "PLAYBOOK",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "tags", Aliases: []string{"t"}, Usage: "run only tasks tagged with one of `TAGS` (comma-separated, repeatable)"},
			&cli.StringSliceFlag{Name: "skip-tags", Usage: "skip tasks tagged with one of `TAGS` (comma-separated, repeatable)"},
			&cli.BoolFlag{Name: "syntax-check", Usage: "only decode and validate the playbook"},
			&cli.BoolFlag{Name: "list-hosts", Usage: "only list the hosts each play would run on"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exit.Usagef("play: want exactly one playbook (a built-in name or a file), got %d arguments", c.NArg())
			}
			o, err := opts(c)
			if err != nil {
				return err
			}
			po := playOptions{
				Tags:        splitList(c.StringSlice("tags")),
				SkipTags:    splitList(c.StringSlice("skip-tags")),
				SyntaxCheck: c.Bool("syntax-check"),
				ListHosts:   c.Bool("list-hosts"),
			}
			return play(c.Context, e, o, c.Args().First(), po)
		},
	}
}

// play runs a playbook (a built-in name or a file) over the inventory. Each
// host of its plays is resolved once, with -e, before any host is touched:
// a bad value (from -e or the inventory) is a usage error and changes
// nothing.
func play(ctx context.Context, e env, o options, name string, po playOptions) error {
	reg := newRegistry(e, o)
	pb, err := playbooks.Load(name, reg)
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	if po.SyntaxCheck {
		// What the playbook alone says: secrets on command lines (by
		// name), local src files.
		eng := &tasks.Engine{Modules: reg, Secret: inventory.IsSecret, ExtraVars: o.ExtraVars}
		if err := eng.Validate(playbooks.Unresolved(pb)); err != nil {
			return exit.With(exit.Usage, err)
		}
		if o.Output == "json" {
			e.end.events()
			jsonLine(e.stdout, "syntax_check").Str("playbook", pb.Name).Int("plays", len(pb.Plays)).Send()
			return nil
		}
		_, err := fmt.Fprintf(e.stdout, "playbook %s: %s, syntax OK\n", pb.Name, output.Count(len(pb.Plays), "play"))
		return err
	}
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	plays, err := playbooks.Plays(pb, playbooks.Options{Inventory: inv, Limit: o.Limit, ExtraVars: o.ExtraVars})
	if err != nil {
		return exit.With(exit.Usage, err)
	}
	if po.ListHosts {
		if o.Output == "json" {
			e.end.events()
			for _, p := range plays {
				hosts := make([]string, len(p.Hosts))
				for i, h := range p.Hosts {
					hosts[i] = h.Name
				}
				jsonLine(e.stdout, "list_hosts").Str("play", p.Name).Str("pos", p.Pos).Strs("hosts", hosts).Send()
			}
			return nil
		}
		for _, p := range plays {
			fmt.Fprintf(e.stdout, "play %q (%s): %s\n", p.Name, p.Pos, output.Count(len(p.Hosts), "host"))
			for _, h := range p.Hosts {
				fmt.Fprintf(e.stdout, "  %s\n", h.Name)
			}
		}
		return nil
	}
	r, err := newRunner(e, o, "play "+name, inv, reg, false)
	if err != nil {
		return err
	}
	r.engine.Tags, r.engine.SkipTags = po.Tags, po.SkipTags
	return r.run(ctx, plays)
}

// jsonLine starts a JSON event line on w, as the engine's events are
// written with --output json.
func jsonLine(w io.Writer, event string) *zerolog.Event {
	l := zerolog.New(w)
	return l.Info().Str("event", event).Str("time", time.Now().UTC().Format(output.TimeFormat))
}

// splitList splits comma-separated flag values ("a,b" "c" → a b c).
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
