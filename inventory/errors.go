package inventory

import "github.com/kmsctl/kmsctl/yamlpos"

// extraPos is the position of variables given with -e.
var extraPos = yamlpos.Pos{File: "-e"}

// problems collects errors during a load.
type problems struct {
	errs []*yamlpos.Error
}

func (p *problems) add(pos yamlpos.Pos, field, problem, hint string) {
	p.errs = append(p.errs, &yamlpos.Error{Pos: pos, Field: field, Problem: problem, Hint: hint})
}

func (p *problems) addErr(e *yamlpos.Error) {
	if e != nil {
		p.errs = append(p.errs, e)
	}
}

// err returns nil or a *yamlpos.List with the problems sorted by position
// and exact duplicates removed.
func (p *problems) err() error { return yamlpos.Join(p.errs) }
