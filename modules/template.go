package modules

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/tasks"
)

// templateModule renders a local pongo2 (Jinja-like) template file with the
// task's variables and puts the result on the host with copy's semantics
// (checksum idempotence, atomic upload, mode/owner, secret, diff).
type templateModule struct{}

func (templateModule) Spec() tasks.Spec {
	a := map[string]tasks.ArgSpec{"src": {Type: tasks.ArgString, Required: true}}
	for k, v := range fileAttrArgs {
		a[k] = v
	}
	return tasks.Spec{Args: a}
}

func (templateModule) render(env *tasks.Env) ([]byte, string, error) {
	src, err := env.Args.String("src")
	if err != nil {
		return nil, "", err
	}
	dest, err := env.Args.String("dest")
	if err != nil {
		return nil, "", err
	}
	tpl, err := env.ReadLocal(src)
	if err != nil {
		return nil, "", err
	}
	out, err := env.Render(string(tpl))
	if err != nil {
		return nil, "", fmt.Errorf("template %s: %w", src, err)
	}
	return []byte(out), dest, nil
}

func (m templateModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	data, dest, err := m.render(env)
	if err != nil {
		return tasks.Result{}, err
	}
	p, err := planPut(ctx, env, dest, memPayload(data))
	return p.result, err
}

func (m templateModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	data, dest, err := m.render(env)
	if err != nil {
		return tasks.Result{}, err
	}
	return applyPut(ctx, env, dest, memPayload(data))
}
