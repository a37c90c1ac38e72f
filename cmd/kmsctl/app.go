package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
)

// defaultInventory is the inventory read when -i is not given.
const defaultInventory = "./inventory.yml"

// options are the global flags, decoded once for every command.
type options struct {
	// Inventories are the inventory files (-i, repeatable).
	Inventories []string
	// InventoryExplicit is true when -i or KMSCTL_INVENTORY named the inventory.
	InventoryExplicit bool
	Limit             string
	Forks             int
	Check, Diff       bool
	ExtraVars         map[string]any
	// Verbosity is the number of -v: 1 info, 2 debug with command tracing.
	Verbosity int
	// Output is "text" or "json".
	Output  string
	Yes     bool
	Timeout time.Duration

	// SSH connection flags, shared by every command that connects.
	SSHConfig  string
	KnownHosts []string
	PrivateKey string
	User       string
	AcceptNew  bool
}

func globalFlags(verbose *int) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "inventory", Aliases: []string{"i"}, Usage: "inventory `FILE` (repeatable)", Value: cli.NewStringSlice(defaultInventory), EnvVars: []string{"KMSCTL_INVENTORY"}},
		&cli.StringFlag{Name: "limit", Aliases: []string{"l"}, Usage: "limit hosts to `PATTERN` (names, groups, globs, !exclude, &intersect)"},
		&cli.IntFlag{Name: "forks", Aliases: []string{"f"}, Usage: "hosts worked on in parallel", Value: 10},
		&cli.BoolFlag{Name: "check", Aliases: []string{"C"}, Usage: "show what would change, change nothing"},
		&cli.BoolFlag{Name: "diff", Aliases: []string{"D"}, Usage: "show file content changes (never for secret files)"},
		&cli.StringSliceFlag{Name: "extra-vars", Aliases: []string{"e"}, Usage: "set variables: `key=value`, @file.yml or a JSON object (repeatable)"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more logging on stderr: -v info, -vv debug with command tracing", Count: verbose},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FORMAT`: text or json (one JSON object per line)", Value: "text"},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "answer yes to confirmations"},
		&cli.DurationFlag{Name: "timeout", Usage: "overall time limit (0: none)"},
		&cli.StringFlag{Name: "ssh-config", Usage: "ssh_config `FILE` (default ~/.ssh/config)"},
		&cli.StringSliceFlag{Name: "known-hosts", Usage: "extra known_hosts `FILE` (repeatable)"},
		&cli.StringFlag{Name: "private-key", Usage: "SSH private key `FILE`"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "SSH `USER`"},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "trust unknown host keys and record them in kmsctl's own known_hosts (never changed ones)"},
	}
}

// newApp builds the command tree. It never exits the process: errors are
// returned to run, which maps them to exit codes.
func newApp(e env) *cli.App {
	var verbose int
	app := &cli.App{
		Name:                      "kmsctl",
		Usage:                     "recover and operate MinIO AIStor Key Manager clusters over SSH",
		Flags:                     globalFlags(&verbose),
		Writer:                    e.stdout,
		ErrWriter:                 e.stderr,
		ExitErrHandler:            func(*cli.Context, error) {},
		DisableSliceFlagSeparator: true,
		HideVersion:               true,
		Action:                    unknownCommand,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return exit.With(exit.Usage, err)
		},
	}
	opts := func(c *cli.Context) (options, error) { return decodeOptions(c, verbose) }
	app.Commands = []*cli.Command{
		{
			Name:   "version",
			Usage:  "print version, commit and Go version",
			Action: func(c *cli.Context) error { return printVersion(e.stdout, c.String("output") == "json") },
		},
		{
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
		},
		{
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
		},
		{
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
		},
		{
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
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
		// A host called "h" or "help" is an argument, not a help command.
		c.HideHelpCommand = len(c.Subcommands) == 0
		for _, s := range c.Subcommands {
			s.OnUsageError = app.OnUsageError
			s.HideHelpCommand = true
		}
	}
	return app
}

// unknownCommand is the action of the app and of command groups: with no
// argument it shows help, with one it is a usage error.
func unknownCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		return exit.Usagef("unknown command %q; see '%s --help'", c.Args().First(), c.Command.HelpName)
	}
	return cli.ShowSubcommandHelp(c)
}

// decodeOptions reads the global flags.
func decodeOptions(c *cli.Context, verbose int) (options, error) {
	o := options{
		Inventories:       c.StringSlice("inventory"),
		InventoryExplicit: c.IsSet("inventory"),
		Limit:             c.String("limit"),
		Forks:             c.Int("forks"),
		Check:             c.Bool("check"),
		Diff:              c.Bool("diff"),
		Verbosity:         verbose,
		Output:            c.String("output"),
		Yes:               c.Bool("yes"),
		Timeout:           c.Duration("timeout"),
		SSHConfig:         c.String("ssh-config"),
		KnownHosts:        c.StringSlice("known-hosts"),
		PrivateKey:        c.String("private-key"),
		User:              c.String("user"),
		AcceptNew:         c.Bool("accept-new-host-keys"),
	}
	if o.Forks < 1 {
		return o, exit.Usagef("--forks %d: want at least 1", o.Forks)
	}
	switch o.Output {
	case "text", "json":
	default:
		return o, exit.Usagef("--output %q: want text or json", o.Output)
	}
	if o.Timeout < 0 {
		return o, exit.Usagef("--timeout %s: want a positive duration", o.Timeout)
	}
	vars, err := inventory.ParseExtraVars(c.StringSlice("extra-vars"))
	if err != nil {
		return o, exit.With(exit.Usage, fmt.Errorf("extra vars: %w", err))
	}
	o.ExtraVars = vars
	if len(o.Inventories) == 0 {
		o.Inventories = []string{defaultInventory}
	}
	for i, p := range o.Inventories {
		o.Inventories[i] = strings.TrimSpace(p)
	}
	return o, nil
}

// printVersion prints version, commit and Go version, as text or JSON.
func printVersion(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]string{
			"version": version, "commit": commit, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH,
		})
	}
	_, err := fmt.Fprintf(w, "kmsctl %s\ncommit %s\n%s %s/%s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
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
