package kmsmodules

import (
	"context"
	"fmt"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// hsmFingerprintModule is kms_hsm_fingerprint: the fingerprint of the HSM
// key in the task host's env file (kms_env_file), read over its SSH
// connection (become root to read a 0600 file) as kms_hsm_check reads it,
// registered as fingerprint and env_file. Unlike kms_hsm_check it needs no
// operator's key: `kmsctl status` compares the nodes' fingerprints with
// each other. Read-only; only the fingerprint is shown, the key never
// leaves kmsctl's memory.
type hsmFingerprintModule struct{ m *mods }

func (hsmFingerprintModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{}}
}

func (h hsmFingerprintModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return h.Apply(ctx, env)
}

func (hsmFingerprintModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return tasks.Result{}, fmt.Errorf("host %s is not an inventory host: kms_hsm_fingerprint needs its kms_env_file", env.Host.Name)
	}
	if env.Conn == nil {
		return tasks.Result{}, fmt.Errorf("host %s: kms_hsm_fingerprint needs the host's connection", ih.Name)
	}
	file := ih.KMS.EnvFile
	k, err := readNodeHSMKey(ctx, env, file)
	if err != nil {
		return tasks.Result{Failed: true, Msg: err.Error(), Data: map[string]any{"env_file": file}}, nil
	}
	fp := k.Fingerprint()
	return tasks.Result{Msg: "HSM key " + fp + " in " + file, Data: map[string]any{"env_file": file, "fingerprint": fp}}, nil
}
