package fake

import (
	"fmt"
	"strings"
)

// ExitError reports that a scripted command exited non-zero. Its fields
// mirror remote.ExitError.
type ExitError struct {
	Host   string // the fake's host
	Cmd    string // the command line
	Status int    // the scripted exit status
	Signal string // always empty: the fake does not kill commands
	Stderr string // the scripted standard error
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("command on %s exited with status %d: %s", e.Host, e.Status, e.Cmd)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// ExitStatus returns the scripted exit status.
func (e *ExitError) ExitStatus() int { return e.Status }

// UnreachableError is returned by every call while the fake is unreachable.
type UnreachableError struct {
	Host string
	Op   string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s on %s: host unreachable (fake)", e.Op, e.Host)
}

// Unreachable reports true: the host was not reached.
func (e *UnreachableError) Unreachable() bool { return true }

// UnexpectedError is returned for a command no expectation matches (the
// test has already been failed).
type UnexpectedError struct {
	Host string
	Cmd  string
}

func (e *UnexpectedError) Error() string {
	return fmt.Sprintf("fake %s: unexpected command %q", e.Host, e.Cmd)
}
