package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/output"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/runlog"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/journal"
	"github.com/kmsctl/kmsctl/redact"
	"github.com/kmsctl/kmsctl/tasks"
)

// Environment variables holding secrets; their values are masked everywhere.
const (
	envAPIKey = "MINIO_KMS_API_KEY"
	envHSMKey = "MINIO_KMS_HSM_KEY"
)

// session is what one run of a command that acts on hosts shares: the
// redactor, the run log, the journal, the logger and the display.
type session struct {
	e env
	o options
	// command is the command line without "kmsctl" ("play x.yml"), for
	// the journal and the cluster locks' holder records.
	command string
	red     *redact.Redactor
	log     *runlog.Log
	// journal records the run's mutating steps (the engine's hook) and
	// how it ended; it has the run log's ID.
	journal *journal.File
	// hosts is how many hosts the run's plays target, for the journal.
	hosts   int
	logger  zerolog.Logger
	display output.Display
	// sink renders events and records them in the run log, masked.
	sink tasks.Sink
	// logSink records events in the run log only, masked: a command's
	// read-only preflight within the session (runner.gatherWithin).
	logSink tasks.Sink
	// progress is what each host finished, for a run that stops early.
	progress *progress
	// rerun, for a command that is safe to run again after it stopped
	// early, says why; "" warns against running it again.
	rerun string
	start time.Time
	// aborted is set by a second Ctrl-C: no event is shown after its
	// run_end.
	aborted atomic.Bool
}

// newRedactor registers the secrets of the environment.
func newRedactor(e env) *redact.Redactor {
	red := redact.New()
	for _, name := range []string{envAPIKey, envHSMKey} {
		v := strings.TrimSpace(e.getenv(name))
		if v == "" {
			continue
		}
		red.Add(v)
		// "hsm:aes256:BASE64" and "k1:BASE64": the key material alone, too.
		if i := strings.LastIndexByte(v, ':'); i >= 0 {
			red.Add(v[i+1:])
		}
	}
	return red
}

// newSession starts the run log and the display for command; a quiet
// session displays no event.
func newSession(e env, o options, command string, quiet bool) (*session, error) {
	s := &session{e: e, o: o, command: command, red: newRedactor(e), start: time.Now()}
	for k, v := range o.ExtraVars {
		if str, ok := v.(string); ok && inventory.IsSecret(k) {
			s.red.Add(str)
		}
	}
	var (
		log *runlog.Log
		j   *journal.File
		err error
	)
	if o.Resume != "" {
		// kmsctl resume: the run goes on under its ID, in its log and
		// journal.
		if log, err = runlog.Continue(e.stateDir, o.Resume, s.red); err != nil {
			return nil, err
		}
		j, err = journal.Continue(e.stateDir, o.Resume, journal.Resumed{Command: command, User: operator(), PID: os.Getpid(), Start: s.start}, s.red)
	} else {
		if log, err = runlog.Create(e.stateDir, s.start, s.red); err != nil {
			return nil, err
		}
		j, err = journal.Create(e.stateDir, journal.Header{ID: log.ID, Command: command, User: operator(), PID: os.Getpid(), Start: s.start}, s.red)
	}
	if err != nil {
		return nil, errors.Join(err, log.Close())
	}
	s.log = log
	s.journal = j
	e.end.started(log.Path)
	level := zerolog.WarnLevel
	switch {
	case o.Verbosity == 1:
		level = zerolog.InfoLevel
	case o.Verbosity >= 2:
		level = zerolog.DebugLevel
	}
	s.display = output.New(e.stdout, output.Options{Format: o.Output, Terminal: e.terminal && o.Output == "text", Verbosity: o.Verbosity, Width: e.width, Color: e.getenv("NO_COLOR") == "", Quiet: quiet})
	// What goes to stderr while the display draws goes above its live lines.
	stderr := maskWriter{s.red, s.display.Above(e.stderr)}
	console := zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: "15:04:05"}
	s.logger = zerolog.New(zerolog.MultiLevelWriter(
		log,
		&zerolog.FilteredLevelWriter{Writer: zerolog.LevelWriterAdapter{Writer: console}, Level: level},
	)).Level(zerolog.DebugLevel).With().Timestamp().Str("run", log.ID).Logger()
	s.logger.Debug().Str("command", command).Str("version", version).Str("commit", commit).
		Strs("inventory", o.Inventories).Str("limit", o.Limit).Int("forks", o.Forks).
		Bool("check", o.Check).Bool("diff", o.Diff).Msg("run started")
	// Events go to the run log only (the display shows them): with their
	// own time, so without the logger's timestamp.
	events := zerolog.New(log).With().Str("run", log.ID).Logger()
	runLog := tasks.SinkFunc(func(ev tasks.Event) { output.LogEvent(events, zerolog.DebugLevel, ev) })
	disp := output.Tee(s.display, runLog)
	s.logSink = tasks.SinkFunc(func(ev tasks.Event) {
		if s.aborted.Load() {
			return
		}
		runLog.Event(redactEvent(s.red, ev))
	})
	s.progress = newProgress()
	s.sink = tasks.SinkFunc(func(ev tasks.Event) {
		if s.aborted.Load() {
			return
		}
		ev = redactEvent(s.red, ev)
		disp.Event(ev)
		s.progress.Event(ev)
	})
	e.intr.attach(stderr, s.abort)
	return s, nil
}

// abort is a second Ctrl-C's last words, before kmsctl exits at once: the
// live lines erased, and which owed handlers it skips (names and hosts)
// on stderr, in the run log and in run_end.
func (s *session) abort() {
	s.aborted.Store(true)
	s.display.Close()
	skipped := s.progress.skippedHandlers()
	msg := "interrupted again: exiting at once"
	if len(skipped) > 0 {
		msg += "; owed handlers skipped: " + describeSkipped(skipped)
	}
	msg = s.red.String(msg)
	fmt.Fprintf(s.e.stderr, "kmsctl: %s\n", msg)
	s.logger.Info().Interface("skipped_handlers", skipped).Int("exit_code", exit.Interrupted).Dur("duration_ms", time.Since(s.start)).Msg("run ended: " + msg)
	s.e.end.write(exit.Interrupted, msg, func(ev *zerolog.Event) *zerolog.Event { return ev.Interface("skipped_handlers", skipped) })
	if err := s.journal.End(journal.End{ExitCode: exit.Interrupted, Outcome: outcomeWord(exit.Interrupted), Hosts: s.hosts}); err != nil {
		fmt.Fprintf(s.e.stderr, "kmsctl: %v\n", err)
	}
	if err := s.log.Close(); err != nil {
		fmt.Fprintf(s.e.stderr, "kmsctl: %v\n", err)
	}
	fmt.Fprintf(s.e.stderr, "kmsctl: run log: %s\n", s.log.Path)
}

// maskWriter masks secrets in each Write. Use it for writers that write
// whole lines at once (zerolog's ConsoleWriter does).
type maskWriter struct {
	red *redact.Redactor
	w   io.Writer
}

func (m maskWriter) Write(p []byte) (int, error) {
	if _, err := m.w.Write(m.red.Bytes(append([]byte(nil), p...))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactEvent masks registered secrets in every text of an event.
func redactEvent(red *redact.Redactor, e tasks.Event) tasks.Event {
	e.Play = red.String(e.Play)
	e.Task = red.String(e.Task)
	e.Msg = red.String(e.Msg)
	e.Stdout = red.String(e.Stdout)
	e.Stderr = red.String(e.Stderr)
	e.Diff = red.String(e.Diff)
	return e
}

// finish ends the session: it stops the display, records the outcome in the
// run log, prints every host error on stderr and, on failure, where the run
// log is; run_end (--output json) gets the run log and the same messages.
// It returns err mapped to an exit code.
func (s *session) finish(err error) error {
	s.e.intr.detach(s.e.stderr)
	s.display.Close()
	code := exit.Code(err)
	var shown []string
	if err != nil {
		s.logger.Info().Err(err).Int("exit_code", code).Dur("duration_ms", time.Since(s.start)).Msg("run ended")
		var re *tasks.RunError
		if errors.As(err, &re) {
			for _, h := range re.Hosts {
				shown = append(shown, s.red.String(h.Error()))
			}
			if re.Cancelled != nil {
				shown = append(shown, s.red.String(s.cancelMessage(re)))
			}
		} else if !exit.IsSilent(err) {
			shown = append(shown, s.red.String(err.Error()))
		}
		for _, m := range shown {
			fmt.Fprintf(s.e.stderr, "kmsctl: %s\n", m)
		}
	} else {
		s.logger.Info().Int("exit_code", 0).Dur("duration_ms", time.Since(s.start)).Msg("run ended")
	}
	s.e.end.shown(strings.Join(shown, "\n"))
	jerr := s.journal.End(journal.End{ExitCode: code, Outcome: outcomeWord(code), Hosts: s.hosts})
	if cerr := errors.Join(jerr, s.log.Close()); cerr != nil && err == nil {
		return exit.With(exit.Usage, cerr)
	}
	if err != nil || s.o.Verbosity > 0 {
		fmt.Fprintf(s.e.stderr, "kmsctl: run log: %s\n", s.log.Path)
	}
	if err != nil {
		return exit.Silent{Code: code}
	}
	return nil
}

// cancelMessage says why a run stopped early, what each host finished and
// where it stopped, and what to do.
func (s *session) cancelMessage(re *tasks.RunError) string {
	why := fmt.Sprintf("run interrupted: %v", re.Cancelled)
	switch {
	case errors.Is(re.Cancelled, context.DeadlineExceeded) && s.o.Timeout > 0:
		why = fmt.Sprintf("run stopped: --timeout %s reached (raise --timeout or leave it out)", s.o.Timeout)
	case errors.Is(re.Cancelled, context.Canceled):
		why = "run interrupted (Ctrl-C or SIGTERM) before the plays ended"
	}
	return why + ". " + s.progress.stoppedEarly(re.Hosts, s.rerun)
}

// operator names who runs kmsctl, and where, for the journal: user@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return name + "@" + host
}

// outcomeWord names an exit code for the journal and 'kmsctl runs'.
func outcomeWord(code int) string {
	switch code {
	case exit.OK:
		return "ok"
	case exit.Usage:
		return "error"
	case exit.HostFailed:
		return "failed"
	case exit.Unreachable:
		return "unreachable"
	case exit.Refused:
		return "refused"
	case exit.Locked:
		return "locked"
	case exit.TimedOut:
		return "timed out"
	case exit.VerifyFailed:
		return "verification failed"
	case exit.Interrupted:
		return "interrupted"
	}
	return fmt.Sprintf("exit %d", code)
}
