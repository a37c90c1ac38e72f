package inventory

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is where something was written: a file name, a 1-based line and column.
// Line 0 means the position is unknown; Column 0 means only the line is known.
// Extra variables (-e) have File "-e" and no line.
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

// extraPos is the position of variables given with -e.
var extraPos = Pos{File: "-e"}

// Error is one problem in an inventory: where, which field, what is wrong
// and what to do about it. It formats as "FILE:LINE:COL: field: problem (hint)".
type Error struct {
	Pos     Pos
	Field   string // e.g. "all.children.kms.hosts.kms1.ansible_port"; may be empty
	Problem string
	Hint    string // what to do; may be empty
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

// ValidationError holds every problem found in one load, sorted by position.
// Use errors.As to get it and range over Errs; errors.As also finds each *Error
// through Unwrap.
type ValidationError struct {
	Errs []*Error
}

// Error implements error: one problem per line.
func (v *ValidationError) Error() string {
	lines := make([]string, len(v.Errs))
	for i, e := range v.Errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems.
func (v *ValidationError) Unwrap() []error {
	errs := make([]error, len(v.Errs))
	for i, e := range v.Errs {
		errs[i] = e
	}
	return errs
}

// problems collects errors during a load.
type problems struct {
	errs []*Error
}

func (p *problems) add(pos Pos, field, problem, hint string) {
	p.errs = append(p.errs, &Error{Pos: pos, Field: field, Problem: problem, Hint: hint})
}

func (p *problems) addErr(e *Error) {
	if e != nil {
		p.errs = append(p.errs, e)
	}
}

// err returns nil or a *ValidationError with the problems sorted by position
// and exact duplicates removed.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	errs := slices.Clone(p.errs)
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
		)
	})
	errs = slices.CompactFunc(errs, func(a, b *Error) bool { return *a == *b })
	return &ValidationError{Errs: errs}
}
