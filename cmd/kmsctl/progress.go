package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// progress records, from the engine's events, what each host finished, so
// that a run that stops early can say what was done and what was not. The
// engine calls Event serially (tasks.Sink).
type progress struct {
	order []string // hosts in order of first appearance
	hosts map[string]*hostProgress
}

// hostProgress is what one host finished: tasks and handlers that ran to
// their end (ok, changed, skipped or failed with ignore_errors).
type hostProgress struct {
	finished, changed, skipped int
	last                       string // the task that finished last
	lastStatus                 string // how it ended: ok, changed, skipped, failed (ignored)
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

// Event records a host result; play starts name the hosts.
func (p *progress) Event(ev tasks.Event) {
	switch ev.Type {
	case tasks.EventPlayStart:
		for _, h := range ev.Hosts {
			p.host(h)
		}
	case tasks.EventHostResult:
		hp := p.host(ev.Host)
		if (ev.Status == tasks.StatusFailed && !ev.Ignored) || ev.Status == tasks.StatusUnreachable {
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
}

// stoppedEarly says, for a run that ended before its plays did, what each
// host finished and where it stopped (from the run's host errors), and that
// running the playbook again is not the way to complete it.
func (p *progress) stoppedEarly(errs []*tasks.HostError) string {
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
		for _, e := range errs {
			if e.Host != h {
				continue
			}
			switch {
			case errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded):
				fmt.Fprintf(&b, "; interrupted: %q (%s), whatever it did is unknown", e.Task, e.Pos)
			case e.Unreachable:
				fmt.Fprintf(&b, "; unreachable at %q (%s)", e.Task, e.Pos)
			default:
				fmt.Fprintf(&b, "; failed: %q (%s)", e.Task, e.Pos)
			}
		}
	}
	b.WriteString("\n  The later tasks did not run. Do not simply run the playbook again: it repeats every task from the start, which is not safe for one that wipes or restarts. Check the hosts first; the run log below has every task's result on every host.")
	return b.String()
}
