package main

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// runEnd is how one invocation of kmsctl ended, for the run_end event that
// closes --output json: written by run, once, after every command that acts
// on hosts (ping, play) and after every failure, usage and validation
// errors included. A listing that succeeds (version, playbooks ls,
// inventory list) prints its JSON document alone.
type runEnd struct {
	w     io.Writer
	json  bool
	start time.Time

	mu sync.Mutex
	// stream is set by a command whose JSON output is a stream of events.
	stream bool
	// runLog is the path of the session's run log, if one started.
	runLog string
	// msg is the session's masked error message, when it already showed
	// the error (the host errors of a recap).
	msg     string
	written bool
}

// newRunEnd returns the run_end of an invocation started now, written to w
// when asJSON.
func newRunEnd(w io.Writer, asJSON bool) *runEnd {
	return &runEnd{w: w, json: asJSON, start: time.Now()}
}

// events marks the output as a stream of events, which run_end ends.
func (r *runEnd) events() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stream = true
}

// started records the run log of a session: its output is a stream of
// events.
func (r *runEnd) started(runLog string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stream, r.runLog = true, runLog
}

// shown records the session's masked error message, already shown on
// stderr, for run_end.
func (r *runEnd) shown(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msg = msg
}

// write writes run_end with the exit code and msg, the masked error ("" for
// none), unless the session gave its own message; add adds fields. Only the
// first call writes.
func (r *runEnd) write(code int, msg string, add func(*zerolog.Event) *zerolog.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written || !r.json || (!r.stream && code == 0) {
		return
	}
	r.written = true
	if r.msg != "" {
		msg = r.msg
	}
	ev := jsonLine(r.w, "run_end").Int("exit_code", code)
	if msg != "" {
		ev = ev.Str("error", msg)
	}
	if r.runLog != "" {
		ev = ev.Str("run_log", r.runLog)
	}
	if add != nil {
		ev = add(ev)
	}
	ev.Dur("duration_ms", time.Since(r.start)).Send()
}
