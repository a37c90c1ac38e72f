// Package exit defines kmsctl's documented process exit codes and the error
// type that carries one from a command up to main, which alone exits.
package exit

import (
	"context"
	"errors"
	"fmt"
)

// The documented exit codes of kmsctl.
const (
	// OK means every host succeeded.
	OK = 0
	// Usage means a usage error (bad flag, bad argument) or an internal error.
	Usage = 1
	// HostFailed means at least one host failed a task.
	HostFailed = 2
	// Unreachable means at least one host was unreachable and none failed.
	Unreachable = 3
	// Refused means a safety check refused the operation.
	Refused = 4
	// Locked means another run holds the lock.
	Locked = 5
	// TimedOut means kmsctl timed out waiting (a condition or --timeout).
	TimedOut = 6
	// VerifyFailed means a verification failed: `kmsctl status` found the
	// cluster degraded, or a recovery's proof failed.
	VerifyFailed = 7
	// Interrupted is the code of a second Ctrl-C, which exits at once.
	Interrupted = 130
)

// Error is an error that carries the exit code main must use.
type Error struct {
	Code int
	Err  error
}

// Error returns the message of the wrapped error.
func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

// With wraps err so that main exits with code. A nil err stays nil.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Usagef returns a usage error (exit code 1) with a formatted message.
func Usagef(format string, args ...any) error {
	return &Error{Code: Usage, Err: fmt.Errorf(format, args...)}
}

// Silent is an error whose message has already been shown to the user (a
// recap, for example); main prints nothing more and exits with its code.
type Silent struct{ Code int }

// Error describes the exit code.
func (s Silent) Error() string { return fmt.Sprintf("exit code %d", s.Code) }

// Code returns the exit code for err: 0 for nil, the code of the outermost
// *Error or Silent in its chain, TimedOut for an expired deadline, and Usage
// (1) for anything else. Codes defined by libraries (urfave/cli's ExitCoder)
// are deliberately not honoured: only kmsctl's own documented codes are.
//
// A refusal by a safety rule anywhere in the chain (IsRefusal) makes it
// Refused (4) instead of Usage, HostFailed or Unreachable: a refusal exits 4
// whether it was found while validating the input or while running.
func Code(err error) int {
	if err == nil {
		return OK
	}
	code := Usage
	var e *Error
	var s Silent
	switch {
	case errors.As(err, &e):
		code = e.Code
	case errors.As(err, &s):
		code = s.Code
	case errors.Is(err, context.DeadlineExceeded):
		code = TimedOut
	}
	if (code == Usage || code == HostFailed || code == Unreachable) && IsRefusal(err) {
		return Refused
	}
	return code
}

// IsRefusal reports whether err's chain holds a refusal by a safety rule:
// an error with a Refused() bool method that returns true (the dangerous
// path rule's *safepath.Error, a secret on the command line).
func IsRefusal(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

// IsSilent reports whether err's message was already shown to the user.
func IsSilent(err error) bool {
	var s Silent
	return errors.As(err, &s)
}
