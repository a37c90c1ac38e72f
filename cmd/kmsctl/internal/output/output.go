// Package output renders the task engine's events for people and programs:
// a live view on a terminal, plain lines without one (cron, pipes), and one
// JSON object per line with --output json. Every renderer ends with a recap
// per host and the total time.
package output

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kmsctl/kmsctl/tasks"
)

// Display is a tasks.Sink that draws on a stream. Close stops any background
// drawing and erases what is not to stay; call it after the last event (a
// second call does nothing, and events after it draw no live lines).
type Display interface {
	tasks.Sink
	// Above returns w (another stream on the same terminal, stderr) made
	// safe to write whole lines to while the display draws: the live view
	// erases its lines before each write and draws them again below it,
	// so that no stale line stays behind. Other displays return w.
	Above(w io.Writer) io.Writer
	Close()
}

// Options choose a renderer.
type Options struct {
	// Format is "text" or "json".
	Format string
	// Terminal selects the live view for text output.
	Terminal bool
	// Verbosity shows command output and messages of successful tasks from 1 up.
	Verbosity int
	// Width is the terminal's width in columns for the live view (0 = 80).
	Width int
	// Color colours the status words of the live view (ANSI).
	Color bool
	// Quiet draws nothing: for a command that prints its own report.
	Quiet bool
}

// New returns the renderer Options ask for, drawing on w.
func New(w io.Writer, o Options) Display {
	switch {
	case o.Quiet:
		return quiet{}
	case o.Format == "json":
		return NewJSON(w)
	case o.Terminal:
		return NewLive(w, o.Verbosity, o.Width, o.Color)
	default:
		return NewPlain(w, o.Verbosity)
	}
}

// quiet is the display that draws nothing.
type quiet struct{}

func (quiet) Event(tasks.Event)           {}
func (quiet) Above(w io.Writer) io.Writer { return w }
func (quiet) Close()                      {}

// Tee returns a sink that passes every event to each sink in turn.
func Tee(sinks ...tasks.Sink) tasks.Sink {
	return tasks.SinkFunc(func(e tasks.Event) {
		for _, s := range sinks {
			s.Event(e)
		}
	})
}

// Count is n followed by noun, plural unless n is 1: "1 host", "2 hosts".
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// TimeFormat is the layout of every JSON event's "time" field (UTC, ms).
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// LogEvent writes e as one zerolog event at level: the same fields for the
// JSON output and the run log.
func LogEvent(l zerolog.Logger, level zerolog.Level, e tasks.Event) {
	ev := l.WithLevel(level).Str("event", e.Type.String())
	if !e.Time.IsZero() {
		ev = ev.Str("time", e.Time.UTC().Format(TimeFormat))
	}
	if e.Play != "" {
		ev = ev.Str("play", e.Play)
	}
	if e.Task != "" {
		ev = ev.Str("task", e.Task)
	}
	if e.Pos != "" {
		ev = ev.Str("pos", e.Pos)
	}
	switch e.Type {
	case tasks.EventPlayStart, tasks.EventTaskStart, tasks.EventHandlerStart:
		ev = ev.Strs("hosts", e.Hosts)
	case tasks.EventHostResult, tasks.EventItemResult:
		ev = ev.Str("host", e.Host).Str("status", e.Status.String()).Bool("changed", e.Changed)
		if e.Ignored {
			ev = ev.Bool("ignored", true)
		}
		if e.Check {
			ev = ev.Bool("check", true)
		}
		if len(e.Notified) > 0 {
			ev = ev.Strs("notified", e.Notified)
		}
		for _, f := range [...]struct{ k, v string }{{"msg", e.Msg}, {"stdout", e.Stdout}, {"stderr", e.Stderr}, {"diff", e.Diff}} {
			if f.v != "" {
				ev = ev.Str(f.k, f.v)
			}
		}
		if e.Type == tasks.EventHostResult {
			ev = ev.Dur("duration_ms", e.Duration)
		}
	case tasks.EventRecap:
		d := zerolog.Dict()
		for _, h := range e.Recap.Hosts() {
			s := e.Recap[h]
			d = d.Dict(h, zerolog.Dict().
				Int("ok", s.OK).Int("changed", s.Changed).Int("unreachable", s.Unreachable).
				Int("failed", s.Failed).Int("skipped", s.Skipped).Int("ignored", s.Ignored).Int("interrupted", s.Interrupted))
		}
		ev = ev.Dict("recap", d).Dur("duration_ms", e.Duration)
	}
	ev.Send()
}

// NewJSON returns a renderer writing one JSON object per event and line.
func NewJSON(w io.Writer) Display {
	l := zerolog.New(w)
	return jsonDisplay{l: l}
}

type jsonDisplay struct{ l zerolog.Logger }

func (j jsonDisplay) Event(e tasks.Event)         { LogEvent(j.l, zerolog.InfoLevel, e) }
func (j jsonDisplay) Above(w io.Writer) io.Writer { return w }
func (j jsonDisplay) Close()                      {}

// resultLine is the plain line of one host's result, without newline:
// "ok: [host] task", "failed: [host] task: msg".
func resultLine(e tasks.Event, verbosity int, color bool) string {
	var b strings.Builder
	status := e.Status.String()
	if color {
		status = colors[e.Status] + status + "\x1b[0m"
	}
	fmt.Fprintf(&b, "%s: [%s] %s", status, e.Host, e.Task)
	if e.Ignored {
		b.WriteString(" (failure ignored)")
	}
	if e.Check && e.Status == tasks.StatusChanged {
		b.WriteString(" (check mode: would change)")
	}
	showMsg := e.Status == tasks.StatusFailed || e.Status == tasks.StatusUnreachable || e.Status == tasks.StatusInterrupted || verbosity > 0
	if e.Msg != "" && showMsg {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Msg))
	}
	if verbosity > 0 || e.Status == tasks.StatusFailed {
		for _, out := range []struct{ name, s string }{{"stdout", e.Stdout}, {"stderr", e.Stderr}} {
			if s := strings.TrimRight(out.s, "\n"); s != "" {
				fmt.Fprintf(&b, "\n  %s: %s", out.name, strings.ReplaceAll(s, "\n", "\n    "))
			}
		}
	}
	if d := strings.TrimRight(e.Diff, "\n"); d != "" {
		b.WriteString("\n")
		b.WriteString(d)
	}
	return b.String()
}

// colors are the ANSI colours of the status words, as in Ansible.
var colors = map[tasks.Status]string{
	tasks.StatusOK:          "\x1b[32m",
	tasks.StatusChanged:     "\x1b[33m",
	tasks.StatusSkipped:     "\x1b[36m",
	tasks.StatusFailed:      "\x1b[31m",
	tasks.StatusUnreachable: "\x1b[1;31m",
	tasks.StatusInterrupted: "\x1b[35m",
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ⏎ ")
}

// WriteRecap writes Ansible's PLAY RECAP, with an interrupted count (tasks
// a stopped run cut short), and the total time.
func WriteRecap(w io.Writer, r tasks.Recap, total time.Duration) {
	width := 0
	for _, h := range r.Hosts() {
		width = max(width, len(h))
	}
	fmt.Fprintln(w, "\nPLAY RECAP")
	for _, h := range r.Hosts() {
		s := r[h]
		fmt.Fprintf(w, "%-*s : ok=%d changed=%d unreachable=%d failed=%d skipped=%d ignored=%d interrupted=%d\n",
			width, h, s.OK, s.Changed, s.Unreachable, s.Failed, s.Skipped, s.Ignored, s.Interrupted)
	}
	fmt.Fprintf(w, "total time %s\n", total.Round(time.Millisecond))
}

// NewPlain returns the renderer for streams that are not terminals: one line
// per play, one per host and task, then the recap.
func NewPlain(w io.Writer, verbosity int) Display {
	return &plain{w: w, verbosity: verbosity}
}

type plain struct {
	w         io.Writer
	verbosity int
	color     bool
}

func (p *plain) Event(e tasks.Event) {
	switch e.Type {
	case tasks.EventPlayStart:
		fmt.Fprintf(p.w, "PLAY [%s] on %s\n", e.Play, Count(len(e.Hosts), "host"))
	case tasks.EventHandlerStart:
		if p.verbosity > 0 {
			fmt.Fprintf(p.w, "RUNNING HANDLER [%s]\n", e.Task)
		}
	case tasks.EventTaskStart:
		if p.verbosity > 0 {
			fmt.Fprintf(p.w, "TASK [%s]\n", e.Task)
		}
	case tasks.EventHostResult:
		fmt.Fprintln(p.w, resultLine(e, p.verbosity, p.color))
	case tasks.EventItemResult:
		// -v shows each item of a loop, under the host's result to come.
		if p.verbosity > 0 {
			fmt.Fprintln(p.w, "  "+resultLine(e, p.verbosity, p.color))
		}
	case tasks.EventRecap:
		WriteRecap(p.w, e.Recap, e.Duration)
	}
}

func (p *plain) Above(w io.Writer) io.Writer { return w }
func (p *plain) Close()                      {}
