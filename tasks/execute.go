package tasks

// One task's execution on one host: when, loop items, the module call
// with its timeout, until retries, changed_when/failed_when, and the
// result recorded in the recap and events.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// noLogMsg replaces every message of a no_log task.
const noLogMsg = "the output has been hidden due to no_log: true"

// outcome is one host's end of one task.
type outcome struct {
	res         Result
	err         error // why it failed, if it did
	unreachable bool
	derived     bool   // an argument was computed from a secret: so are the facts set
	name        string // the task's name rendered for the host ("" = Task.DisplayName)
}

// runTask runs one task on one host and records the outcome.
func (r *run) runTask(ctx context.Context, p Play, t Task, hs *hostState, hostvars scope) {
	start := time.Now()
	out := r.execute(ctx, p, t, hs, hostvars)
	res := out.res
	status := StatusOK
	switch {
	case (out.unreachable || res.Failed) && ctx.Err() != nil:
		// Cut short by the stopped run, not failed on its own.
		status = StatusInterrupted
	case out.unreachable:
		status = StatusUnreachable
	case res.Failed:
		status = StatusFailed
	case res.Skipped:
		status = StatusSkipped
	case res.Changed:
		status = StatusChanged
	}
	if t.Register != "" && !out.unreachable {
		hs.facts[t.Register] = res.Vars()
	}
	hs.lastFacts = nil
	if status == StatusOK || status == StatusChanged {
		maps.Copy(hs.facts, res.Facts)
		hs.lastFacts = res.Facts
		r.sec.registerNamed(res.Facts, false)
		for k, v := range res.Facts {
			if out.derived {
				r.sec.register(v)
			}
			hs.derived[k] = out.derived || r.sec.isNamed(k)
		}
	}
	var notified []string
	if status == StatusChanged {
		for _, n := range t.Notify {
			hs.notified[n] = true
			notified = append(notified, n)
		}
	}
	ignored := status == StatusFailed && t.IgnoreErrors
	st := r.recap[hs.host.Name]
	switch {
	case status == StatusUnreachable:
		st.Unreachable++
		hs.down = true
	case status == StatusInterrupted:
		st.Interrupted++
	case ignored:
		st.Ignored++
	case status == StatusFailed:
		st.Failed++
		hs.failed, hs.taskFail = true, true
	case status == StatusSkipped:
		st.Skipped++
	default:
		st.OK++
		if status == StatusChanged {
			st.Changed++
		}
	}
	name := r.sec.red.String(cmp.Or(out.name, t.DisplayName()))
	ev := Event{Type: EventHostResult, Play: p.Name, Task: name, Pos: t.Pos, Host: hs.host.Name,
		Status: status, Changed: res.Changed && status != StatusFailed, Ignored: ignored, Check: r.check(t),
		Notified: notified, Duration: time.Since(start)}
	msg := res.Msg
	if (status == StatusFailed || status == StatusUnreachable || status == StatusInterrupted) && out.err != nil {
		msg = out.err.Error()
	}
	if t.NoLog {
		ev.Msg = noLogMsg
	} else {
		ev.Msg = r.sec.red.String(msg)
		ev.Stdout = r.sec.red.String(res.Stdout)
		ev.Stderr = r.sec.red.String(res.Stderr)
		if r.e.Diff {
			ev.Diff = r.sec.red.String(res.Diff)
		}
	}
	if (status == StatusFailed && !ignored) || status == StatusUnreachable {
		err := out.err
		if err == nil {
			err = errors.New(msg)
		}
		if t.NoLog {
			err = &maskedError{msg: noLogMsg, err: err}
		} else {
			err = &maskedError{msg: r.sec.red.String(err.Error()), err: err}
		}
		r.errMu.Lock()
		r.errs = append(r.errs, &HostError{Host: hs.host.Name, Play: p.Name, Task: name, Pos: t.Pos, Unreachable: status == StatusUnreachable, Err: err})
		r.errMu.Unlock()
	}
	r.emit(ev)
}

// maskedError shows a redacted message but keeps the original chain for
// errors.Is/As.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

func failed(err error) outcome {
	return outcome{res: Result{Failed: true, Msg: err.Error()}, err: err, unreachable: IsUnreachable(err)}
}

// execute evaluates the task's keywords and calls its module.
func (r *run) execute(ctx context.Context, p Play, t Task, hs *hostState, hostvars scope) outcome {
	sc := r.scope(p, hs, hostvars)
	if t.Loop == nil {
		out := r.executeOne(ctx, p, t, hs, sc, 0)
		out.name = r.taskName(t, sc)
		return out
	}
	items, alts, err := r.loopItems(t, sc)
	if err != nil {
		return failed(fmt.Errorf("loop: %w", err))
	}
	loopVar := t.LoopVar
	if loopVar == "" {
		loopVar = "item"
	}
	agg := Result{Skipped: true, Facts: map[string]any{}}
	results := make([]any, 0, len(items))
	var errs []error
	var diffs []string
	counts := map[string]int{}
	derived := false
	var names []string
	for i, item := range items {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("loop interrupted: %w", context.Cause(ctx)))
			agg.Failed = true
			break
		}
		isc := sc.with(&r.sec, agg.Facts, nil)
		var altItem map[string]any
		if alts != nil {
			altItem = map[string]any{loopVar: alts[i]}
		}
		isc = isc.with(&r.sec, map[string]any{loopVar: item}, altItem)
		out := r.executeOne(ctx, p, t, hs, isc, i+1)
		if out.unreachable {
			return out
		}
		derived = derived || out.derived
		name := r.taskName(t, isc)
		names = append(names, name)
		r.emitItem(p, t, hs, name, out)
		rv := out.res.Vars()
		rv[loopVar] = item
		rv["item"] = item
		results = append(results, rv)
		agg.Changed = agg.Changed || out.res.Changed
		agg.Skipped = agg.Skipped && out.res.Skipped
		if out.res.Diff != "" {
			diffs = append(diffs, out.res.Diff)
		}
		switch {
		case out.res.Failed:
			agg.Failed = true
			counts["failed"]++
			if out.err != nil {
				errs = append(errs, fmt.Errorf("item %v: %w", item, out.err))
			}
		case out.res.Skipped:
			counts["skipped"]++
		case out.res.Changed:
			counts["changed"]++
			maps.Copy(agg.Facts, out.res.Facts)
		default:
			counts["ok"]++
			maps.Copy(agg.Facts, out.res.Facts)
		}
	}
	if len(items) == 0 {
		agg.Msg = "no items"
	}
	var parts []string
	for _, k := range []string{"changed", "ok", "skipped", "failed"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(parts) > 0 {
		agg.Msg = fmt.Sprintf("%d items: %s", len(items), strings.Join(parts, ", "))
	}
	agg.Diff = strings.Join(diffs, "")
	agg.Data = map[string]any{"results": results}
	if agg.Failed {
		agg.Skipped = false
		err := errors.Join(errs...)
		if err == nil {
			err = errors.New(agg.Msg)
		}
		return outcome{res: agg, err: err, derived: derived, name: loopName(t, names)}
	}
	return outcome{res: agg, derived: derived, name: loopName(t, names)}
}

// taskName is the task's name rendered with the host's (and the loop
// item's) variables; as written when it does not render.
func (r *run) taskName(t Task, sc scope) string {
	if !isTemplated(t.Name) {
		return t.DisplayName()
	}
	name, _, err := r.render(t.Name, sc)
	if err != nil || strings.TrimSpace(name) == "" {
		return t.DisplayName()
	}
	return name
}

// loopName is the name of a loop task's result on a host: the names of its
// items ("remove /a, remove /b"), the first three when there are more,
// or the task's name when they are all the same.
func loopName(t Task, names []string) string {
	names = slices.Compact(slices.Clone(names))
	switch {
	case len(names) == 0 || len(names) == 1 && names[0] == t.DisplayName():
		return t.DisplayName()
	case len(names) > 3:
		return fmt.Sprintf("%s, … (%d items)", strings.Join(names[:3], ", "), len(names))
	}
	return strings.Join(names, ", ")
}

// emitItem reports one loop item's outcome on a host (EventItemResult).
func (r *run) emitItem(p Play, t Task, hs *hostState, name string, out outcome) {
	status := StatusOK
	switch {
	case out.res.Failed:
		status = StatusFailed
	case out.res.Skipped:
		status = StatusSkipped
	case out.res.Changed:
		status = StatusChanged
	}
	msg := out.res.Msg
	if status == StatusFailed && out.err != nil {
		msg = out.err.Error()
	}
	ev := Event{Type: EventItemResult, Play: p.Name, Task: r.sec.red.String(name), Pos: t.Pos, Host: hs.host.Name,
		Status: status, Changed: out.res.Changed && status != StatusFailed, Check: r.check(t)}
	if t.NoLog {
		ev.Msg = noLogMsg
	} else {
		ev.Msg = r.sec.red.String(msg)
	}
	r.emit(ev)
}

// loopItems evaluates a task's loop: a list (each item templated), or a
// string holding an expression or "{{ var }}" that yields a list. alts
// are the items as the scope's alt yields them (nil when it has none):
// each item computed from a secret differs from its alt.
func (r *run) loopItems(t Task, sc scope) (items, alts []any, err error) {
	eval := func(vars map[string]any) ([]any, error) {
		if vars == nil {
			return nil, nil
		}
		var v any = t.Loop
		if s, ok := t.Loop.(string); ok {
			x, err := r.ev.eval(s, vars)
			if err != nil {
				return nil, err
			}
			v = x
		} else {
			x, err := r.ev.renderValue(t.Loop, vars)
			if err != nil {
				return nil, err
			}
			v = x
		}
		return asList(v)
	}
	if items, err = eval(sc.vars); err != nil {
		return nil, nil, err
	}
	if sc.alt == nil {
		return items, nil, nil
	}
	alts, err = eval(sc.alt)
	if err != nil || len(alts) != len(items) {
		// The list itself depends on a secret: every item is secret.
		alts = make([]any, len(items))
		for i, it := range items {
			alts[i], _ = r.sec.disguise(it, true)
		}
	}
	for i := range items {
		if !reflect.DeepEqual(items[i], alts[i]) {
			r.sec.register(items[i])
		}
	}
	return items, alts, nil
}

// asList converts a loop's value to a list.
func asList(v any) ([]any, error) {
	switch l := v.(type) {
	case []any:
		return l, nil
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, nil
	case []int:
		out := make([]any, len(l))
		for i, n := range l {
			out[i] = n
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("want a list, got %s", kindOf(v))
}

// executeOne runs the task once (one loop item, numbered from 1; 0 when
// the task has no loop) with the given variables.
func (r *run) executeOne(ctx context.Context, p Play, t Task, hs *hostState, sc scope, item int) outcome {
	vars := sc.vars
	if t.When != "" {
		ok, err := r.ev.evalBool(t.When, vars)
		if err != nil {
			return failed(fmt.Errorf("when: %w", err))
		}
		if !ok {
			return outcome{res: Result{Skipped: true, Msg: "condition false: " + t.When}}
		}
	}
	mod, ok := r.mods.Lookup(t.Module)
	if !ok {
		return failed(fmt.Errorf("unknown module %q", t.Module))
	}
	spec := mod.Spec()
	args, secret, err := r.renderArgs(t.Args, sc)
	if err != nil {
		return failed(fmt.Errorf("template arguments: %w", err))
	}
	for _, k := range sortedKeys(secret) {
		if spec.Args[k].CmdLine {
			return failed(secretOnCommandLine(t, k, r.sec.reads(t.Args[k], sc, hs.derived)))
		}
	}
	if probs := checkArgs(spec, args); len(probs) > 0 {
		return failed(fmt.Errorf("module %s: %s", t.Module, strings.Join(probs, "; ")))
	}
	env := &Env{Host: hs.host, Args: args, Vars: vars, Diff: r.e.Diff && !t.NoLog, NoLog: t.NoLog, Files: p.Files,
		Secret: secret, ev: &r.ev, sec: &r.sec, alt: sc.alt, Memo: &r.sums}
	delegate := ""
	if !spec.Local {
		target := hs
		if t.DelegateTo != "" {
			name, err := r.ev.render(t.DelegateTo, vars)
			if err != nil {
				return failed(fmt.Errorf("delegate_to: %w", err))
			}
			if strings.TrimSpace(name) == "" {
				return failed(fmt.Errorf("delegate_to %q is empty on this host", t.DelegateTo))
			}
			target = r.delegate(name)
			if target != hs {
				delegate = target.host.Name
			}
		}
		c, err := r.conn(ctx, target)
		if err != nil {
			if target != hs {
				return failed(&delegateError{host: target.host.Name, err: err})
			}
			return failed(err)
		}
		if c, err = r.become(c, t, target); err != nil {
			return failed(err)
		}
		env.Conn = c
		env.Peer = func(ctx context.Context, name string) (Conn, error) {
			peer := r.delegate(name)
			c, err := r.conn(ctx, peer)
			if err != nil {
				return nil, &peerError{host: name, err: err}
			}
			return r.become(c, t, peer)
		}
	}
	var out outcome
	if r.mutating(t, spec) {
		step := Step{Play: p.Name, Task: r.taskName(t, sc), Pos: t.Pos, Host: hs.host.Name, DelegateTo: delegate, Module: t.Module, Item: item}
		out = r.journaled(ctx, step, func() outcome { return r.retry(ctx, mod, t, env) })
	} else {
		out = r.retry(ctx, mod, t, env)
	}
	out.derived = len(secret) > 0
	return out
}

// retry calls the module until the task's until condition holds, its
// retries are used up or ctx ends.
func (r *run) retry(ctx context.Context, mod Module, t Task, env *Env) outcome {
	vars := env.Vars
	attempts := 1
	if t.Until != "" && !r.check(t) {
		retries := t.Retries
		if retries == 0 {
			retries = 3
		}
		attempts += retries
	}
	delay := t.Delay
	if delay == 0 && t.Until != "" {
		delay = 5 * time.Second
	}
	var out outcome
	for attempt := 1; ; attempt++ {
		out = r.attempt(ctx, mod, t, env)
		if out.unreachable || t.Until == "" || r.check(t) || out.res.Skipped {
			return out
		}
		cv := merge(vars, map[string]any{"result": out.res.Vars()})
		if t.Register != "" {
			cv[t.Register] = cv["result"]
		}
		done, err := r.ev.evalBool(t.Until, cv)
		if err != nil {
			return failed(fmt.Errorf("until: %w", err))
		}
		if done {
			if out.res.Data == nil {
				out.res.Data = map[string]any{}
			}
			out.res.Data["attempts"] = attempt
			return out
		}
		if attempt >= attempts {
			err := fmt.Errorf("condition %q still false after %d attempts: %s", t.Until, attempt, out.res.Msg)
			if out.err != nil {
				err = fmt.Errorf("condition %q still false after %d attempts: %w", t.Until, attempt, out.err)
			}
			out.res.Failed, out.err = true, err
			out.res.Msg = err.Error()
			return out
		}
		tm := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			tm.Stop()
			err := fmt.Errorf("interrupted while waiting to retry: %w", context.Cause(ctx))
			out.res.Failed, out.err, out.res.Msg = true, err, err.Error()
			return out
		case <-tm.C:
		}
	}
}

// check reports whether the task runs in check mode: the engine's mode
// unless the task's check_mode overrides it.
func (r *run) check(t Task) bool {
	if t.CheckMode != nil {
		return *t.CheckMode
	}
	return r.e.Check
}

// attempt calls the module once (Plan in check mode, else Apply) under the
// task's timeout, then applies changed_when and failed_when.
func (r *run) attempt(ctx context.Context, mod Module, t Task, env *Env) outcome {
	actx := ctx
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	res, err := callModule(actx, mod, env, r.check(t))
	var out outcome
	if err != nil {
		if IsUnreachable(err) {
			return outcome{res: Result{Failed: true, Msg: err.Error()}, err: err, unreachable: true}
		}
		if t.Timeout > 0 && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = &TimeoutError{Err: fmt.Errorf("timed out after %s: %w", t.Timeout, err)}
		}
		res.Failed, res.Msg = true, err.Error()
		out.err = err
	}
	if res.Skipped {
		out.res = res
		return out
	}
	cv := merge(env.Vars, map[string]any{"result": res.Vars()})
	if t.Register != "" {
		cv[t.Register] = cv["result"]
	}
	if t.ChangedWhen != "" {
		c, err := r.ev.evalBool(t.ChangedWhen, cv)
		if err != nil {
			return failed(fmt.Errorf("changed_when: %w", err))
		}
		res.Changed = c
	}
	if t.FailedWhen != "" {
		f, err := r.ev.evalBool(t.FailedWhen, cv)
		if err != nil {
			return failed(fmt.Errorf("failed_when: %w", err))
		}
		if res.Failed && !f {
			out.err = nil
		}
		if f && !res.Failed && res.Msg == "" {
			res.Msg = "failed_when is true: " + t.FailedWhen
		}
		res.Failed = f
	}
	if res.Failed && out.err == nil {
		out.err = errors.New(failMsg(res))
	}
	out.res = res
	return out
}

func failMsg(res Result) string {
	if res.Msg != "" {
		return res.Msg
	}
	if res.Stderr != "" {
		return strings.TrimSpace(res.Stderr)
	}
	return fmt.Sprintf("failed (rc=%d)", res.RC)
}

// callModule calls Plan or Apply, turning a panic into an error.
func callModule(ctx context.Context, mod Module, env *Env, check bool) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("module panicked: %v\n%s", p, debug.Stack())
		}
	}()
	if check {
		return mod.Plan(ctx, env)
	}
	return mod.Apply(ctx, env)
}
