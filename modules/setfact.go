package modules

import (
	"context"

	"github.com/kmsctl/kmsctl/tasks"
)

// setFactModule sets host variables for the later tasks of the run: every
// argument (templated) becomes a variable. It runs on the control machine.
type setFactModule struct{}

func (setFactModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, AnyArgs: true, Local: true, SetsFacts: true}
}

func (m setFactModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (setFactModule) Apply(_ context.Context, env *tasks.Env) (tasks.Result, error) {
	facts := make(map[string]any, len(env.Args))
	for k, v := range env.Args {
		facts[k] = v
	}
	return tasks.Result{Facts: facts, Data: map[string]any{"ansible_facts": facts}}, nil
}
