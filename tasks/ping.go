package tasks

import (
	"context"
	"fmt"
)

// pingModule checks that the host answers: it connects and runs "true".
type pingModule struct{}

func (pingModule) Spec() Spec { return Spec{Args: map[string]ArgSpec{}} }

func (m pingModule) Plan(ctx context.Context, env *Env) (Result, error) { return m.Apply(ctx, env) }

func (pingModule) Apply(ctx context.Context, env *Env) (Result, error) {
	res, err := runCmd(ctx, env.Conn, "true", nil)
	if err != nil {
		return Result{}, err
	}
	if res.RC != 0 {
		return Result{Failed: true, RC: res.RC, Stderr: res.Stderr, Msg: fmt.Sprintf("true exited %d", res.RC)}, nil
	}
	return Result{Msg: "pong", Data: map[string]any{"ping": "pong"}}, nil
}
