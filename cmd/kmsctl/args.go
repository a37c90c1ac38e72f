package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs lets flags follow a command's arguments, as with
// ansible-playbook (`kmsctl play site.yml --check --limit kms2`). urfave/cli
// v2 stops parsing flags at the first positional argument, so before it runs
// the arguments are rearranged: the global flags (with their values) move in
// front of the command words, the flags of the named command move right after
// them, and positional arguments keep their order. With -h or --help only
// the command path remains, followed by --help. "--" ends the flags: everything
// after it stays at the end, untouched, and "--" itself goes before the
// positional arguments. A run of -v (-vv, -vvv) is
// expanded to repeated -v. Unknown flags go with the command's flags, so
// that urfave/cli reports them. A global flag that ends the line without
// its value is left last, without the command, so that urfave/cli reports
// it instead of taking the command's name as its value.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	var (
		global, path, local, positional, rest []string
		level                                 = app.Commands
		cmdFlags                              []cli.Flag
		help                                  bool
		// dangling is set when the last word is a global flag that
		// takes a value: moved in front of the command, it would take
		// the command's name as its value.
		dangling bool
	)
	in := args[1:]
	for i := 0; i < len(in); i++ {
		tok := in[i]
		if tok == "--" {
			rest = in[i:]
			break
		}
		if len(tok) > 1 && tok[0] == '-' {
			if isVerboseRun(tok) {
				for range len(tok) - 1 {
					global = append(global, "-v")
				}
				continue
			}
			name, hasValue := flagName(tok)
			// An unknown flag goes before the positionals too, so that
			// urfave/cli reports it instead of taking it as an argument.
			dst := &local
			f := findFlag(app.Flags, name)
			if name == "h" || name == "help" {
				// urfave/cli adds the help flag to every command; it takes
				// arguments as help topics, so they are dropped.
				help = true
				continue
			}
			if f != nil {
				dst = &global
			} else if f = findFlag(cmdFlags, name); f != nil {
				dst = &local
			}
			*dst = append(*dst, tok)
			if f != nil && takesValue(f) && !hasValue {
				if i+1 == len(in) {
					dangling = dst == &global
					continue
				}
				i++
				*dst = append(*dst, in[i])
			}
			continue
		}
		if len(positional) == 0 {
			if c := findCommand(level, tok); c != nil {
				path = append(path, tok)
				level = c.Subcommands
				cmdFlags = append(cmdFlags, c.Flags...)
				continue
			}
		}
		positional = append(positional, tok)
	}
	if help {
		return append(append(append([]string{args[0]}, global...), path...), "--help")
	}
	if dangling {
		// Alone at the end, for urfave/cli to say that it needs a value.
		return append([]string{args[0]}, global...)
	}
	out := make([]string, 0, len(args))
	out = append(out, args[0])
	out = append(out, global...)
	out = append(out, path...)
	out = append(out, local...)
	if len(rest) > 0 {
		// urfave/cli stops parsing flags at the first positional argument,
		// so "--" goes in front of them to be consumed as the end of flags.
		out = append(out, "--")
		rest = rest[1:]
	}
	out = append(out, positional...)
	out = append(out, rest...)
	return out
}

// isVerboseRun reports whether tok is -v repeated (-v, -vv, -vvv ...).
func isVerboseRun(tok string) bool {
	if len(tok) < 2 || tok[0] != '-' {
		return false
	}
	return strings.Trim(tok[1:], "v") == ""
}

// flagName returns the name of a flag token ("--limit=x" → "limit", true).
func flagName(tok string) (string, bool) {
	name := strings.TrimLeft(tok, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		return name[:i], true
	}
	return name, false
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	if d, ok := f.(cli.DocGenerationFlag); ok {
		return d.TakesValue()
	}
	return false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// globalFlagValue returns the last value args (program name first) give
// the global flag name, one of flags, "" when none. It reads args as
// reorderArgs does, without parsing them, so that it answers even for
// arguments that fail to parse (run needs --output to end a usage error
// in JSON).
func globalFlagValue(flags []cli.Flag, args []string, name string) string {
	want := findFlag(flags, name)
	value := ""
	for i := 1; i < len(args); i++ {
		tok := args[i]
		if tok == "--" {
			break
		}
		if len(tok) < 2 || tok[0] != '-' {
			continue
		}
		n, hasValue := flagName(tok)
		f := findFlag(flags, n)
		if f == nil || !takesValue(f) {
			continue
		}
		v := ""
		if hasValue {
			v = tok[strings.IndexByte(tok, '=')+1:]
		} else if i+1 < len(args) {
			i++
			v = args[i]
		}
		if f == want {
			value = v
		}
	}
	return value
}
