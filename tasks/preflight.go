package tasks

// Preflight: everything about the plays that can be known before the
// first host is touched is checked then, so that bad input changes nothing.

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"

	"github.com/kmsctl/kmsctl/redact"
)

// LocalChecker is implemented by a Module that checks on the control
// machine, before any host is touched, what it will need there (copy and
// template: that the local src exists). env has the task's arguments
// rendered with the variables known before the run (Args), Vars and
// Files, but no Conn: CheckLocal must not reach any host.
type LocalChecker interface {
	CheckLocal(env *Env) error
}

// Validate checks plays as Run does before it touches any host: every
// task's module, arguments and expressions (Registry.Validate), serial
// and handlers; then, for every host of each play with the variables
// known before the run (a play without hosts: its own and the extra
// vars), that no argument a module puts on a remote command line reads a
// secret (a *RefusedError, see ArgSpec.CmdLine), and what the modules
// check on the control machine (LocalChecker). It reports every problem.
func (e *Engine) Validate(plays []Play) error {
	r, err := e.newRun(plays)
	if err != nil {
		return err
	}
	return r.validate(plays)
}

// newRun prepares a run of plays: the module registry, the secrets (every
// value held by a secret name is registered with the redactor) and the
// state of every host.
func (e *Engine) newRun(plays []Play) (*run, error) {
	if e.Modules == nil {
		return nil, errors.New("engine has no module registry: set Engine.Modules")
	}
	forks := e.Forks
	if forks <= 0 {
		forks = DefaultForks
	}
	red := e.Redactor
	if red == nil {
		red = redact.New()
	}
	r := &run{e: e, mods: e.Modules, sec: secrets{red: red, named: e.Secret}, sem: make(chan struct{}, forks), recap: Recap{},
		hosts: map[string]*hostState{}, extra: map[string]*hostState{}}
	r.sec.registerNamed(e.ExtraVars, false)
	for _, p := range plays {
		for _, h := range p.Hosts {
			r.recap.host(h.Name)
			if _, ok := r.hosts[h.Name]; !ok {
				r.hosts[h.Name] = &hostState{host: h, facts: map[string]any{}, derived: map[string]bool{}}
			}
			r.sec.registerNamed(h.Vars, false)
		}
		r.sec.registerNamed(p.Vars, false)
	}
	return r, nil
}

// validate is Validate with the run's secrets.
func (r *run) validate(plays []Play) error {
	if err := validatePlays(r.mods, plays); err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	add := func(err error) {
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			errs = append(errs, err)
		}
	}
	later := r.setLater(plays)
	for _, p := range plays {
		hosts := p.Hosts
		if len(hosts) == 0 {
			hosts = []Host{{}}
		}
		hv := r.hostvarsOf(p)
		for i, h := range hosts {
			hs := &hostState{host: h, facts: map[string]any{}, derived: map[string]bool{}}
			sc := r.scope(p, hs, hv)
			derived := map[string]bool{}
			for _, t := range slices.Concat(p.Tasks, p.Handlers) {
				for _, err := range r.preflightTask(p, t, h, sc, derived, later, i == 0) {
					add(err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// setLater lists the variables that tasks of the plays set while they
// run (register, set_fact, loop variables; facts last for the whole run):
// their values are not known before.
func (r *run) setLater(plays []Play) map[string]bool {
	later := map[string]bool{}
	var all []Task
	for _, p := range plays {
		all = slices.Concat(all, p.Tasks, p.Handlers)
	}
	for _, t := range all {
		if t.Register != "" {
			later[t.Register] = true
		}
		if t.Loop != nil {
			later[loopVar(t)] = true
		}
		if m, ok := r.mods.Lookup(t.Module); ok && m.Spec().SetsFacts {
			for k := range t.Args {
				later[k] = true
			}
		}
	}
	return later
}

// loopVar is the name of a loop task's item variable.
func loopVar(t Task) string {
	if t.LoopVar == "" {
		return "item"
	}
	return t.LoopVar
}

// preflightTask checks one task on one host before the run. derived
// collects the facts that tasks so far set from secrets. Arguments without
// templates are the same on every host: they are checked on the first.
func (r *run) preflightTask(p Play, t Task, h Host, sc scope, derived, later map[string]bool, first bool) []error {
	mod, ok := r.mods.Lookup(t.Module)
	if !ok {
		return nil // reported by validatePlays
	}
	spec := mod.Spec()
	tderived := derived
	if t.Loop != nil && r.loopReadsSecret(t, sc, derived) {
		tderived = maps.Clone(derived)
		tderived[loopVar(t)] = true
	}
	var errs []error
	for _, k := range sortedKeys(t.Args) {
		if !spec.Args[k].CmdLine {
			continue
		}
		names := r.sec.reads(t.Args[k], sc, tderived)
		if len(names) > 0 || r.sec.holds(t.Args[k]) {
			errs = append(errs, secretOnCommandLine(t, k, names))
		}
	}
	if spec.SetsFacts {
		for k, v := range t.Args {
			if r.sec.isNamed(k) || len(r.sec.reads(v, sc, tderived)) > 0 {
				derived[k] = true
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	_, checks := mod.(ArgsChecker)
	_, local := mod.(LocalChecker)
	if !checks && !local || !first && !templated(t.Args) {
		return nil
	}
	return r.checkKnown(mod, p, t, h, sc, later)
}

// templated reports whether v holds a template.
func templated(v any) bool {
	found := false
	walkStrings(v, func(s string) { found = found || isTemplated(s) })
	return found
}

// loopReadsSecret reports whether a task's loop reads a secret.
func (r *run) loopReadsSecret(t Task, sc scope, derived map[string]bool) bool {
	if s, ok := t.Loop.(string); ok && !isTemplated(s) {
		for _, p := range exprRefs(s) {
			if r.sec.readsPath(p, sc, derived) {
				return true
			}
		}
		return false
	}
	return len(r.sec.reads(t.Loop, sc, derived)) > 0
}

// checkKnown checks a task's arguments as far as they are known before
// the run: rendered with the variables known then, except those whose
// templates read variables set while the play runs (later) or that fail
// to render (left as written, so that a module takes them for templates).
// It runs the Spec's type checks, the module's ArgsChecker and
// LocalChecker on them.
func (r *run) checkKnown(mod Module, p Play, t Task, h Host, sc scope, later map[string]bool) []error {
	args := Args{}
	rendered := false
	for k, v := range t.Args {
		args[k] = v
		known := true
		walkStrings(v, func(s string) {
			for _, ref := range templateRefs(s) {
				if later[ref[0]] {
					known = false
				}
			}
		})
		if !known {
			continue
		}
		out, _, err := r.renderValue(v, sc)
		if err != nil {
			continue // an undefined variable may yet be set; Run reports it
		}
		if !reflect.DeepEqual(out, v) {
			args[k], rendered = out, true
		}
	}
	where := orPos(t.Pos, "task "+strconv.Quote(t.DisplayName()))
	if rendered && h.Name != "" {
		where += " on host " + h.Name
	}
	var errs []error
	probs := checkArgs(mod.Spec(), args)
	for _, pr := range probs {
		errs = append(errs, fmt.Errorf("%s: module %s: %s", where, t.Module, pr))
	}
	if len(probs) > 0 {
		return errs
	}
	if c, ok := mod.(ArgsChecker); ok && rendered {
		if err := c.CheckArgs(args); err != nil {
			errs = append(errs, fmt.Errorf("%s: module %s: %w", where, t.Module, err))
		}
	}
	if c, ok := mod.(LocalChecker); ok {
		env := &Env{Host: h, Args: args, Vars: sc.vars, Files: p.Files, ev: &r.ev, sec: &r.sec, alt: sc.alt}
		if err := c.CheckLocal(env); err != nil {
			errs = append(errs, fmt.Errorf("%s: module %s: %w", where, t.Module, err))
		}
	}
	return errs
}
