package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/kmsctl/kmsctl/tasks"
)

// progress records, from the engine's events, what each host finished and
// which handlers it is owed, so that a run that stops early can say what
// was done and what was not. The engine calls Event serially (tasks.Sink);
// a second Ctrl-C reads the owed handlers from another goroutine.
type progress struct {
	mu    sync.Mutex
	order []string // hosts in order of first appearance
	hosts map[string]*hostProgress
	// owed are the handlers notified and not yet run, in order of first
	// notification, with the hosts that are owed each.
	owed []*owedHandler
	// handler is the handler whose results are arriving ("" while tasks run).
	handler string
}

// owedHandler is a handler notified on hosts where it has not run yet.
type owedHandler struct {
	name  string
	hosts []string
	// running is true once the handler started on these hosts.
	running bool
}

// hostProgress is what one host finished: tasks and handlers that ran to
// their end (ok, changed, skipped or failed with ignore_errors), and the
// task the stopped run cut short on it.
type hostProgress struct {
	finished, changed, skipped int
	last                       string // the task that finished last
	lastStatus                 string // how it ended: ok, changed, skipped, failed (ignored)
	interrupted, interruptedAt string // the task cut short and its position
}

func newProgress() *progress { return &progress{hosts: map[string]*hostProgress{}} }

func (p *progress) host(name string) *hostProgress {
	hp, ok := p.hosts[name]
	if !ok {
		hp = &hostProgress{}
		p.hosts[name] = hp
		p.order = append(p.order, name)
	}
	return hp
}

// Event records a host result and the handlers it owes; play starts name
// the hosts.
func (p *progress) Event(ev tasks.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Type {
	case tasks.EventPlayStart:
		p.handler = ""
		for _, h := range ev.Hosts {
			p.host(h)
		}
	case tasks.EventTaskStart:
		p.handler = ""
	case tasks.EventHandlerStart:
		p.handler = ev.Task
		if o := p.owedHandler(ev.Task, false); o != nil {
			o.running = true
		}
	case tasks.EventHostResult:
		p.result(ev)
	}
}

// owedHandler returns the owed handler called name, added when add is set
// (nil when it is not owed).
func (p *progress) owedHandler(name string, add bool) *owedHandler {
	for _, o := range p.owed {
		if o.name == name {
			return o
		}
	}
	if !add {
		return nil
	}
	o := &owedHandler{name: name}
	p.owed = append(p.owed, o)
	return o
}

// result records one host result.
func (p *progress) result(ev tasks.Event) {
	if p.handler != "" && ev.Task == p.handler {
		p.paid(ev.Task, ev.Host)
	}
	for _, n := range ev.Notified {
		if o := p.owedHandler(n, true); !slices.Contains(o.hosts, ev.Host) {
			o.hosts = append(o.hosts, ev.Host)
		}
	}
	if ev.Status == tasks.StatusUnreachable {
		// The engine runs no handler on an unreachable host.
		for _, o := range p.owed {
			p.paid(o.name, ev.Host)
		}
	}
	hp := p.host(ev.Host)
	switch {
	case ev.Status == tasks.StatusInterrupted:
		hp.interrupted, hp.interruptedAt = ev.Task, ev.Pos
		return
	case (ev.Status == tasks.StatusFailed && !ev.Ignored) || ev.Status == tasks.StatusUnreachable:
		return // the run's host errors say where it stopped
	}
	hp.finished++
	hp.last, hp.lastStatus = ev.Task, ev.Status.String()
	switch {
	case ev.Ignored:
		hp.lastStatus = "failed, ignored"
	case ev.Status == tasks.StatusSkipped:
		hp.skipped++
	case ev.Changed:
		hp.changed++
		hp.lastStatus = "changed"
	}
}

// paid removes host from the hosts owed handler name.
func (p *progress) paid(name, host string) {
	o := p.owedHandler(name, false)
	if o == nil {
		return
	}
	o.hosts = slices.DeleteFunc(o.hosts, func(h string) bool { return h == host })
	if len(o.hosts) == 0 {
		p.owed = slices.DeleteFunc(p.owed, func(x *owedHandler) bool { return x == o })
	}
}

// skippedHandler is a handler owed on hosts that a second Ctrl-C leaves
// without it.
type skippedHandler struct {
	Handler string   `json:"handler"`
	Hosts   []string `json:"hosts"`
	// Running is true when it had started there and was cut off.
	Running bool `json:"running"`
}

// skippedHandlers returns the handlers still owed, in order of first
// notification, each with its hosts sorted: what exiting now leaves undone.
func (p *progress) skippedHandlers() []skippedHandler {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]skippedHandler, 0, len(p.owed))
	for _, o := range p.owed {
		hosts := slices.Clone(o.hosts)
		slices.Sort(hosts)
		out = append(out, skippedHandler{Handler: o.name, Hosts: hosts, Running: o.running})
	}
	return out
}

// describeSkipped says which owed handlers are skipped, on which hosts:
// `"restart minkms" on kms1, kms2 (cut off while running)`.
func describeSkipped(skipped []skippedHandler) string {
	parts := make([]string, len(skipped))
	for i, s := range skipped {
		parts[i] = fmt.Sprintf("%q on %s", s.Handler, strings.Join(s.Hosts, ", "))
		if s.Running {
			parts[i] += " (cut off while running)"
		}
	}
	return strings.Join(parts, "; ")
}

// stoppedEarly says, for a run that ended before its plays did, what each
// host finished and where it stopped (the task cut short, or the run's host
// errors), and that running the playbook again is not the way to complete
// it.
//
// rerun, when not empty, replaces that warning for a command that is safe
// to run again (status only reads): why it is safe.
func (p *progress) stoppedEarly(errs []*tasks.HostError, rerun string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString("What was done:")
	for _, h := range p.order {
		hp := p.hosts[h]
		switch hp.finished {
		case 0:
			fmt.Fprintf(&b, "\n  %s: no task finished", h)
		default:
			fmt.Fprintf(&b, "\n  %s: %d task(s) finished (%d changed, %d skipped), the last %q (%s)", h, hp.finished, hp.changed, hp.skipped, hp.last, hp.lastStatus)
		}
		if hp.interrupted != "" {
			fmt.Fprintf(&b, "; interrupted: %q%s, whatever it did is unknown", hp.interrupted, at(hp.interruptedAt))
		}
		for _, e := range errs {
			if e.Host != h {
				continue
			}
			if e.Unreachable {
				fmt.Fprintf(&b, "; unreachable at %q%s", e.Task, at(e.Pos))
			} else {
				fmt.Fprintf(&b, "; failed: %q%s", e.Task, at(e.Pos))
			}
		}
	}
	if rerun != "" {
		b.WriteString("\n  The later tasks did not run. " + rerun + "; the run log below has every task's result on every host.")
		return b.String()
	}
	b.WriteString("\n  The later tasks did not run. Do not simply run the playbook again: it repeats every task from the start, which is not safe for one that wipes or restarts. Check the hosts first; the run log below has every task's result on every host.")
	return b.String()
}

// at is " (FILE:LINE:COL)" for a task's position, "" for a task of no file
// (the plays kmsctl builds itself).
func at(pos string) string {
	if pos == "" {
		return ""
	}
	return " (" + pos + ")"
}
