package fake

import (
	"strings"
)

// compileFind emulates find START... EXPRESSION with the primaries -type f|d,
// -user, -group, -perm MODE (exact octal), the operators ( ) ! -a -o, and
// the actions -print, -printf (%p and \n), -quit and -exec sha256sum -- {} +.
// The tree is walked depth-first with each directory's entries in name
// order; the real find uses the order of readdir, so with -quit the fake
// may name another one of several matching paths (kmsctl uses -quit only to
// learn whether there is one).
func compileFind(args []string, cd bool) (prog, bool) {
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") && args[i] != "(" && args[i] != "!" {
		i++
	}
	starts := args[:i]
	if !pathsOK(starts, cd) {
		return nil, false
	}
	p := &findParser{args: args[i:]}
	var expr findExpr = findTrue
	if len(p.args) > 0 {
		expr = p.or()
		if p.bad || p.pos != len(p.args) {
			return nil, false
		}
	}
	if !p.action {
		e := expr
		expr = func(w *findWalk, n findNode) bool { return e(w, n) && findPrint("%p\n")(w, n) }
	}
	return func(sh *shell) (r result) {
		w := &findWalk{c: sh.c}
		for _, s := range starts {
			a := sh.abs(s)
			if _, err := sh.c.lookupPath(a); err != nil {
				r.fail(1, "find: '%s': %v", s, err)
				continue
			}
			w.walk(expr, findNode{abs: a, shown: s})
			if w.quit {
				break
			}
		}
		for _, n := range w.sha256 {
			f := sh.c.files[n.abs]
			if f.Dir {
				w.err += "sha256sum: " + n.shown + ": Is a directory\n"
				r.code = 1
				continue
			}
			w.out += sum([]byte(f.Content)) + "  " + n.shown + "\n"
		}
		r.stdout += w.out
		r.stderr = w.err + r.stderr
		return r
	}, true
}

// findNode is one visited path: absolute, and as find prints it.
type findNode struct{ abs, shown string }

// findWalk is the state of one find run.
type findWalk struct {
	c        *Conn
	out, err string
	quit     bool
	sha256   []findNode // the operands of -exec sha256sum -- {} +
}

func (w *findWalk) walk(e findExpr, n findNode) {
	e(w, n)
	f := w.c.files[n.abs]
	if w.quit || !f.Dir {
		return
	}
	for _, name := range w.c.children(n.abs) {
		child := findNode{abs: strings.TrimSuffix(n.abs, "/") + "/" + name, shown: strings.TrimSuffix(n.shown, "/") + "/" + name}
		if n.shown == "/" {
			child.shown = "/" + name
		}
		w.walk(e, child)
		if w.quit {
			return
		}
	}
}

// findExpr evaluates an expression on one node.
type findExpr func(w *findWalk, n findNode) bool

func findTrue(*findWalk, findNode) bool { return true }

func findPrint(format string) findExpr {
	return func(w *findWalk, n findNode) bool {
		w.out += strings.NewReplacer("%p", n.shown, `\n`, "\n", "%%", "%", `\\`, `\`).Replace(format)
		return true
	}
}

// findParser parses find's expression by recursive descent.
type findParser struct {
	args   []string
	pos    int
	bad    bool // something the fake does not emulate
	action bool // the expression has an action (no implicit -print)
}

func (p *findParser) peek() string {
	if p.pos < len(p.args) {
		return p.args[p.pos]
	}
	return ""
}

func (p *findParser) next() string {
	s := p.peek()
	if p.pos >= len(p.args) {
		p.bad = true
	}
	p.pos++
	return s
}

func (p *findParser) or() findExpr {
	l := p.and()
	for p.peek() == "-o" {
		p.next()
		r, l0 := p.and(), l
		l = func(w *findWalk, n findNode) bool { return l0(w, n) || r(w, n) }
	}
	return l
}

func (p *findParser) and() findExpr {
	l := p.not()
	for s := p.peek(); s != "" && s != "-o" && s != ")"; s = p.peek() {
		if s == "-a" {
			p.next()
		}
		r, l0 := p.not(), l
		l = func(w *findWalk, n findNode) bool { return l0(w, n) && r(w, n) }
	}
	return l
}

func (p *findParser) not() findExpr {
	switch p.peek() {
	case "!":
		p.next()
		e := p.not()
		return func(w *findWalk, n findNode) bool { return !e(w, n) }
	case "(":
		p.next()
		e := p.or()
		if p.next() != ")" {
			p.bad = true
		}
		return e
	}
	return p.primary()
}

func (p *findParser) primary() findExpr {
	switch s := p.next(); s {
	case "-type":
		switch t := p.next(); t {
		case "f", "d":
			dir := t == "d"
			return func(w *findWalk, n findNode) bool { return w.c.files[n.abs].Dir == dir }
		}
	case "-user":
		u := p.next()
		return func(w *findWalk, n findNode) bool { return w.c.files[n.abs].Owner == u }
	case "-group":
		g := p.next()
		return func(w *findWalk, n findNode) bool { return w.c.files[n.abs].Group == g }
	case "-perm":
		m, ok := parseOctal(p.next())
		if ok {
			return func(w *findWalk, n findNode) bool { return unixMode(w.c.files[n.abs].Mode) == m }
		}
	case "-print":
		p.action = true
		return findPrint("%p\n")
	case "-printf":
		f := p.next()
		rest := strings.NewReplacer("%p", "", `\n`, "", "%%", "", `\\`, "").Replace(f)
		if !strings.ContainsAny(rest, `%\`) {
			p.action = true
			return findPrint(f)
		}
	case "-quit":
		p.action = true
		return func(w *findWalk, _ findNode) bool { w.quit = true; return true }
	case "-exec":
		if p.next() == "sha256sum" && p.next() == "--" && p.next() == "{}" && p.next() == "+" {
			p.action = true
			return func(w *findWalk, n findNode) bool { w.sha256 = append(w.sha256, n); return true }
		}
	}
	p.bad = true
	return findTrue
}

// parseOctal parses a chmod-style octal mode of up to four digits.
func parseOctal(s string) (uint32, bool) {
	if s == "" || len(s) > 4 {
		return 0, false
	}
	var n uint32
	for _, r := range s {
		if r < '0' || r > '7' {
			return 0, false
		}
		n = n*8 + uint32(r-'0')
	}
	return n, true
}
