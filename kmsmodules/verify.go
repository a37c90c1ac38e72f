package kmsmodules

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// verifyModule is kms_verify: it checks the task host's node against a
// backup's manifest (written by kms_backup): every enclave, key (and its
// version), policy and identity the backup held is there, and the canary
// ciphertext decrypts to its plaintext. Objects the backup did not hold are
// registered as extra and fail the task only with exact: true (a node just
// restored must hold exactly the backup; a live cluster may have grown).
// Registered: missing, extra, canary (true, false, or "none"). A node that
// does not hold what the manifest lists fails the task with a
// tasks.VerificationError (the CLI exits 7 when every failed host failed
// so); a node that cannot be asked fails it with an ordinary error. It
// changes nothing, in check mode too.
type verifyModule struct{ m *mods }

func (verifyModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{
		"manifest": {Type: tasks.ArgString, Required: true},
		"exact":    {Type: tasks.ArgBool},
	}}
}

func (v verifyModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return v.Apply(ctx, env)
}

func (v verifyModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	mpath, err := env.Args.String("manifest")
	if err != nil {
		return tasks.Result{}, err
	}
	exact, err := env.Args.Bool("exact", false)
	if err != nil {
		return tasks.Result{}, err
	}
	m, err := readManifest(mpath)
	if err != nil {
		return tasks.Result{}, err
	}
	a, err := v.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	got, err := listObjects(ctx, a.client)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("verify %s: %w", a.host, err)
	}
	missing, extra := diff(m.Objects, got)
	r := tasks.Result{Data: map[string]any{"manifest": mpath, "missing": anyList(missing), "extra": anyList(extra), "canary": "none"}}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing or different: "+strings.Join(missing, ", "))
	}
	if exact && len(extra) > 0 {
		problems = append(problems, "not in the backup: "+strings.Join(extra, ", "))
	}
	if m.Canary != nil {
		cerr := checkCanary(ctx, a.client, m.Canary)
		r.Data["canary"] = cerr == nil
		if cerr != nil {
			problems = append(problems, cerr.Error())
		}
	}
	if len(problems) > 0 {
		r.Failed = true
		r.Msg = fmt.Sprintf("%s (%s) does not hold what %s lists: %s", a.host, a.self, mpath, strings.Join(problems, "; "))
		return r, &tasks.VerificationError{Err: errors.New(r.Msg)}
	}
	r.Msg = fmt.Sprintf("%s (%s) holds every object %s lists", a.host, a.self, mpath)
	if m.Canary != nil {
		r.Msg += " and decrypts its canary"
	}
	if len(extra) > 0 {
		r.Msg += fmt.Sprintf(" (and %d object(s) it does not)", len(extra))
	}
	return r, nil
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
