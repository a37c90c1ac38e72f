package modules

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/tasks"
)

// pingModule checks that the host answers: it connects and runs "true".
type pingModule struct{}

func (pingModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{}}
}

func (m pingModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (pingModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	res, err := runCmd(ctx, env.Conn, "true", nil)
	if err != nil {
		return tasks.Result{}, err
	}
	if res.RC != 0 {
		return tasks.Result{Failed: true, RC: res.RC, Stderr: res.Stderr, Msg: fmt.Sprintf("true exited %d", res.RC)}, nil
	}
	return tasks.Result{Msg: "pong", Data: map[string]any{"ping": "pong"}}, nil
}
