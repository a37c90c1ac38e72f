package modules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote/fake"
)

// fakeBecomeError mimics remote.BecomeError: it wraps sudo's exit status
// and carries the advice the user needs.
type fakeBecomeError struct {
	failed bool
	err    error
}

func (e fakeBecomeError) Error() string {
	return "become root on h: sudo: a password is required: allow NOPASSWD in sudoers"
}
func (e fakeBecomeError) Unwrap() error      { return e.err }
func (e fakeBecomeError) BecomeFailed() bool { return e.failed }

func TestRunCmdBecomeFailureIsAnError(t *testing.T) {
	f := fake.New(t, "h")
	f.Expect("systemctl start minkms").Fail(fakeBecomeError{failed: true, err: &fake.ExitError{Host: "h", Cmd: "sudo", Status: 1}})
	r, err := apply(t, f, commandModule{}, map[string]any{"cmd": "systemctl start minkms"})
	if err == nil || !strings.Contains(err.Error(), "NOPASSWD") {
		t.Fatalf("become failure = %+v, %v; want an error with the become advice", r, err)
	}
	var bf fakeBecomeError
	if !errors.As(err, &bf) {
		t.Errorf("error %v does not wrap the become error", err)
	}

	// An error whose marker reports false is an ordinary exit status.
	f.Expect("exit-three").Fail(fakeBecomeError{failed: false, err: &fake.ExitError{Host: "h", Cmd: "exit-three", Status: 3}})
	res, err := runCmd(context.Background(), f, "exit-three", nil)
	if err != nil || res.RC != 3 {
		t.Fatalf("marker false = %+v, %v; want rc 3 and no error", res, err)
	}
}
