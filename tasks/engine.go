package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	// Redactor masks secrets in every message, output and diff (nil = a
	// redactor of the run's own). The engine registers with it the values
	// of variables named as secrets (Secret) and every value computed from
	// a secret (see package doc, Secrets).
	Redactor *redact.Redactor
	// Secret reports whether a variable of this name holds a secret
	// (inventory.IsSecret); nil = only the values registered with Redactor
	// are secret.
	Secret func(name string) bool
	// Modules resolves module names (required; package modules registers
	// the general ones).
	Modules *Registry
	// Tags, when set, run only tasks with one of these tags (or "always");
	// SkipTags never runs tasks with one of these tags. Tasks tagged
	// "never" run only when one of their tags is asked for.
	Tags, SkipTags []string
	// ExtraVars (-e) override every other variable.
	ExtraVars map[string]any
	// Journal, when set, records intent before and result after each
	// mutating step, and may refuse one (see Journal).
	Journal Journal
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
	derived   map[string]bool // facts computed from secrets
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
	sec   secrets
	sums  sync.Map
	sem   chan struct{}
	recap Recap
	hosts map[string]*hostState

	extraMu sync.Mutex
	extra   map[string]*hostState // delegation targets outside every play

	journalMu sync.Mutex // serialises Journal calls and guards steps
	steps     int        // journaled steps so far

	sinkMu sync.Mutex
	errMu  sync.Mutex
	errs   []*HostError
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

func (r *run) emit(ev Event) {
	if r.e.Sink == nil {
		return
	}
	ev.Time = time.Now()
	r.sinkMu.Lock()
	defer r.sinkMu.Unlock()
	r.e.Sink.Event(ev)
}
