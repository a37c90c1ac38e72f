package kmsmodules

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// adminIdentityModule is kms_admin_identity: it registers identity, the
// h1: identity of the operator's admin API key for the task host (the
// environment, --api-key-file, kms_api_key_file or kms_api_key_command, as
// every Key Manager module reads it), so that a server configuration can
// name its admin (admin.identity) without the key. The identity is a hash
// of the key's public half: it is not secret, the key never leaves
// kmsctl's memory. Read-only and local: it needs no connection.
type adminIdentityModule struct{ m *mods }

func (adminIdentityModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Local: true, Args: map[string]tasks.ArgSpec{}}
}

func (a adminIdentityModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return a.Apply(ctx, env)
}

func (a adminIdentityModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return tasks.Result{}, fmt.Errorf("host %s is not an inventory host: kms_admin_identity needs its kms_api_key_* variables", env.Host.Name)
	}
	k, err := a.m.apiKey(ctx, env, ih.KMS)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("host %s: the admin API key: %w", ih.Name, err)
	}
	id := k.Identity()
	return tasks.Result{Msg: "admin identity " + id, Data: map[string]any{"identity": id}}, nil
}
