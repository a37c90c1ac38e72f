package tasks

// Scheduling: a run goes play by play, batch by batch (serial), task by
// task; each task fans out over the batch's hosts, at most Forks at a
// time; the notified handlers run at the end of each batch.

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Run runs the plays in order and returns the recap. The error is nil when
// every host ended without failure; otherwise it is a *RunError (also
// when ctx was cancelled), or a plain error when the plays are invalid
// (then nothing ran). The recap is complete in every case but the last.
//
// Cancelling ctx starts no new task; running module calls see the
// cancellation; the handlers already owed still run with a fresh context
// bounded by HandlerTimeout; then the recap is emitted.
func (e *Engine) Run(ctx context.Context, plays []Play) (Recap, error) {
	r, err := e.newRun(plays)
	if err != nil {
		return nil, err
	}
	if err := r.validate(plays); err != nil {
		return nil, err
	}
	start := time.Now()
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
	hostvars := r.hostvarsOf(p)
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
func (r *run) tasks(ctx context.Context, p Play, batch []*hostState, aef bool, hostvars scope) bool {
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
func (r *run) handlers(ctx context.Context, p Play, batch []*hostState, hostvars scope) {
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
