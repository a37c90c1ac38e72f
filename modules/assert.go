package modules

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsctl/kmsctl/tasks"
)

// assertModule fails when one of the expressions in "that" is false; it
// runs on the control machine and changes nothing, so check mode runs it too.
// With refuse: true a false expression is a refusal by a safety rule (the
// CLI exits 4: nothing was changed) instead of a failed task: for the
// checks that guard what follows, as the built-in recovery playbooks'
// proofs that a node is dead before it is fenced.
type assertModule struct{}

func (assertModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Local: true, Args: map[string]tasks.ArgSpec{
		"that":        {Type: tasks.ArgList, Required: true},
		"fail_msg":    {Type: tasks.ArgString},
		"msg":         {Type: tasks.ArgString},
		"success_msg": {Type: tasks.ArgString},
		"quiet":       {Type: tasks.ArgBool},
		"refuse":      {Type: tasks.ArgBool},
	}}
}

// CheckArgs parses the known expressions of that before any host is touched.
func (assertModule) CheckArgs(args tasks.Args) error {
	if !args.Literal("that") {
		return nil
	}
	that, err := args.List("that")
	if err != nil {
		return err
	}
	var errs []error
	for _, x := range that {
		if err := tasks.ParseExpr(x); err != nil {
			errs = append(errs, fmt.Errorf("that: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (m assertModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (assertModule) Apply(_ context.Context, env *tasks.Env) (tasks.Result, error) {
	that, err := env.Args.List("that")
	if err != nil {
		return tasks.Result{}, err
	}
	for _, x := range that {
		ok, err := env.EvalBool(x)
		if err != nil {
			return tasks.Result{}, fmt.Errorf("assert: %w", err)
		}
		if !ok {
			msg, _ := env.Args.String("fail_msg")
			if msg == "" {
				msg, _ = env.Args.String("msg")
			}
			if msg == "" {
				msg = "assertion failed: " + x
			}
			data := map[string]any{"assertion": x, "evaluated_to": false}
			refuse, err := env.Args.Bool("refuse", false)
			if err != nil {
				return tasks.Result{}, err
			}
			if refuse {
				return tasks.Result{Data: data}, &assertRefusal{msg: "refused: " + msg}
			}
			return tasks.Result{Failed: true, Msg: msg, Data: data}, nil
		}
	}
	msg, _ := env.Args.String("success_msg")
	if msg == "" {
		msg = "all assertions passed"
	}
	return tasks.Result{Msg: msg}, nil
}

// assertRefusal is a false expression of an assert with refuse: true.
type assertRefusal struct{ msg string }

func (e *assertRefusal) Error() string { return e.msg }

// Refused reports that a safety rule refused: the CLI exits 4.
func (e *assertRefusal) Refused() bool { return true }
