package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/remote"
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
	Timeout time.Duration
	// LockWait is --lock-wait: how long a run waits for a cluster lock
	// held by another run (0: not at all).
	LockWait time.Duration

	// SSH connection flags, shared by every command that connects.
	SSHConfig  string
	KnownHosts []string
	PrivateKey string
	User       string
	AcceptNew  bool
	// ExpectHostKeys is --expect-host-key: host → the SHA256 fingerprints
	// of its new host key after a planned change (a replaced host).
	ExpectHostKeys map[string][]string

	// APIKeyFile is --api-key-file: a 0600 file holding the Key Manager's
	// admin API key, after MINIO_KMS_API_KEY and before kms_api_key_file.
	APIKeyFile string

	// Resume is not a flag: the ID of the run that a run continues
	// (kmsctl resume), whose run log and journal it appends to.
	Resume string
}

func globalFlags(verbose *int) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "inventory", Aliases: []string{"i"}, Usage: "inventory `FILE` (repeatable)", Value: cli.NewStringSlice(defaultInventory), EnvVars: []string{"KMSCTL_INVENTORY"}},
		&cli.StringFlag{Name: "limit", Aliases: []string{"l"}, Usage: "limit hosts to `PATTERN`: names, groups, globs, ~regex, !exclude, &intersect, [0:2] slices (joined by , or :)"},
		&cli.IntFlag{Name: "forks", Aliases: []string{"f"}, Usage: "hosts worked on in parallel", Value: 10},
		&cli.BoolFlag{Name: "check", Aliases: []string{"C"}, Usage: "show what would change, change nothing"},
		&cli.BoolFlag{Name: "diff", Aliases: []string{"D"}, Usage: "show file content changes (never for secret files)"},
		&cli.StringSliceFlag{Name: "extra-vars", Aliases: []string{"e"}, Usage: "set variables: `key=value`, @file.yml or a JSON object (repeatable)"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more logging on stderr: -v info, -vv debug with command tracing", Count: verbose},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FORMAT`: text or json (one JSON object per line)", Value: "text"},
		&cli.DurationFlag{Name: "timeout", Usage: "overall time limit (0: none)"},
		&cli.DurationFlag{Name: "lock-wait", Usage: "wait up to `DURATION` for a cluster lock another run holds (0: exit 5 at once)"},
		&cli.StringFlag{Name: "ssh-config", Usage: "ssh_config `FILE` (default ~/.ssh/config)"},
		&cli.StringSliceFlag{Name: "known-hosts", Usage: "extra known_hosts `FILE` (repeatable)"},
		&cli.StringFlag{Name: "private-key", Usage: "SSH private key `FILE`"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "SSH `USER`"},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "trust unknown host keys and record them in kmsctl's own known_hosts (never changed ones)"},
		&cli.StringSliceFlag{Name: "expect-host-key", Usage: "`HOST=SHA256:...`: HOST was replaced and has this new host key (repeatable); only a key with this fingerprint is accepted, and it replaces HOST's entry in kmsctl's own known_hosts (yours are never edited)"},
		&cli.StringFlag{Name: "api-key-file", Usage: "`FILE` (mode 0600) holding the Key Manager's admin API key; MINIO_KMS_API_KEY comes first, the inventory's kms_api_key_file after"},
	}
}

// optionsFunc decodes the global flags of a command's context; commands
// that need them call it in their action.
type optionsFunc func(*cli.Context) (options, error)

// newApp builds the command tree: the global flags and one constructor per
// command, each in its own file. It never exits the process: errors are
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
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError(c, err)
		},
	}
	opts := func(c *cli.Context) (options, error) { return decodeOptions(c, verbose) }
	app.Commands = []*cli.Command{
		newVersionCommand(e),
		newPlaybooksCommand(e),
		newInventoryCommand(e, opts),
		newPingCommand(e, opts),
		newPlayCommand(e, opts),
		newStatusCommand(e, opts),
		newBackupCommand(e, opts),
		newDrillCommand(e, opts),
		newRunsCommand(e),
		newRecoverCommand(e, opts),
		newProvisionCommand(e, opts),
		newScaleCommand(e, opts),
		newResumeCommand(e, opts),
		newLockCommand(e, opts),
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

// usageError is a flag that could not be parsed, said as typed (--name,
// not urfave/cli's -name), with the command's closest flag when one is
// close and where that command's help is.
func usageError(c *cli.Context, err error) error {
	help := "kmsctl"
	if c != nil && c.Command != nil && c.Command.HelpName != "" {
		help = c.Command.HelpName
	}
	dashes := func(name string) string {
		if len(name) == 1 {
			return "-" + name
		}
		return "--" + name
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag needs an argument: -"); ok {
		return exit.Usagef("%s needs a value; see '%s --help'", dashes(name), help)
	}
	if m := badDuration.FindStringSubmatch(err.Error()); m != nil {
		return exit.Usagef("%s %s: want a duration such as 90s, 5m or 1h30m; see '%s --help'", dashes(m[2]), m[1], help)
	}
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return exit.Usagef("%v; see '%s --help'", err, help)
	}
	msg := "unknown flag " + dashes(name)
	own, global := commandFlags(c)
	s := closestFlag(own, name)
	if s == "" {
		s = typoOf(global, name)
	}
	if s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return exit.Usagef("%s; see '%s --help'", msg, help)
}

// commandFlags splits the flags c accepts into the command's own (its
// and its parent commands') and the global ones (the app's, accepted by
// every command).
func commandFlags(c *cli.Context) (own, global []cli.Flag) {
	if c == nil {
		return nil, nil
	}
	globalNames := map[string]bool{}
	if c.App != nil {
		global = c.App.Flags
		for _, f := range global {
			for _, n := range f.Names() {
				globalNames[n] = true
			}
		}
	}
	for _, l := range c.Lineage() {
		if l.Command == nil {
			continue
		}
		for _, f := range l.Command.Flags {
			// urfave/cli's root command carries the app's flags.
			if !globalNames[f.Names()[0]] {
				own = append(own, f)
			}
		}
	}
	return own, global
}

// typoOf is the global flag (with its dashes) that name is a typing slip
// of: one letter wrong, missing, extra, or two swapped (--outptu for
// --output); "" otherwise. Global flags are suggested only that close:
// they mean something else than the command's flags, and a loose match
// misleads (--force suggesting --forks, which sets parallelism).
func typoOf(flags []cli.Flag, name string) string {
	if len(name) < 3 {
		return ""
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) >= 3 && editDistance(n, name) <= 1 {
				return "--" + n
			}
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance of a and b: the
// fewest insertions, deletions, substitutions and swaps of two adjacent
// bytes that turn a into b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// badDuration matches the flag package's error for a duration flag given
// something else ("--timeout 1"): the value and the flag's name.
var badDuration = regexp.MustCompile(`^invalid value "(.*)" for flag -(timeout|lock-wait): parse error$`)

// closestFlag is the flag name (with its dashes) most like name, when it
// is close enough to be a likely misspelling (Jaro-Winkler similarity of
// at least 0.8, as urfave/cli's own suggestions measure it); "" otherwise.
func closestFlag(flags []cli.Flag, name string) string {
	best, score := "", 0.8
	for _, f := range flags {
		for _, n := range f.Names() {
			if len(n) < 2 {
				continue
			}
			if d := smetrics.JaroWinkler(n, name, 0.7, 4); d >= score {
				best, score = "--"+n, d
			}
		}
	}
	return best
}

// unknownCommand is the action of the app and of command groups: with no
// argument it shows help, with one it is a usage error.
func unknownCommand(c *cli.Context) error {
	if c.NArg() > 0 {
		return exit.Usagef("unknown command %q; see '%s --help'", c.Args().First(), c.Command.HelpName)
	}
	return cli.ShowSubcommandHelp(c)
}

// parseExpectHostKeys decodes the --expect-host-key values, HOST=SHA256:...
// (usage errors for a malformed one).
func parseExpectHostKeys(values []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range values {
		host, fp, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(host) == "" {
			return nil, exit.Usagef("--expect-host-key %q: want HOST=SHA256:... (the host's new key's fingerprint, as ssh-keygen -lf prints it on the host)", v)
		}
		norm, err := remote.ParseFingerprint(strings.TrimSpace(fp))
		if err != nil {
			return nil, exit.Usagef("--expect-host-key %q: %v", v, err)
		}
		host = strings.TrimSpace(host)
		if !slices.Contains(out[host], norm) {
			out[host] = append(out[host], norm)
		}
	}
	return out, nil
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
		Timeout:           c.Duration("timeout"),
		LockWait:          c.Duration("lock-wait"),
		SSHConfig:         c.String("ssh-config"),
		KnownHosts:        c.StringSlice("known-hosts"),
		PrivateKey:        c.String("private-key"),
		User:              c.String("user"),
		AcceptNew:         c.Bool("accept-new-host-keys"),
		APIKeyFile:        c.String("api-key-file"),
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
	if o.LockWait < 0 {
		return o, exit.Usagef("--lock-wait %s: want a positive duration", o.LockWait)
	}
	expect, err := parseExpectHostKeys(c.StringSlice("expect-host-key"))
	if err != nil {
		return o, err
	}
	o.ExpectHostKeys = expect
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
