package tasks

import (
	"context"
	"fmt"
)

// assertModule fails when one of the expressions in "that" is false; it
// runs on the control machine and changes nothing, so check mode runs it too.
type assertModule struct{}

func (assertModule) Spec() Spec {
	return Spec{Local: true, Args: map[string]ArgSpec{
		"that":        {Type: ArgList, Required: true},
		"fail_msg":    {Type: ArgString},
		"msg":         {Type: ArgString},
		"success_msg": {Type: ArgString},
		"quiet":       {Type: ArgBool},
	}}
}

func (m assertModule) Plan(ctx context.Context, env *Env) (Result, error) { return m.Apply(ctx, env) }

func (assertModule) Apply(_ context.Context, env *Env) (Result, error) {
	that, err := env.Args.List("that")
	if err != nil {
		return Result{}, err
	}
	for _, x := range that {
		ok, err := env.EvalBool(x)
		if err != nil {
			return Result{}, fmt.Errorf("assert: %w", err)
		}
		if !ok {
			msg, _ := env.Args.String("fail_msg")
			if msg == "" {
				msg, _ = env.Args.String("msg")
			}
			if msg == "" {
				msg = "assertion failed: " + x
			}
			return Result{Failed: true, Msg: msg, Data: map[string]any{"assertion": x, "evaluated_to": false}}, nil
		}
	}
	msg, _ := env.Args.String("success_msg")
	if msg == "" {
		msg = "all assertions passed"
	}
	return Result{Msg: msg}, nil
}
