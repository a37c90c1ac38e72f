//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// ArgvRecorder records the command line of every process on this machine (the controller,
// the test's own tools and, since containers share the kernel, every process of every lab
// host) for as long as it runs, so a secret that reaches any argv, even for a moment, can be
// found afterwards. It listens to the kernel's process connector for every exec and reads
// the new process's command line at once, and it also sweeps /proc continuously (for
// processes that were already running, and as a second net). A process that exits before
// its command line is read can still slip through, which is why tests plant a short-lived
// canary process and require the recorder to have seen it (Saw).
type ArgvRecorder struct {
	cancel context.CancelFunc
	done   chan struct{}
	execs  *execListener // nil where the process connector is not available

	mu     sync.Mutex
	seen   map[string]bool
	sweeps int
}

// RecordArgv starts an ArgvRecorder; Stop ends it.
func RecordArgv() *ArgvRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &ArgvRecorder{cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	if l, err := listenExecs(); err == nil {
		r.execs = l
		go l.run(func(pid int) {
			if c, ok := readCmdline(fmt.Sprintf("/proc/%d/cmdline", pid)); ok {
				r.add(c)
			}
		})
	}
	go r.loop(ctx)
	return r
}

// ExecEvents says whether every exec is recorded (the process connector answered) or /proc
// is only swept.
func (r *ArgvRecorder) ExecEvents() bool { return r.execs != nil }

func (r *ArgvRecorder) add(cmdline string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[cmdline] = true
}

// readCmdline reads one /proc/PID/cmdline with NULs as spaces; false for a kernel thread or
// a process gone meanwhile.
func readCmdline(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})), true
}

func (r *ArgvRecorder) loop(ctx context.Context) {
	defer close(r.done)
	for {
		r.sweep()
		select {
		case <-ctx.Done():
			r.sweep() // one more after the run, for processes that started last
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// sweep reads every /proc/PID/cmdline once.
func (r *ArgvRecorder) sweep() {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var lines []string
	for _, p := range paths {
		if c, ok := readCmdline(p); ok {
			lines = append(lines, c)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweeps++
	for _, l := range lines {
		r.seen[l] = true
	}
}

// Stop ends the recording and returns every distinct command line seen, sorted.
func (r *ArgvRecorder) Stop() []string {
	r.cancel()
	<-r.done
	if r.execs != nil {
		r.execs.close()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.seen))
	for l := range r.seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Sweeps is how many times /proc was read so far.
func (r *ArgvRecorder) Sweeps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sweeps
}

// Saw reports whether some recorded command line contains s.
func (r *ArgvRecorder) Saw(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.seen {
		if bytes.Contains([]byte(l), []byte(s)) {
			return true
		}
	}
	return false
}
