package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
)

// newInventoryCommand builds `kmsctl inventory list|graph`.
func newInventoryCommand(e env, opts optionsFunc) *cli.Command {
	return &cli.Command{
		Name:   "inventory",
		Usage:  "show the inventory",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list hosts with their resolved variables (secrets masked)",
				Action: func(c *cli.Context) error {
					o, err := opts(c)
					if err != nil {
						return err
					}
					return inventoryList(e, o)
				},
			},
			{
				Name:  "graph",
				Usage: "print the group tree (like ansible-inventory --graph)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "vars", Usage: "show variables in the graph (secrets masked)"}},
				Action: func(c *cli.Context) error {
					o, err := opts(c)
					if err != nil {
						return err
					}
					return inventoryGraph(e, o, c.Bool("vars"))
				},
			},
		},
	}
}

// inventoryList prints each selected host (--limit) with its resolved
// variables (inventory, then -e), secrets masked: as text, or with --output json as
// {"hosts": {HOST: {VAR: VALUE}}, "groups": {GROUP: [HOST...]}}.
func inventoryList(e env, o options) error {
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	hosts := inv.Hosts()
	if o.Limit != "" {
		if hosts, err = inv.Select(o.Limit); err != nil {
			return exit.With(exit.Usage, fmt.Errorf("--limit %q: %w", o.Limit, err))
		}
	}
	vars := make(map[string]map[string]any, len(hosts))
	for _, h := range hosts {
		v, err := inv.MaskedVars(h, o.ExtraVars)
		if err != nil {
			return fmt.Errorf("variables of host %s: %w", h, err)
		}
		vars[h] = v
	}
	red := newRedactor(e)
	if o.Output == "json" {
		groups := map[string][]string{}
		for _, g := range inv.Groups() {
			members, err := inv.GroupHosts(g)
			if err != nil {
				return fmt.Errorf("hosts of group %s: %w", g, err)
			}
			groups[g] = members
		}
		b, err := json.MarshalIndent(map[string]any{"hosts": vars, "groups": groups}, "", "  ")
		if err != nil {
			return fmt.Errorf("encode inventory: %w", err)
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", red.Bytes(b))
		return err
	}
	for _, h := range hosts {
		fmt.Fprintf(e.stdout, "%s:\n", h)
		names := make([]string, 0, len(vars[h]))
		for k := range vars[h] {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(e.stdout, "  %s: %s\n", k, red.String(inventory.FormatValue(vars[h][k])))
		}
	}
	return nil
}

// inventoryGraph prints the group tree like `ansible-inventory --graph`,
// with --vars each host's resolved variables (secrets masked).
func inventoryGraph(e env, o options, withVars bool) error {
	inv, err := loadInventory(o, false)
	if err != nil {
		return err
	}
	w := maskWriter{newRedactor(e), e.stdout}
	if err := inv.Graph(w, withVars); err != nil {
		return fmt.Errorf("draw inventory graph: %w", err)
	}
	return nil
}
