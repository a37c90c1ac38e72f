package modules

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/tasks"
)

// templateModule renders a local pongo2 (Jinja-like) template file with the
// task's variables and puts the result on the host with copy's semantics
// (checksum idempotence, atomic upload, mode/owner, secret, diff). Output
// rendered from a secret is secret content, as copy's (0600, no diff).
type templateModule struct{}

func (templateModule) Spec() tasks.Spec {
	a := map[string]tasks.ArgSpec{"src": {Type: tasks.ArgString, Required: true}}
	for k, v := range fileAttrArgs {
		a[k] = v
	}
	return tasks.Spec{Args: a}
}

// CheckLocal checks, before any host is touched, that a known src exists
// on the control machine and is a template that parses.
func (templateModule) CheckLocal(env *tasks.Env) error {
	if !env.Args.Literal("src") {
		return nil
	}
	src, err := env.Args.String("src")
	if err != nil {
		return err
	}
	if err := checkLocalSrc(env, src); err != nil {
		return err
	}
	tpl, err := env.ReadLocal(src)
	if err != nil {
		return err
	}
	if err := tasks.ParseTemplate(string(tpl)); err != nil {
		return fmt.Errorf("template %s: %w", src, err)
	}
	return nil
}

func (templateModule) render(env *tasks.Env) (payload, string, error) {
	src, err := env.Args.String("src")
	if err != nil {
		return payload{}, "", err
	}
	dest, err := env.Args.String("dest")
	if err != nil {
		return payload{}, "", err
	}
	tpl, err := env.ReadLocal(src)
	if err != nil {
		return payload{}, "", err
	}
	out, secret, err := env.RenderSecret(string(tpl))
	if err != nil {
		return payload{}, "", fmt.Errorf("template %s: %w", src, err)
	}
	pl := memPayload([]byte(out))
	pl.secret = secret
	return pl, dest, nil
}

func (m templateModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	data, dest, err := m.render(env)
	if err != nil {
		return tasks.Result{}, err
	}
	p, err := planPut(ctx, env, dest, data)
	return p.result, err
}

func (m templateModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	data, dest, err := m.render(env)
	if err != nil {
		return tasks.Result{}, err
	}
	return applyPut(ctx, env, dest, data)
}
