package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/playbooks"
)

// newPlaybooksCommand builds `kmsctl playbooks ls|show`.
func newPlaybooksCommand(e env) *cli.Command {
	return &cli.Command{
		Name:   "playbooks",
		Usage:  "list and print the built-in playbooks",
		Action: unknownCommand,
		Subcommands: []*cli.Command{
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list the built-in playbooks",
				Action:  func(c *cli.Context) error { return listPlaybooks(e.stdout, c.String("output") == "json") },
			},
			{
				Name:      "show",
				Usage:     "print a built-in playbook (to customise it)",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return exit.Usagef("playbooks show: want exactly one playbook name, got %d arguments", c.NArg())
					}
					return showPlaybook(e.stdout, c.Args().First())
				},
			},
		},
	}
}

// listPlaybooks prints the built-in playbooks with their descriptions and
// explicit names (builtin:NAME, for when a file NAME.yml is in the current
// directory), as a table or a JSON list.
func listPlaybooks(w io.Writer, asJSON bool) error {
	if asJSON {
		type entry struct {
			Name        string `json:"name"`
			Explicit    string `json:"explicit"`
			Description string `json:"description"`
		}
		var list []entry
		for _, p := range playbooks.List() {
			list = append(list, entry{p.Name, playbooks.BuiltinPrefix + p.Name, p.Description})
		}
		return json.NewEncoder(w).Encode(list)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tEXPLICIT\tDESCRIPTION")
	for _, p := range playbooks.List() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, playbooks.BuiltinPrefix+p.Name, p.Description)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write playbook list: %w", err)
	}
	_, err := fmt.Fprintf(w, "\nWith a file NAME or NAME.yml in the current directory, `play NAME` refuses to guess:\nname the built-in %sNAME or the file ./NAME.yml.\n", playbooks.BuiltinPrefix)
	return err
}

// showPlaybook prints the YAML of a built-in playbook.
func showPlaybook(w io.Writer, name string) error {
	b, err := playbooks.Show(name)
	if errors.Is(err, playbooks.ErrUnknown) {
		return exit.With(exit.Usage, err)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
