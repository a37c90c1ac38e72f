package output

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/tasks"
)

// liveMaxLines caps the live area; the rest of the running hosts are counted.
const liveMaxLines = 20

var spinner = [...]string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// NewLive returns the terminal renderer: finished results scroll by as plain
// lines, and below them one line per host still running the current task,
// with a spinner and the elapsed time, redrawn with ANSI escapes. Live lines
// are cut to width columns (0 = 80) so that none wraps; color colours the
// status words.
func NewLive(w io.Writer, verbosity, width int, color bool) Display {
	if width <= 0 {
		width = 80
	}
	l := &live{w: w, verbosity: verbosity, width: width, plainOut: plain{w: w, verbosity: verbosity, color: color}, stop: make(chan struct{}), done: make(chan struct{})}
	go l.tick(100 * time.Millisecond)
	return l
}

type live struct {
	mu        sync.Mutex
	w         io.Writer
	verbosity int
	width     int
	plainOut  plain

	task    string
	started time.Time
	running []string
	drawn   int
	frame   int

	stop, done chan struct{}
	closed     bool
}

func (l *live) tick(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			l.frame++
			l.redraw()
			l.mu.Unlock()
		}
	}
}

// redraw erases the live area and draws it again.
func (l *live) redraw() {
	l.erase()
	if len(l.running) == 0 {
		return
	}
	elapsed := time.Since(l.started).Truncate(100 * time.Millisecond)
	n := 0
	for _, h := range l.running {
		if n == liveMaxLines {
			fmt.Fprintln(l.w, cut("  … and "+Count(len(l.running)-n, "more host"), l.width))
			n++
			break
		}
		fmt.Fprintln(l.w, cut(fmt.Sprintf("%s [%s] %s  %s", spinner[l.frame%len(spinner)], h, l.task, elapsed), l.width))
		n++
	}
	l.drawn = n
}

// erase moves the cursor to the start of the live area and clears to the end.
func (l *live) erase() {
	if l.drawn > 0 {
		fmt.Fprintf(l.w, "\x1b[%dF\x1b[J", l.drawn)
		l.drawn = 0
	}
}

func (l *live) Event(e tasks.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		// Closed (a second Ctrl-C): results still scroll by, nothing
		// live is drawn again.
		l.plainOut.Event(e)
		return
	}
	l.erase()
	switch e.Type {
	case tasks.EventTaskStart, tasks.EventHandlerStart:
		l.task = e.Task
		l.started = time.Now()
		l.running = slices.Clone(e.Hosts)
	case tasks.EventHostResult:
		l.running = slices.DeleteFunc(l.running, func(h string) bool { return h == e.Host })
		l.plainOut.Event(e)
	case tasks.EventRecap:
		l.running = nil
		l.plainOut.Event(e)
	default:
		l.plainOut.Event(e)
	}
	l.redraw()
}

// Above returns w with the live area erased before each write and drawn
// again after it.
func (l *live) Above(w io.Writer) io.Writer { return aboveWriter{l, w} }

type aboveWriter struct {
	l *live
	w io.Writer
}

func (a aboveWriter) Write(p []byte) (int, error) {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	a.l.erase()
	n, err := a.w.Write(p)
	if !a.l.closed {
		a.l.redraw()
	}
	return n, err
}

func (l *live) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.stop)
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	l.erase()
	l.mu.Unlock()
}

// cut shortens s to fewer than width runes, so that a line never wraps.
func cut(s string, width int) string {
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-2]) + "…"
}
