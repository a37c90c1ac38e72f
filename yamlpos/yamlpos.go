// Package yamlpos is the one kind of positioned error of kmsctl's YAML
// inputs (inventories, vars files, playbooks): a problem at FILE:LINE:COL,
// a sorted list of such problems, and the helpers that turn yaml.v3 nodes
// and syntax errors into positions. It is pure: no I/O.
//
// Callers get every problem of a load with errors.As:
//
//	var list *yamlpos.List
//	if errors.As(err, &list) {
//		for _, e := range list.Errs { fmt.Println(e.Pos.Line, e.Problem) }
//	}
//
// and errors.As with a *yamlpos.Error target finds the first one.
package yamlpos

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is where something was written: a file name, a 1-based line and column.
// Line 0 means the position is unknown; Column 0 means only the line is known.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String formats the position as FILE:LINE:COL, FILE:LINE or FILE.
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	}
}

// Of returns the position of a yaml.v3 node in file.
func Of(file string, n *yaml.Node) Pos {
	return Pos{File: file, Line: n.Line, Column: n.Column}
}

// Error is one problem in a YAML input: where, which field, what is wrong
// and what to do about it. It formats as "FILE:LINE:COL: field: problem (hint)".
type Error struct {
	Pos     Pos
	Field   string // e.g. "all.children.kms.hosts.kms1.ansible_port"; may be empty
	Problem string
	Hint    string // what to do; may be empty
	// Err is the underlying error, if any, for errors.Is and errors.As
	// (a refusal by a safety rule, a nested *List of a vars file). Its
	// text is not printed: Problem says it.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying error, or nil.
func (e *Error) Unwrap() error { return e.Err }

// List holds every problem found in one load, sorted by position. Use
// errors.As to get it and range over Errs; errors.As also finds each *Error
// through Unwrap.
type List struct {
	Errs []*Error
}

// Error implements error: one problem per line.
func (l *List) Error() string {
	lines := make([]string, len(l.Errs))
	for i, e := range l.Errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems.
func (l *List) Unwrap() []error {
	errs := make([]error, len(l.Errs))
	for i, e := range l.Errs {
		errs[i] = e
	}
	return errs
}

// Join returns nil for no problems, or a *List of errs sorted by position
// (stable: problems at one position keep their order) with duplicates
// (same position, field, problem and hint) removed. errs is not modified.
func Join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sorted := slices.Clone(errs)
	slices.SortStableFunc(sorted, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
		)
	})
	sorted = slices.CompactFunc(sorted, func(a, b *Error) bool {
		return a.Pos == b.Pos && a.Field == b.Field && a.Problem == b.Problem && a.Hint == b.Hint
	})
	return &List{Errs: sorted}
}

// syntaxLineRe matches yaml.v3's "yaml: line N: problem" syntax errors.
var syntaxLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Syntax turns a yaml.v3 syntax error from decoding file into an *Error at
// the line yaml.v3 names (or at the file when it names none), with what to do.
func Syntax(file string, err error) *Error {
	msg := err.Error()
	if m := syntaxLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Pos: Pos{File: file, Line: line}, Problem: "invalid YAML: " + m[2],
			Hint: "fix the YAML syntax at or after this line; check the indentation", Err: err}
	}
	return &Error{Pos: Pos{File: file}, Problem: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: "),
		Hint: "fix the YAML syntax", Err: err}
}
