package tasks

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// Task is one step of a play: a module with its arguments and the keywords
// Ansible users know (when, register, retries, notify, ...).
type Task struct {
	Name   string         // shown in output; the module name when empty
	Module string         // module to run, looked up in the Engine's Registry
	Args   map[string]any // raw module arguments, templated per host at run time

	When         string        // expression; the task is skipped on hosts where it is false
	Register     string        // variable that receives the result (see Result.Vars)
	ChangedWhen  string        // expression overriding the module's changed verdict
	FailedWhen   string        // expression overriding the module's failed verdict
	Until        string        // expression retried until true
	Retries      int           // attempts after the first when Until is set; 3 when 0
	Delay        time.Duration // pause between attempts; 5s when 0 and Until is set
	IgnoreErrors bool          // a failure is recorded as ignored and the host continues
	NoLog        bool          // hide the task's messages, output and diff in events
	Tags         []string      // selected by Engine.Tags / Engine.SkipTags
	Timeout      time.Duration // limit for each attempt of the module; 0 = none
	Become       *bool         // nil = the host's ansible_become variable
	BecomeUser   string        // "" = the host's ansible_become_user, else root
	Notify       []string      // handler names notified when the task changed something
	// Loop runs the module once per item, with the item in the variable
	// LoopVar ("item" when empty): a list (items are templated), or a
	// string holding an expression or "{{ var }}" that yields a list. The
	// task changed if any item changed and failed if any item failed (all
	// items run); register gets {results: [each item's result + item], ...}.
	Loop    any
	LoopVar string
	// DelegateTo runs the module through another host's connection (a host
	// name, templated): e.g. a cluster change sent from a healthy peer. The
	// variables, results and status stay the task's own host's; the
	// delegate's ansible_become applies. Failing to reach the delegate fails
	// the task (the task's host is not unreachable for it).
	DelegateTo string
	// RunOnce runs the task on the first remaining host of the batch only;
	// the other hosts get its registered result and facts as their own.
	RunOnce bool
	// CheckMode overrides the engine's check mode for this task (Ansible's
	// check_mode): false runs a read-only probe for real even under
	// --check; true only ever plans. nil follows Engine.Check.
	CheckMode *bool
	Pos       string // "file:line" for error messages
}

// DisplayName is the task's name, or its module's when it has none.
func (t Task) DisplayName() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Module
}

// Host is one target host, resolved once by the caller before the run.
type Host struct {
	Name string
	// Vars are the host's variables (the inventory's, with -e applied).
	Vars map[string]any
	// Target is the caller's resolved host, opaque to the engine: the CLI
	// puts the inventory's resolved host there (SSH settings and Key
	// Manager layout). The engine hands it unchanged to Connect and to the
	// modules (Env.Host), so that neither resolves the host again. It is
	// nil for a host known only by name (a delegate_to host outside the
	// plays).
	Target any
}

// Play runs tasks, then the notified handlers, on a list of hosts.
type Play struct {
	Name  string
	Hosts []Host
	// Serial splits the hosts into batches that run the whole play one after
	// the other: "2" or "30%"; with several entries the batches grow like
	// Ansible's (the last size repeats). Empty = one batch of all hosts.
	Serial []string
	// AnyErrorsFatal stops the play (and the run) after the first task on
	// which a host failed; nil means true. With false, failed hosts drop out
	// and the others go on.
	AnyErrorsFatal *bool
	Vars           map[string]any
	Tasks          []Task
	Handlers       []Task
	// Files resolves relative local paths of copy src, template src (nil =
	// the local file system relative to the working directory). Absolute
	// paths always come from the local file system.
	Files fs.FS
	Pos   string
}

// Status is how a host ended a task.
type Status int

// The statuses of a host's task result.
const (
	StatusOK Status = iota
	StatusChanged
	StatusSkipped
	StatusFailed
	StatusUnreachable
	// StatusInterrupted: the run was stopped (Ctrl-C, --timeout, or the
	// handler timeout after them) while the task ran on the host; what it
	// did there is unknown. It is neither failed nor unreachable.
	StatusInterrupted
)

// String returns "ok", "changed", "skipped", "failed", "unreachable" or
// "interrupted".
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusChanged:
		return "changed"
	case StatusSkipped:
		return "skipped"
	case StatusFailed:
		return "failed"
	case StatusUnreachable:
		return "unreachable"
	case StatusInterrupted:
		return "interrupted"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText makes Status appear as its name in JSON.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// EventType tells what an Event reports.
type EventType int

// The kinds of events the engine emits, in this order within a play:
// PlayStart, then per task TaskStart and one HostResult per host, then per
// notified handler HandlerStart and HostResults; one Recap ends the run.
// A loop task also reports each item on a host (ItemResult, its name
// rendered with the item) before the host's HostResult. TaskStart and
// HandlerStart name the task as written; results name it rendered with
// the host's variables (a loop's result: its items' names).
const (
	EventPlayStart EventType = iota
	EventTaskStart
	EventHostResult
	EventHandlerStart
	EventRecap
	EventItemResult
)

// String returns the event type's name as used in JSON output.
func (t EventType) String() string {
	switch t {
	case EventPlayStart:
		return "play_start"
	case EventTaskStart:
		return "task_start"
	case EventHostResult:
		return "host_result"
	case EventHandlerStart:
		return "handler_start"
	case EventRecap:
		return "recap"
	case EventItemResult:
		return "item_result"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// MarshalText makes EventType appear as its name in JSON.
func (t EventType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Event reports progress. Messages and diffs are already redacted, and
// empty for no_log tasks (Msg then says so).
type Event struct {
	Type     EventType
	Time     time.Time
	Play     string
	Task     string
	Pos      string // task position "file:line"
	Host     string
	Hosts    []string // PlayStart, TaskStart, HandlerStart: the hosts it runs on
	Status   Status
	Changed  bool
	Ignored  bool // failed, but ignore_errors was set
	Check    bool // the result comes from check mode (what would change)
	Msg      string
	Stdout   string // command output (redacted; empty for no_log)
	Stderr   string
	Diff     string        // unified diff of file content (never for secret files)
	Notified []string      // HostResult: the handlers the result notified (now owed on the host)
	Duration time.Duration // HostResult: the task on this host; Recap: the whole run
	Recap    Recap
}

// Sink receives the engine's events. The engine never calls Event
// concurrently: calls are serialised, in order, so implementations need no
// locking of their own. Event must not block for long.
type Sink interface {
	Event(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Event calls f(e).
func (f SinkFunc) Event(e Event) { f(e) }

// HostStats counts a host's task results. OK counts every task that
// succeeded, changed or not, as Ansible's recap does; Changed counts those
// of them that changed something. Ignored counts failures ignored by
// ignore_errors (they are not in Failed). Interrupted counts tasks the
// stopped run cut short on the host (not in Failed nor Unreachable).
type HostStats struct {
	OK, Changed, Skipped, Failed, Unreachable, Ignored, Interrupted int
}

// Recap maps host names to their stats for the whole run. Every host of
// every play has an entry, even when nothing ran on it.
type Recap map[string]*HostStats

// Failed reports whether any host had a failed task.
func (r Recap) Failed() bool {
	for _, s := range r {
		if s.Failed > 0 {
			return true
		}
	}
	return false
}

// Unreachable reports whether any host was unreachable.
func (r Recap) Unreachable() bool {
	for _, s := range r {
		if s.Unreachable > 0 {
			return true
		}
	}
	return false
}

// Hosts returns the host names in sorted order.
func (r Recap) Hosts() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (r Recap) host(name string) *HostStats {
	s, ok := r[name]
	if !ok {
		s = &HostStats{}
		r[name] = s
	}
	return s
}

// HostError is why one host failed or was unreachable.
type HostError struct {
	Host        string
	Play        string
	Task        string
	Pos         string // the task's "file:line"
	Unreachable bool
	Err         error
}

// Error names the host, task and position.
func (e *HostError) Error() string {
	what := "failed"
	if e.Unreachable {
		what = "unreachable"
	}
	where := ""
	if e.Pos != "" {
		where = " (" + e.Pos + ")"
	}
	return fmt.Sprintf("host %s %s at task %q%s: %v", e.Host, what, e.Task, where, e.Err)
}

// Unwrap returns the underlying error.
func (e *HostError) Unwrap() error { return e.Err }

// RunError is what Engine.Run returns when a host failed or was
// unreachable, or the run was cancelled. Use errors.As to get it; the CLI
// decides exit codes from the Recap (Recap.Failed, Recap.Unreachable).
// The hosts whose task the cancellation cut short are not in Hosts: their
// results say "interrupted" and the Recap counts them.
type RunError struct {
	Hosts     []*HostError // in the order they happened
	Recap     Recap
	Cancelled error // the context's error when the run was cancelled
}

// Error joins the host errors.
func (e *RunError) Error() string {
	var b strings.Builder
	if e.Cancelled != nil {
		fmt.Fprintf(&b, "run interrupted: %v", e.Cancelled)
	}
	for _, h := range e.Hosts {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(h.Error())
	}
	if b.Len() == 0 {
		return "run failed"
	}
	return b.String()
}

// Unwrap returns the host errors and the cancellation cause, for errors.Is/As.
func (e *RunError) Unwrap() []error {
	errs := make([]error, 0, len(e.Hosts)+1)
	for _, h := range e.Hosts {
		errs = append(errs, h)
	}
	if e.Cancelled != nil {
		errs = append(errs, e.Cancelled)
	}
	return errs
}

// TimedOut reports whether the run failed only by waiting too long: every
// host that failed (not ignored, not unreachable) failed with a
// TimeoutError, and at least one did. The CLI exits 6 for it.
func (e *RunError) TimedOut() bool {
	n := 0
	for _, h := range e.Hosts {
		if h.Unreachable {
			continue
		}
		var te *TimeoutError
		if !errors.As(h.Err, &te) {
			return false
		}
		n++
	}
	return n > 0
}

// TimeoutError is a module's wait that ran out of time: wait_for's
// timeout, or a task's timeout keyword. It fails the task like any error.
type TimeoutError struct{ Err error }

// Error returns the wrapped error's message.
func (e *TimeoutError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *TimeoutError) Unwrap() error { return e.Err }

// TimedOut returns true.
func (e *TimeoutError) TimedOut() bool { return true }

// VerificationFailed reports whether the run failed only by failed
// verifications: every host that failed (not ignored, not unreachable)
// failed with a VerificationError, and at least one did. The CLI exits 7
// for it.
func (e *RunError) VerificationFailed() bool {
	n := 0
	for _, h := range e.Hosts {
		if h.Unreachable {
			continue
		}
		var ve *VerificationError
		if !errors.As(h.Err, &ve) {
			return false
		}
		n++
	}
	return n > 0
}

// VerificationError is a module's check that found the host not as it must
// be (kms_verify's objects or canary, kms_hsm_check's HSM key), as opposed
// to a check that could not be made. It fails the task like any error.
type VerificationError struct{ Err error }

// Error returns the wrapped error's message.
func (e *VerificationError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *VerificationError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err says the host could not be reached: an
// error in its chain has an Unreachable() bool method returning true (as
// UnreachableError and remote's connection errors do).
func IsUnreachable(err error) bool {
	var u interface{ Unreachable() bool }
	return errors.As(err, &u) && u.Unreachable()
}

// UnreachableError marks err as a host being unreachable.
type UnreachableError struct{ Err error }

// Error returns the wrapped error's message.
func (e *UnreachableError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Unreachable returns true.
func (e *UnreachableError) Unreachable() bool { return true }
