package tasks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/redact"
)

// DefaultForks is the parallelism when Engine.Forks is 0.
const DefaultForks = 10

// DefaultHandlerTimeout bounds the handlers still run after the run's
// context was cancelled, when Engine.HandlerTimeout is 0.
const DefaultHandlerTimeout = 2 * time.Minute

// Engine runs plays. Fill its fields, then call Run; an Engine may run
// several times but not concurrently with itself.
type Engine struct {
	// Forks bounds how many hosts run a task at the same time (DefaultForks when 0).
	Forks int
	// Check runs only the modules' read-only Plan (--check).
	Check bool
	// Diff fills Event.Diff with unified diffs of file content changes
	// (--diff); never for secret files or no_log tasks.
	Diff bool
	// Connect opens a connection to a host. It is called at most once per
	// host per run, when the host's first task needs it; the engine closes
	// every connection at the end of Run. An error makes the host
	// unreachable.
	Connect func(ctx context.Context, h Host) (Conn, error)
	// Become wraps a connection so commands run as user (remote.Become).
	// Needed only when a task or host asks for become.
	Become func(c Conn, user string) Conn
	// Sink receives events (nil = none). Calls are serialised.
	Sink Sink
	// Redactor masks secrets in every message, output and diff (nil = none).
	Redactor *redact.Redactor
	// Modules resolves module names (nil = Builtin()).
	Modules *Registry
	// Tags, when set, run only tasks with one of these tags (or "always");
	// SkipTags never runs tasks with one of these tags. Tasks tagged
	// "never" run only when one of their tags is asked for.
	Tags, SkipTags []string
	// ExtraVars (-e) override every other variable.
	ExtraVars map[string]any
	// HandlerTimeout bounds the handlers run after cancellation
	// (DefaultHandlerTimeout when 0).
	HandlerTimeout time.Duration
}

// hostState is one host's state for a whole run. Between tasks only the
// Run goroutine touches it; during a task only that host's worker does.
type hostState struct {
	host      Host
	conn      Conn
	connected bool
	facts     map[string]any  // registered results and set_fact, kept across plays
	notified  map[string]bool // handlers owed, per play batch
	failed    bool            // dropped out: a task failed
	down      bool            // dropped out: unreachable
	taskFail  bool            // failed (not ignored) during the current task
	lastFacts map[string]any  // facts set by the last task (for run_once)
	connMu    sync.Mutex      // guards conn and connected (delegation shares them)
}

type run struct {
	e     *Engine
	mods  *Registry
	ev    evaluator
	sums  sync.Map
	sem   chan struct{}
	recap Recap
	hosts map[string]*hostState

	extraMu sync.Mutex
	extra   map[string]*hostState // delegation targets outside every play

	sinkMu sync.Mutex
	errMu  sync.Mutex
	errs   []*HostError
}

// Run runs the plays in order and returns the recap. The error is nil when
// every host ended without failure; otherwise it is a *RunError (also
// when ctx was cancelled), or a plain error when the plays are invalid
// (then nothing ran). The recap is complete in every case but the last.
//
// Cancelling ctx starts no new task; running module calls see the
// cancellation; the handlers already owed still run with a fresh context
// bounded by HandlerTimeout; then the recap is emitted.
func (e *Engine) Run(ctx context.Context, plays []Play) (Recap, error) {
	mods := e.Modules
	if mods == nil {
		mods = Builtin()
	}
	if err := validatePlays(mods, plays); err != nil {
		return nil, err
	}
	forks := e.Forks
	if forks <= 0 {
		forks = DefaultForks
	}
	r := &run{e: e, mods: mods, sem: make(chan struct{}, forks), recap: Recap{}, hosts: map[string]*hostState{}, extra: map[string]*hostState{}}
	start := time.Now()
	for _, p := range plays {
		for _, h := range p.Hosts {
			r.recap.host(h.Name)
			if _, ok := r.hosts[h.Name]; !ok {
				r.hosts[h.Name] = &hostState{host: h, facts: map[string]any{}}
			}
		}
	}
	for _, p := range plays {
		if ctx.Err() != nil {
			break
		}
		if fatal := r.play(ctx, p); fatal {
			break
		}
	}
	closeErr := r.closeAll()
	r.emit(Event{Type: EventRecap, Recap: r.recap, Duration: time.Since(start)})
	if len(r.errs) > 0 || ctx.Err() != nil {
		re := &RunError{Hosts: r.errs, Recap: r.recap}
		if ctx.Err() != nil {
			re.Cancelled = context.Cause(ctx)
		}
		return r.recap, re
	}
	if closeErr != nil {
		return r.recap, closeErr
	}
	return r.recap, nil
}

func validatePlays(mods *Registry, plays []Play) error {
	var errs []error
	for _, p := range plays {
		where := p.Pos
		if where == "" {
			where = "play " + strconv.Quote(p.Name)
		}
		if _, err := batchSizes(1, p.Serial); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		handlers := map[string]bool{}
		for _, h := range p.Handlers {
			if h.Name == "" {
				errs = append(errs, fmt.Errorf("%s: a handler needs a name", orPos(h.Pos, where)))
			}
			handlers[h.Name] = true
		}
		for _, t := range slices.Concat(p.Tasks, p.Handlers) {
			if err := mods.Validate(t); err != nil {
				errs = append(errs, err)
			}
			for _, n := range t.Notify {
				if !handlers[n] {
					errs = append(errs, fmt.Errorf("%s: task %q notifies %q, which is not a handler of the play", orPos(t.Pos, where), t.DisplayName(), n))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func orPos(pos, def string) string {
	if pos != "" {
		return pos
	}
	return def
}

// batchSizes splits n hosts into serial batches.
func batchSizes(n int, serial []string) ([]int, error) {
	if len(serial) == 0 {
		return []int{n}, nil
	}
	var sizes []int
	for _, s := range serial {
		s = strings.TrimSpace(s)
		var size int
		if pct, ok := strings.CutSuffix(s, "%"); ok {
			p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
			if err != nil || p <= 0 || p > 100 {
				return nil, fmt.Errorf("serial %q: want a number of hosts or a percentage in (0,100]", s)
			}
			size = int(math.Floor(float64(n) * p / 100))
		} else {
			v, err := strconv.Atoi(s)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("serial %q: want a positive number of hosts or a percentage", s)
			}
			size = v
		}
		sizes = append(sizes, max(size, 1))
	}
	var out []int
	for i, left := 0, n; left > 0; i++ {
		size := sizes[min(i, len(sizes)-1)]
		size = min(size, left)
		out = append(out, size)
		left -= size
	}
	return out, nil
}

// play runs one play and reports whether the run must stop.
func (r *run) play(ctx context.Context, p Play) (fatal bool) {
	var hosts []*hostState
	names := make([]string, 0, len(p.Hosts))
	seen := map[string]bool{}
	for _, h := range p.Hosts {
		hs := r.hosts[h.Name]
		if hs.failed || hs.down || seen[h.Name] {
			continue
		}
		seen[h.Name] = true
		hs.host = h // this play's view of the host
		hosts = append(hosts, hs)
		names = append(names, h.Name)
	}
	r.emit(Event{Type: EventPlayStart, Play: p.Name, Pos: p.Pos, Hosts: names})
	sizes, _ := batchSizes(len(hosts), p.Serial) // validated in Run
	aef := p.AnyErrorsFatal == nil || *p.AnyErrorsFatal
	hostvars := make(map[string]any, len(p.Hosts))
	for _, h := range p.Hosts {
		hostvars[h.Name] = merge(h.Vars, p.Vars)
	}
	for _, size := range sizes {
		if size == 0 {
			break
		}
		batch := hosts[:size]
		hosts = hosts[size:]
		for _, hs := range batch {
			hs.notified = map[string]bool{}
		}
		stop := r.tasks(ctx, p, batch, aef, hostvars)
		r.handlers(ctx, p, batch, hostvars)
		if stop || ctx.Err() != nil {
			return stop
		}
	}
	return false
}

// tasks runs the play's tasks on a batch, and reports whether a failure
// stopped the play under any_errors_fatal.
func (r *run) tasks(ctx context.Context, p Play, batch []*hostState, aef bool, hostvars map[string]any) bool {
	for _, t := range p.Tasks {
		if ctx.Err() != nil {
			return false
		}
		if !r.e.selected(t.Tags) {
			continue
		}
		active := alive(batch)
		if len(active) == 0 {
			return false
		}
		run := active
		if t.RunOnce {
			run = active[:1]
		}
		r.emit(Event{Type: EventTaskStart, Play: p.Name, Task: t.DisplayName(), Pos: t.Pos, Hosts: hostNames(run)})
		r.fanOut(ctx, run, func(hs *hostState) { r.runTask(ctx, p, t, hs, hostvars) })
		if t.RunOnce {
			// The other hosts see the result as their own, as with Ansible's run_once.
			first := run[0]
			for _, hs := range active[1:] {
				if t.Register != "" {
					if v, ok := first.facts[t.Register]; ok {
						hs.facts[t.Register] = v
					}
				}
				maps.Copy(hs.facts, first.lastFacts)
			}
		}
		if aef && slices.ContainsFunc(active, func(hs *hostState) bool { return hs.taskFail }) {
			return true
		}
	}
	return false
}

// handlers runs the handlers owed by the batch's hosts, in definition order,
// also on hosts that failed later (never on unreachable ones).
func (r *run) handlers(ctx context.Context, p Play, batch []*hostState, hostvars map[string]any) {
	if ctx.Err() != nil {
		d := r.e.HandlerTimeout
		if d <= 0 {
			d = DefaultHandlerTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), d)
		defer cancel()
	}
	for _, h := range p.Handlers {
		var targets []*hostState
		for _, hs := range batch {
			if hs.notified[h.Name] && !hs.down {
				delete(hs.notified, h.Name)
				targets = append(targets, hs)
			}
		}
		if len(targets) == 0 {
			continue
		}
		r.emit(Event{Type: EventHandlerStart, Play: p.Name, Task: h.DisplayName(), Pos: h.Pos, Hosts: hostNames(targets)})
		r.fanOut(ctx, targets, func(hs *hostState) { r.runTask(ctx, p, h, hs, hostvars) })
	}
}

func alive(hosts []*hostState) []*hostState {
	var out []*hostState
	for _, hs := range hosts {
		if !hs.failed && !hs.down {
			out = append(out, hs)
		}
	}
	return out
}

func hostNames(hosts []*hostState) []string {
	out := make([]string, len(hosts))
	for i, hs := range hosts {
		out[i] = hs.host.Name
	}
	return out
}

// fanOut calls f for every host, at most Forks at a time, and waits. Once
// ctx is cancelled it starts f on no further host. The errors recorded
// meanwhile are sorted by host name, so that a RunError reads the same
// from run to run.
func (r *run) fanOut(ctx context.Context, hosts []*hostState, f func(*hostState)) {
	for _, hs := range hosts {
		hs.taskFail = false
	}
	r.errMu.Lock()
	first := len(r.errs)
	r.errMu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range hosts {
		acquired := false
		select {
		case r.sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if acquired {
				<-r.sem
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-r.sem }()
			f(hs)
		}()
	}
	wg.Wait()
	slices.SortStableFunc(r.errs[first:], func(a, b *HostError) int { return strings.Compare(a.Host, b.Host) })
}

// selected applies --tags and --skip-tags to a task's tags.
func (e *Engine) selected(tags []string) bool {
	has := func(list []string, s string) bool { return slices.Contains(list, s) }
	for _, t := range tags {
		if has(e.SkipTags, t) {
			return false
		}
	}
	asked := false
	for _, t := range tags {
		if has(e.Tags, t) {
			asked = true
		}
	}
	if has(tags, "never") && !asked {
		return false
	}
	if len(e.Tags) == 0 || has(e.Tags, "all") || has(tags, "always") {
		return true
	}
	return asked
}

func merge(layers ...map[string]any) map[string]any {
	n := 0
	for _, l := range layers {
		n += len(l)
	}
	out := make(map[string]any, n)
	for _, l := range layers {
		maps.Copy(out, l)
	}
	return out
}

// vars builds the variables a task sees on a host, lowest precedence
// first: inventory host vars, play vars, registered results and facts,
// extra vars; plus inventory_hostname, ansible_check_mode,
// ansible_diff_mode and hostvars (every play host's inventory and play vars).
// String variables that are templates themselves ("{{ base }}/conf") are
// rendered against the others, a few levels deep; one that fails to
// render stays as written.
func (r *run) vars(p Play, hs *hostState, hostvars map[string]any) map[string]any {
	v := merge(hs.host.Vars, p.Vars, hs.facts, r.e.ExtraVars)
	v["inventory_hostname"] = hs.host.Name
	v["ansible_check_mode"] = r.e.Check
	v["ansible_diff_mode"] = r.e.Diff
	v["hostvars"] = hostvars
	for range 5 {
		changed := false
		for k, val := range v {
			if s, ok := val.(string); ok && isTemplated(s) {
				if out, err := r.ev.render(s, v); err == nil && out != s {
					v[k] = out
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	return v
}

// conn returns the host's connection, connecting on first use.
func (r *run) conn(ctx context.Context, hs *hostState) (Conn, error) {
	hs.connMu.Lock() // other hosts' tasks may delegate to this host
	defer hs.connMu.Unlock()
	if hs.connected {
		return hs.conn, nil
	}
	if r.e.Connect == nil {
		return nil, errors.New("engine has no Connect function")
	}
	c, err := r.e.Connect(ctx, hs.host)
	if err != nil {
		// A transport error that classifies itself (Unreachable() bool, as
		// remote's do) already says "connect to HOST"; others get it here.
		var classified interface{ Unreachable() bool }
		if !errors.As(err, &classified) {
			err = fmt.Errorf("connect to %s: %w", hs.host.Name, err)
		}
		return nil, &UnreachableError{Err: err}
	}
	if c == nil {
		return nil, fmt.Errorf("connect to %s: Connect returned no connection", hs.host.Name)
	}
	hs.conn, hs.connected = c, true
	return c, nil
}

// delegate returns the state of a host tasks are delegated to: a host of
// the run, or one outside every play (connected by name on first use).
func (r *run) delegate(name string) *hostState {
	if hs, ok := r.hosts[name]; ok {
		return hs
	}
	r.extraMu.Lock()
	defer r.extraMu.Unlock()
	hs, ok := r.extra[name]
	if !ok {
		hs = &hostState{host: Host{Name: name}, facts: map[string]any{}}
		r.extra[name] = hs
	}
	return hs
}

// delegateError is a failure to reach the host a task is delegated to: it
// fails the task, but does not make the task's own host unreachable.
type delegateError struct {
	host string
	err  error
}

func (e *delegateError) Error() string     { return "delegate to " + e.host + ": " + e.err.Error() }
func (e *delegateError) Unwrap() error     { return e.err }
func (e *delegateError) Unreachable() bool { return false }

func (r *run) closeAll() error {
	var errs []error
	all := maps.Clone(r.hosts)
	maps.Copy(all, r.extra)
	for _, name := range slices.Sorted(maps.Keys(all)) {
		hs := all[name]
		if hs.connected && hs.conn != nil {
			if err := hs.conn.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close connection to %s: %w", name, err))
			}
			hs.connected, hs.conn = false, nil
		}
	}
	return errors.Join(errs...)
}

func (r *run) emit(ev Event) {
	if r.e.Sink == nil {
		return
	}
	ev.Time = time.Now()
	r.sinkMu.Lock()
	defer r.sinkMu.Unlock()
	r.e.Sink.Event(ev)
}

// noLogMsg replaces every message of a no_log task.
const noLogMsg = "the output has been hidden due to no_log: true"

// outcome is one host's end of one task.
type outcome struct {
	res         Result
	err         error // why it failed, if it did
	unreachable bool
}

// runTask runs one task on one host and records the outcome.
func (r *run) runTask(ctx context.Context, p Play, t Task, hs *hostState, hostvars map[string]any) {
	start := time.Now()
	out := r.execute(ctx, p, t, hs, hostvars)
	res := out.res
	status := StatusOK
	switch {
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
	if status != StatusFailed && status != StatusUnreachable && status != StatusSkipped {
		maps.Copy(hs.facts, res.Facts)
		hs.lastFacts = res.Facts
	}
	if status == StatusChanged {
		for _, n := range t.Notify {
			hs.notified[n] = true
		}
	}
	ignored := status == StatusFailed && t.IgnoreErrors
	st := r.recap[hs.host.Name]
	switch {
	case status == StatusUnreachable:
		st.Unreachable++
		hs.down = true
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
	ev := Event{Type: EventHostResult, Play: p.Name, Task: t.DisplayName(), Pos: t.Pos, Host: hs.host.Name,
		Status: status, Changed: res.Changed && status != StatusFailed, Ignored: ignored, Check: r.check(t),
		Duration: time.Since(start)}
	msg := res.Msg
	if (status == StatusFailed || status == StatusUnreachable) && out.err != nil {
		msg = out.err.Error()
	}
	if t.NoLog {
		ev.Msg = noLogMsg
	} else {
		ev.Msg = r.e.Redactor.String(msg)
		ev.Stdout = r.e.Redactor.String(res.Stdout)
		ev.Stderr = r.e.Redactor.String(res.Stderr)
		if r.e.Diff {
			ev.Diff = r.e.Redactor.String(res.Diff)
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
			err = &maskedError{msg: r.e.Redactor.String(err.Error()), err: err}
		}
		r.errMu.Lock()
		r.errs = append(r.errs, &HostError{Host: hs.host.Name, Play: p.Name, Task: t.DisplayName(), Pos: t.Pos, Unreachable: status == StatusUnreachable, Err: err})
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
	return outcome{res: Result{Failed: true, Msg: err.Error()}, err: err, unreachable: isUnreachable(err)}
}

// execute evaluates the task's keywords and calls its module.
func (r *run) execute(ctx context.Context, p Play, t Task, hs *hostState, hostvars map[string]any) outcome {
	vars := r.vars(p, hs, hostvars)
	if t.Loop == nil {
		return r.executeOne(ctx, p, t, hs, vars)
	}
	items, err := r.loopItems(t, vars)
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
	for _, item := range items {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("loop interrupted: %w", context.Cause(ctx)))
			agg.Failed = true
			break
		}
		iv := merge(vars, agg.Facts, map[string]any{loopVar: item})
		out := r.executeOne(ctx, p, t, hs, iv)
		if out.unreachable {
			return out
		}
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
		return outcome{res: agg, err: err}
	}
	return outcome{res: agg}
}

// loopItems evaluates a task's loop: a list (each item templated), or a
// string holding an expression or "{{ var }}" that yields a list.
func (r *run) loopItems(t Task, vars map[string]any) ([]any, error) {
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

// executeOne runs the task once (one loop item) with the given variables.
func (r *run) executeOne(ctx context.Context, p Play, t Task, hs *hostState, vars map[string]any) outcome {
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
	rendered, err := r.ev.renderValue(map[string]any(t.Args), vars)
	if err != nil {
		return failed(fmt.Errorf("template arguments: %w", err))
	}
	args, _ := rendered.(map[string]any)
	if probs := checkArgs(spec, args); len(probs) > 0 {
		return failed(fmt.Errorf("module %s: %s", t.Module, strings.Join(probs, "; ")))
	}
	env := &Env{Host: hs.host, Args: args, Vars: vars, Diff: r.e.Diff && !t.NoLog, NoLog: t.NoLog, Files: p.Files,
		eval: r.ev.eval, render: r.ev.render, sums: &r.sums}
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
	}
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

func (r *run) become(c Conn, t Task, hs *hostState) (Conn, error) {
	on := false
	if t.Become != nil {
		on = *t.Become
	} else if v, ok := hs.host.Vars["ansible_become"]; ok {
		b, err := toBool(v)
		if err != nil {
			return nil, fmt.Errorf("host variable ansible_become: %w", err)
		}
		on = b
	}
	if !on {
		return c, nil
	}
	user := t.BecomeUser
	if user == "" {
		if v, ok := hs.host.Vars["ansible_become_user"].(string); ok {
			user = v
		}
	}
	if user == "" {
		user = "root"
	}
	if r.e.Become == nil {
		return nil, errors.New("the task asks for become, but the engine has no Become function")
	}
	return r.e.Become(c, user), nil
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
		if isUnreachable(err) {
			return outcome{res: Result{Failed: true, Msg: err.Error()}, err: err, unreachable: true}
		}
		if t.Timeout > 0 && errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w", t.Timeout, err)
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
