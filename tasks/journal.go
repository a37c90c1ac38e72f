package tasks

// The journal hook: intent before each mutating step, result after it.

import (
	"context"
	"fmt"
)

// Journal records a run's mutating steps (Engine.Journal). A step is one
// task's module call on one host (one loop item of a loop task) that may
// change something: not in check mode, and its module's Spec is not
// ReadOnly. The engine calls Intent before the module runs and Result
// after it; the calls are serialised. Neither gets the task's arguments,
// and every text in a Step is masked by the run's redactor.
type Journal interface {
	// Intent records that step is about to run. An error refuses the
	// step: the module does not run and the host's task fails with a
	// *StepRefusedError (exit 4 in the CLI).
	Intent(step Step) error
	// Result records how step ended: StatusOK, StatusChanged,
	// StatusSkipped, StatusFailed, StatusUnreachable or
	// StatusInterrupted. An error fails the host's task (the step's own
	// outcome is kept in the error).
	Result(step Step, status Status) error
}

// Step names one mutating step of a run, without its arguments.
type Step struct {
	// Seq numbers the run's steps from 1 in the order their intent was
	// recorded; Result gets the same Seq as its Intent.
	Seq int `json:"seq"`
	// Play and Task are the names of the play and of the task (rendered
	// for the host, masked).
	Play string `json:"play"`
	Task string `json:"task"`
	// Pos is the task's FILE:LINE:COL in its playbook.
	Pos string `json:"pos,omitempty"`
	// Host is the host the task runs for; DelegateTo the host it acts on
	// when that is another (delegate_to).
	Host       string `json:"host"`
	DelegateTo string `json:"delegate_to,omitempty"`
	// Module is the task's module.
	Module string `json:"module"`
	// Item is the loop item's number, from 1 (0: not a loop).
	Item int `json:"item,omitempty"`
}

// StepRefusedError is the failure of a step that the journal refused
// (Journal.Intent returned an error): the module did not run.
type StepRefusedError struct {
	Step Step
	Err  error
}

// Error says which step was refused and why.
func (e *StepRefusedError) Error() string {
	return fmt.Sprintf("step not started, the run's journal refused it (nothing was changed by this task): %v", e.Err)
}

// Unwrap returns the journal's error.
func (e *StepRefusedError) Unwrap() error { return e.Err }

// Refused marks a refusal by a safety rule (one run, and a record of it).
func (e *StepRefusedError) Refused() bool { return true }

// mutating reports whether the task's module call may change something,
// so that it is journaled.
func (r *run) mutating(t Task, spec Spec) bool {
	return r.e.Journal != nil && !r.check(t) && !spec.ReadOnly
}

// journaled runs call (the module's attempts) as one journaled step:
// Intent before, Result after. A refused intent returns a failed outcome
// without calling call.
func (r *run) journaled(ctx context.Context, step Step, call func() outcome) outcome {
	step.Task = r.sec.red.String(step.Task)
	step.Play = r.sec.red.String(step.Play)
	r.journalMu.Lock()
	r.steps++
	step.Seq = r.steps
	err := r.e.Journal.Intent(step)
	r.journalMu.Unlock()
	if err != nil {
		return failed(&StepRefusedError{Step: step, Err: err})
	}
	out := call()
	status := StatusOK
	switch {
	case (out.unreachable || out.res.Failed) && ctx.Err() != nil:
		status = StatusInterrupted
	case out.unreachable:
		status = StatusUnreachable
	case out.res.Failed:
		status = StatusFailed
	case out.res.Skipped:
		status = StatusSkipped
	case out.res.Changed:
		status = StatusChanged
	}
	r.journalMu.Lock()
	err = r.e.Journal.Result(step, status)
	r.journalMu.Unlock()
	if err != nil {
		err = fmt.Errorf("record the result (%s) of step %d in the run's journal: %w", status, step.Seq, err)
		if out.err != nil {
			err = fmt.Errorf("%w; %w", out.err, err)
		}
		out.res.Failed, out.res.Msg, out.err, out.unreachable = true, err.Error(), err, false
	}
	return out
}
