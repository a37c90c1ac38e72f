package fake

import (
	"strings"
	"unicode/utf8"

	"github.com/kmsctl/kmsctl/remote"
)

// result is what an emulated command line did.
type result struct {
	stdout, stderr string
	code           int
	// unsupported, when set, says why the fake cannot emulate the command
	// in the host's present state; nothing was changed.
	unsupported string
}

// prog is one compiled simple command; it runs with c.mu held.
type prog func(sh *shell) result

// shell is the state of one emulated command line.
type shell struct {
	c   *Conn
	cwd string // set by cd; "" until then
}

// abs resolves an operand against the working directory.
func (sh *shell) abs(p string) string {
	if strings.HasPrefix(p, "/") || sh.cwd == "" {
		return cleanPath(p)
	}
	return cleanPath(sh.cwd + "/" + p)
}

// emulate runs cmd against the host's state when it is a command line the
// fake emulates; ok is false when it is not (nothing was changed then).
// The emulated lines are those kmsctl sends: one simple command, or
// `cd DIR && command`, of the commands in the table below; and the
// checksum script of remote.Checksum. Called with c.mu held.
func (c *Conn) emulate(cmd string) (result, bool) {
	if p, ok := strings.CutPrefix(cmd, "{ "+remote.SHA256Script+"; } < "); ok {
		words, ok := splitCommandLine(p)
		if !ok || len(words) != 1 || len(words[0]) != 1 || !strings.HasPrefix(words[0][0], "/") {
			return result{}, false
		}
		return c.sha256Stdin(cleanPath(words[0][0])), true
	}
	cmds, ok := splitCommandLine(cmd)
	if !ok {
		return result{}, false
	}
	progs := make([]prog, len(cmds))
	cd := false // a cd ran before: relative operands are allowed
	for i, argv := range cmds {
		compile, known := commands[argv[0]]
		if !known {
			return result{}, false
		}
		if progs[i], ok = compile(argv[1:], cd); !ok {
			return result{}, false
		}
		cd = cd || argv[0] == "cd"
	}
	sh := &shell{c: c}
	var all result
	for _, p := range progs { // cmd1 && cmd2 && ...
		r := p(sh)
		if r.unsupported != "" {
			return r, true
		}
		all.stdout += r.stdout
		all.stderr += r.stderr
		all.code = r.code
		if r.code != 0 {
			break
		}
	}
	return all, true
}

// compiler checks the arguments of one command and returns the program
// that runs it; ok is false for a use the fake does not emulate. cd tells
// whether a cd ran before (relative paths are allowed then).
type compiler func(args []string, cd bool) (p prog, ok bool)

// commands are the commands the fake emulates, by name.
var commands = map[string]compiler{
	"true":      func([]string, bool) (prog, bool) { return func(*shell) result { return result{} }, true },
	"false":     func([]string, bool) (prog, bool) { return func(*shell) result { return result{code: 1} }, true },
	"echo":      compileEcho,
	"cd":        compileCd,
	"sync":      compileSync,
	"stat":      compileStat,
	"chmod":     compileChmod,
	"chown":     compileChown("chown"),
	"chgrp":     compileChown("chgrp"),
	"mkdir":     compileMkdir,
	"rm":        compileRm,
	"rmdir":     compileRmdir,
	"touch":     compileTouch,
	"mv":        compileMv,
	"find":      compileFind,
	"systemctl": compileSystemctl,
}

// options splits args into single-letter flags, all of them in allowed,
// and operands, as GNU getopt does: flags may come anywhere before "--",
// which makes everything after it an operand.
func options(args []string, allowed string) (flags string, operands []string, ok bool) {
	for i, a := range args {
		switch {
		case a == "--":
			return flags, append(operands, args[i+1:]...), true
		case len(a) < 2 || a[0] != '-':
			operands = append(operands, a)
		default:
			for _, r := range a[1:] {
				if !strings.ContainsRune(allowed, r) {
					return "", nil, false
				}
			}
			flags += a[1:]
		}
	}
	return flags, operands, true
}

// pathsOK reports whether the operands are paths the fake resolves:
// absolute, or relative after a cd.
func pathsOK(ps []string, cd bool) bool {
	for _, p := range ps {
		if p == "" || (!strings.HasPrefix(p, "/") && !cd) {
			return false
		}
	}
	return len(ps) > 0
}

// cleanPath is path.Clean for an absolute path.
func cleanPath(p string) string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, s)
		}
	}
	return "/" + strings.Join(parts, "/")
}

// splitCommandLine splits a command line into simple commands joined by
// "&&", each a list of words, quoted as a POSIX shell quotes ('...', "...",
// backslash). It reports false for whatever the fake does not emulate:
// other operators (; | & < > ( )), expansions ($, backquotes, ~, globs),
// comments and line breaks.
func splitCommandLine(s string) ([][]string, bool) {
	var (
		cmds [][]string
		argv []string
		word strings.Builder
		in   bool // inside a word (possibly an empty quoted one)
	)
	endWord := func() {
		if in {
			argv = append(argv, word.String())
			word.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == ' ' || r == '\t':
			endWord()
		case r == '&' && strings.HasPrefix(s[i:], "&&"):
			endWord()
			if len(argv) == 0 {
				return nil, false
			}
			cmds, argv = append(cmds, argv), nil
			n = 2
		case r == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			word.WriteString(s[i+1 : i+1+j])
			in, n = true, j+2
		case r == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				switch s[j] {
				case '$', '`':
					return nil, false
				case '\\':
					if j+1 < len(s) && strings.IndexByte("$`\"\\", s[j+1]) >= 0 {
						j++
					} else if j+1 < len(s) && s[j+1] == '\n' {
						return nil, false
					}
				}
				word.WriteByte(s[j])
			}
			if j == len(s) {
				return nil, false
			}
			in, n = true, j+1-i
		case r == '\\':
			if i+1 == len(s) || s[i+1] == '\n' {
				return nil, false
			}
			r2, n2 := utf8.DecodeRuneInString(s[i+1:])
			word.WriteRune(r2)
			in, n = true, 1+n2
		case strings.ContainsRune(";|&<>()$`*?[\n", r),
			(r == '~' || r == '#') && !in:
			return nil, false
		default:
			word.WriteRune(r)
			in = true
		}
		i += n
	}
	endWord()
	if len(argv) == 0 {
		return nil, false
	}
	return append(cmds, argv), true
}
