package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// interrupter is kmsctl's two-step stop on SIGINT and SIGTERM: the first
// cancels the run (no new work starts, the owed handlers still run), the
// second exits at once with 130, after the running session, if any, said
// what it leaves undone (the owed handlers it skips).
type interrupter struct {
	cancel context.CancelCauseFunc
	exit   func(int)

	mu sync.Mutex
	// stderr gets the notices: while a session runs, its display's Above,
	// so that they do not leave stale live lines behind.
	stderr io.Writer
	// abort, set while a session runs, says what exiting leaves undone.
	abort func()
}

// watch acts on sigs until stop is closed.
func (in *interrupter) watch(sigs <-chan os.Signal, stop <-chan struct{}) {
	select {
	case <-sigs:
	case <-stop:
		return
	}
	in.mu.Lock()
	fmt.Fprintln(in.stderr, "kmsctl: interrupted: no new work is started, owed handlers run; press Ctrl-C again to exit at once")
	in.mu.Unlock()
	// The cause names the interruption in every error it ends: "run
	// command on h: interrupted (Ctrl-C or SIGTERM): context canceled".
	in.cancel(fmt.Errorf("interrupted (Ctrl-C or SIGTERM): %w", context.Canceled))
	select {
	case <-sigs:
	case <-stop:
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.abort != nil {
		in.abort()
	} else {
		fmt.Fprintln(in.stderr, "kmsctl: interrupted again: exiting at once")
	}
	in.exit(exit.Interrupted)
}

// attach routes the notices to stderr and makes abort the second Ctrl-C's
// last words, while a session runs.
func (in *interrupter) attach(stderr io.Writer, abort func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stderr, in.abort = stderr, abort
}

// detach undoes attach: notices go to stderr directly again.
func (in *interrupter) detach(stderr io.Writer) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stderr, in.abort = stderr, nil
}
