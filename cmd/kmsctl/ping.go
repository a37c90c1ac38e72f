package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/playbooks"
	"github.com/kmsctl/kmsctl/tasks"
)

// newPingCommand builds `kmsctl ping [HOST...]`.
func newPingCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:      "ping",
		Usage:     "connect to hosts and run `true` on each",
		ArgsUsage: "[[USER@]HOST[:PORT] | SSH-ALIAS ...] (default: the inventory's hosts, --limit)",
		Action: func(c *cli.Context) error {
			o, err := opts(c)
			if err != nil {
				return err
			}
			return ping(c.Context, e, o, c.Args().Slice())
		},
	}
}

// ping connects to each host and runs `true`, --forks at a time: a play of
// one ping task, run by the engine, which prints one line per host and a
// recap. It returns an error with exit code 3 when a host was unreachable
// (2 when `true` failed).
func ping(ctx context.Context, e env, o options, args []string) error {
	inv, err := loadInventory(o, len(args) > 0)
	if err != nil {
		return err
	}
	hosts, err := pingHosts(inv, o, args)
	if err != nil {
		return err
	}
	r, err := newRunner(e, o, "ping", inv, newRegistry(e, o), false)
	if err != nil {
		return err
	}
	return r.run(ctx, []tasks.Play{pingPlay(hosts)})
}

// pingPlay is ping's play on hosts: one ping task, run for real even with
// --check and never with become (it checks that the host answers the SSH
// user).
func pingPlay(hosts []tasks.Host) tasks.Play {
	no := false
	return tasks.Play{
		Name:  "ping",
		Hosts: hosts,
		Tasks: []tasks.Task{{Name: "ping", Module: "ping", Become: &no, CheckMode: &no}},
	}
}

// pingHosts resolves ping's HOST arguments, each once, or the inventory's
// hosts (with --limit) when there are none. An argument naming an
// inventory host is that host with its inventory settings; any other is
// [user@]host[:port] or an ssh_config alias. Every bad argument or host is
// reported at once, before any host is touched.
func pingHosts(inv *inventory.Inventory, o options, args []string) ([]tasks.Host, error) {
	if len(args) == 0 {
		pattern := o.Limit
		if pattern == "" {
			pattern = "all"
		}
		names, err := inv.Select(pattern)
		if err != nil {
			return nil, exit.With(exit.Usage, fmt.Errorf("--limit %q: %w", pattern, err))
		}
		args = names
	}
	var (
		hosts []tasks.Host
		errs  []error
	)
	seen := map[string]bool{}
	for _, a := range args {
		if seen[a] {
			continue
		}
		seen[a] = true
		if inv != nil && inv.HasHost(a) {
			h, err := inv.Resolve(a, o.ExtraVars)
			if err != nil {
				errs = append(errs, fmt.Errorf("resolve host %s: %w", a, err))
				continue
			}
			hosts = append(hosts, playbooks.TaskHost(h))
			continue
		}
		t, err := parseHostArg(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hosts = append(hosts, tasks.Host{Name: t.Name, Target: t})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, exit.With(exit.Usage, err)
	}
	if len(hosts) == 0 {
		return nil, exit.Usagef("ping: no hosts selected")
	}
	return hosts, nil
}
