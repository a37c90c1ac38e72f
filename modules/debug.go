package modules

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kmsctl/kmsctl/tasks"
)

// debugModule shows a message (msg, templated) or a variable's value
// (var: a variable name or expression) in the task's result message. It
// runs on the control machine and changes nothing.
type debugModule struct{}

func (debugModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Local: true, Args: map[string]tasks.ArgSpec{"msg": {Type: tasks.ArgAny}, "var": {Type: tasks.ArgString}}}
}

// CheckArgs parses a known var expression before any host is touched.
func (debugModule) CheckArgs(args tasks.Args) error {
	if !args.Has("var") || !args.Literal("var") {
		return nil
	}
	v, err := args.String("var")
	if err != nil {
		return err
	}
	if err := tasks.ParseExpr(v); err != nil {
		return fmt.Errorf("var: %w", err)
	}
	return nil
}

func (m debugModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (debugModule) Apply(_ context.Context, env *tasks.Env) (tasks.Result, error) {
	if env.Args.Has("var") {
		name, err := env.Args.String("var")
		if err != nil {
			return tasks.Result{}, err
		}
		v, err := env.Eval(name)
		if err != nil {
			return tasks.Result{}, fmt.Errorf("debug var: %w", err)
		}
		return tasks.Result{Msg: name + " = " + show(v), Data: map[string]any{name: v}}, nil
	}
	v, ok := env.Args["msg"]
	if !ok {
		v = "Hello world!"
	}
	return tasks.Result{Msg: show(v), Data: map[string]any{"msg_value": v}}, nil
}

// show formats a value for humans: strings as they are, the rest as JSON.
func show(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
