package fake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// The emulated commands below answer as GNU coreutils and dash do on
// Debian (the messages with ASCII quotes): same exit status, same stdout,
// stderr with the same reason. The conformance suite in package remote
// holds them to the real commands run by a shell.

// fail appends a "cmd: message" line to r's stderr and sets status code.
func (r *result) fail(code int, format string, args ...any) {
	r.stderr += fmt.Sprintf(format, args...) + "\n"
	r.code = code
}

// compileEcho emulates echo of words without backslashes and without a
// leading -n or -e, which every shell's echo prints alike.
func compileEcho(args []string, _ bool) (prog, bool) {
	if len(args) > 0 && (args[0] == "-n" || args[0] == "-e") {
		return nil, false
	}
	for _, a := range args {
		if strings.Contains(a, `\`) {
			return nil, false
		}
	}
	return func(*shell) result { return result{stdout: strings.Join(args, " ") + "\n"} }, true
}

func compileCd(args []string, cd bool) (prog, bool) {
	if len(args) != 1 || !pathsOK(args, cd) {
		return nil, false
	}
	return func(sh *shell) result {
		p := sh.abs(args[0])
		if f, err := sh.c.lookupPath(p); err != nil || !f.Dir {
			return result{stderr: "sh: 1: cd: can't cd to " + args[0] + "\n", code: 2}
		}
		sh.cwd = p
		return result{}
	}, true
}

func compileSync(args []string, cd bool) (prog, bool) {
	_, ops, ok := options(args, "")
	if !ok || (len(ops) > 0 && !pathsOK(ops, cd)) {
		return nil, false
	}
	return func(sh *shell) (r result) {
		for _, p := range ops {
			if _, err := sh.c.lookupPath(sh.abs(p)); err != nil {
				r.fail(1, "sync: error opening '%s': %v", p, err)
			}
		}
		return r
	}, true
}

// compileStat emulates stat -c FORMAT (or --format=FORMAT) with the
// directives %U %G %a %s %n and %%.
func compileStat(args []string, cd bool) (prog, bool) {
	var format string
	switch {
	case len(args) >= 2 && args[0] == "-c":
		format, args = args[1], args[2:]
	case len(args) >= 1 && strings.HasPrefix(args[0], "--format="):
		format, args = strings.TrimPrefix(args[0], "--format="), args[1:]
	default:
		return nil, false
	}
	_, ops, ok := options(args, "")
	if !ok || !pathsOK(ops, cd) {
		return nil, false
	}
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && (i+1 == len(format) || !strings.ContainsRune("UGasn%", rune(format[i+1]))) {
			return nil, false
		}
		if format[i] == '%' {
			i++
		}
	}
	return func(sh *shell) (r result) {
		for _, p := range ops {
			f, err := sh.c.lookupPath(sh.abs(p))
			if err != nil {
				r.fail(1, "stat: cannot statx '%s': %v", p, err)
				continue
			}
			var b strings.Builder
			for i := 0; i < len(format); i++ {
				if format[i] != '%' {
					b.WriteByte(format[i])
					continue
				}
				i++
				switch format[i] {
				case 'U':
					b.WriteString(f.Owner)
				case 'G':
					b.WriteString(f.Group)
				case 'a':
					b.WriteString(strconv.FormatUint(uint64(unixMode(f.Mode)), 8))
				case 's':
					b.WriteString(strconv.FormatInt(fileInfo{f: *f}.Size(), 10))
				case 'n':
					b.WriteString(p)
				case '%':
					b.WriteByte('%')
				}
			}
			r.stdout += b.String() + "\n"
		}
		return r
	}, true
}

// compileChmod emulates chmod with an octal mode.
func compileChmod(args []string, cd bool) (prog, bool) {
	_, ops, ok := options(args, "")
	if !ok || len(ops) < 2 || !pathsOK(ops[1:], cd) {
		return nil, false
	}
	n, ok := parseOctal(ops[0])
	if !ok {
		return nil, false
	}
	return func(sh *shell) (r result) {
		for _, p := range ops[1:] {
			f, err := sh.c.lookupPath(sh.abs(p))
			if err != nil {
				r.fail(1, "chmod: cannot access '%s': %v", p, err)
				continue
			}
			f.Mode = fileMode(n)
		}
		return r
	}, true
}

// compileChown emulates chown [-R] SPEC and chgrp [-R] GROUP. The fake has
// no user database: every user and group name exists.
func compileChown(name string) compiler {
	return func(args []string, cd bool) (prog, bool) {
		flags, ops, ok := options(args, "R")
		if !ok || len(ops) < 2 || ops[0] == "" || !pathsOK(ops[1:], cd) {
			return nil, false
		}
		spec := ops[0]
		if name == "chgrp" {
			spec = ":" + spec
		} else if strings.HasSuffix(spec, ":") {
			return nil, false // "user:" takes the user's login group: unknown here
		}
		return func(sh *shell) (r result) {
			for _, p := range ops[1:] {
				a := sh.abs(p)
				if _, err := sh.c.lookupPath(a); err != nil {
					r.fail(1, "%s: cannot access '%s': %v", name, p, err)
					continue
				}
				for q, f := range sh.c.files {
					if q == a || (flags != "" && strings.HasPrefix(q, a+"/")) || (flags != "" && a == "/") {
						f.Owner, f.Group = chownSpec(spec, f.Owner, f.Group)
					}
				}
			}
			return r
		}, true
	}
}

func compileMkdir(args []string, cd bool) (prog, bool) {
	flags, ops, ok := options(args, "p")
	if !ok || !pathsOK(ops, cd) {
		return nil, false
	}
	return func(sh *shell) (r result) {
		for _, p := range ops {
			a := sh.abs(p)
			var err error
			switch {
			case flags != "":
				err = sh.c.mkdirAll(a, 0o755)
			case sh.c.files[a] != nil:
				err = errExist
			default:
				if err = sh.c.checkParent(a); err == nil {
					err = sh.c.mkdirAll(a, 0o755)
				}
			}
			if err != nil {
				r.fail(1, "mkdir: cannot create directory '%s': %v", p, err)
			}
		}
		return r
	}, true
}

func compileRm(args []string, cd bool) (prog, bool) {
	flags, ops, ok := options(args, "rRf")
	if !ok || (len(ops) == 0 && !strings.Contains(flags, "f")) || (len(ops) > 0 && !pathsOK(ops, cd)) {
		return nil, false
	}
	for _, p := range ops {
		if b := path.Base(p); b == "." || b == ".." {
			return nil, false
		}
	}
	recursive, force := strings.ContainsAny(flags, "rR"), strings.Contains(flags, "f")
	return func(sh *shell) (r result) {
		for _, p := range ops {
			a := sh.abs(p)
			if a == "/" && recursive {
				r.fail(1, "rm: it is dangerous to operate recursively on '/'\nrm: use --no-preserve-root to override this failsafe")
				continue
			}
			f, err := sh.c.lookupPath(a)
			switch {
			case err != nil && force:
			case err != nil:
				r.fail(1, "rm: cannot remove '%s': %v", p, err)
			case f.Dir && !recursive:
				r.fail(1, "rm: cannot remove '%s': %v", p, errIsDir)
			default:
				sh.c.removeAll(a)
			}
		}
		return r
	}, true
}

// compileRmdir emulates rmdir DIR...: each must be an empty directory.
func compileRmdir(args []string, cd bool) (prog, bool) {
	flags, ops, ok := options(args, "")
	if !ok || flags != "" || len(ops) == 0 || !pathsOK(ops, cd) {
		return nil, false
	}
	return func(sh *shell) (r result) {
		for _, p := range ops {
			a := sh.abs(p)
			f, err := sh.c.lookupPath(a)
			switch {
			case err != nil:
				r.fail(1, "rmdir: failed to remove '%s': %v", p, err)
			case !f.Dir:
				r.fail(1, "rmdir: failed to remove '%s': %v", p, errNotDir)
			case len(sh.c.children(a)) > 0:
				r.fail(1, "rmdir: failed to remove '%s': %v", p, errNotEmpty)
			default:
				sh.c.removeAll(a)
			}
		}
		return r
	}, true
}

func compileTouch(args []string, cd bool) (prog, bool) {
	_, ops, ok := options(args, "")
	if !ok || !pathsOK(ops, cd) {
		return nil, false
	}
	return func(sh *shell) (r result) {
		for _, p := range ops {
			a := sh.abs(p)
			if f, ok := sh.c.files[a]; ok {
				f.ModTime = time.Now()
				continue
			}
			if err := sh.c.checkParent(a); err != nil {
				r.fail(1, "touch: cannot touch '%s': %v", p, err)
				continue
			}
			sh.c.files[a] = &File{Mode: 0o644, Owner: sh.c.user, Group: sh.c.group, ModTime: time.Now()}
		}
		return r
	}, true
}

// compileMv emulates mv [-f] [-T] SRC DST.
func compileMv(args []string, cd bool) (prog, bool) {
	flags, ops, ok := options(args, "fT")
	if !ok || len(ops) != 2 || !pathsOK(ops, cd) {
		return nil, false
	}
	return func(sh *shell) (r result) {
		src, dst := sh.abs(ops[0]), sh.abs(ops[1])
		sf, err := sh.c.lookupPath(src)
		if err != nil {
			r.fail(1, "mv: cannot stat '%s': %v", ops[0], err)
			return r
		}
		df, err := sh.c.lookupPath(dst)
		if err == nil && df.Dir && !strings.Contains(flags, "T") {
			dst = dst + "/" + path.Base(src)
			df, err = sh.c.lookupPath(dst)
		}
		shown := ops[1]
		if dst == src || strings.HasPrefix(dst, src+"/") {
			return result{unsupported: "mv of a path onto or into itself"}
		}
		switch {
		case err == nil && df.Dir && !sf.Dir:
			r.fail(1, "mv: cannot overwrite directory '%s' with non-directory", shown)
		case err == nil && !df.Dir && sf.Dir:
			r.fail(1, "mv: cannot overwrite non-directory '%s' with directory '%s'", shown, ops[0])
		case err == nil && df.Dir && len(sh.c.children(dst)) > 0:
			r.fail(1, "mv: cannot move '%s' to '%s': %v", ops[0], shown, errNotEmpty)
		case err != nil && sh.c.checkParent(dst) != nil:
			r.fail(1, "mv: cannot move '%s' to '%s': %v", ops[0], shown, sh.c.checkParent(dst))
		default:
			sh.c.removeAll(dst)
			sh.c.move(src, dst)
		}
		return r
	}, true
}

// sha256Stdin emulates remote.Checksum's script, `{ SCRIPT; } < p`, as
// sha256sum answers it.
func (c *Conn) sha256Stdin(p string) result {
	f, err := c.lookupPath(p)
	switch {
	case err != nil:
		return result{stderr: "sh: 1: cannot open " + p + ": No such file\n", code: 2}
	case f.Dir:
		return result{stderr: "sha256sum: -: Is a directory\n", code: 1}
	}
	return result{stdout: sum([]byte(f.Content)) + "  -\n"}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
