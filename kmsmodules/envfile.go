package kmsmodules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// envFileModule is kms_env_file: it installs the node's systemd
// EnvironmentFile, rendered from the local template src with the task's
// variables and kms_hsm_key, the operator's HSM key (MINIO_KMS_HSM_KEY,
// kms_hsm_key_file or kms_hsm_key_command, as kms_hsm_check reads it; never
// a variable of the inventory). It writes dest (default kms_env_file) mode
// 0600 atomically and verified (temp file, fsync, sha256, rename), and is
// ok, changing nothing, when dest already has that content and mode. The
// key never reaches a message, a diff or a command line: the result names
// only its fingerprint.
type envFileModule struct{ m *mods }

func (envFileModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"src":  {Type: tasks.ArgString, Required: true},
		"dest": {Type: tasks.ArgString},
	}}
}

// VarHSMKeyText is the variable kms_env_file's template reads the
// operator's HSM key from; it exists only while the template is rendered.
const VarHSMKeyText = "kms_hsm_key"

// envFile is what kms_env_file would write.
type envFile struct {
	dest, fingerprint string
	content           []byte
	sum               string
	same              bool // dest has this content and mode 0600
}

func (e envFileModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	f, err := e.render(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if f.same {
		return tasks.Result{Msg: f.okMsg(), Data: f.data()}, nil
	}
	return tasks.Result{Changed: true, Msg: fmt.Sprintf("would write %s (0600) with the HSM key %s", f.dest, f.fingerprint), Data: f.data()}, nil
}

func (e envFileModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	f, err := e.render(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if f.same {
		return tasks.Result{Msg: f.okMsg(), Data: f.data()}, nil
	}
	if _, err := env.Conn.Upload(ctx, f.dest, bytes.NewReader(f.content), f.sum, 0o600, ""); err != nil {
		return tasks.Result{}, fmt.Errorf("write the env file %s: %w", f.dest, err)
	}
	return tasks.Result{Changed: true, Msg: fmt.Sprintf("wrote %s (0600, sha256 verified) with the HSM key %s", f.dest, f.fingerprint), Data: f.data()}, nil
}

func (f envFile) okMsg() string {
	return fmt.Sprintf("%s already holds this content (0600, HSM key %s)", f.dest, f.fingerprint)
}

func (f envFile) data() map[string]any {
	return map[string]any{"dest": f.dest, "fingerprint": f.fingerprint, "checksum": f.sum}
}

// render reads the operator's HSM key, renders src with it and compares
// the result with dest on the host.
func (e envFileModule) render(ctx context.Context, env *tasks.Env) (envFile, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return envFile{}, fmt.Errorf("host %s is not an inventory host: kms_env_file needs its kms_* variables", env.Host.Name)
	}
	if env.Conn == nil {
		return envFile{}, fmt.Errorf("host %s: kms_env_file needs the host's connection", ih.Name)
	}
	src, err := env.Args.String("src")
	if err != nil {
		return envFile{}, err
	}
	f := envFile{dest: ih.KMS.EnvFile}
	if env.Args.Has("dest") {
		if f.dest, err = env.Args.String("dest"); err != nil {
			return envFile{}, err
		}
	}
	key, err := e.m.hsmKey(ctx, env, ih.KMS)
	if err != nil {
		return envFile{}, fmt.Errorf("host %s: the HSM key to install: %w", ih.Name, err)
	}
	f.fingerprint = key.Fingerprint()
	tpl, err := env.ReadLocal(src)
	if err != nil {
		return envFile{}, err
	}
	withKey := *env
	withKey.Vars = maps.Clone(env.Vars)
	if withKey.Vars == nil {
		withKey.Vars = map[string]any{}
	}
	withKey.Vars[VarHSMKeyText] = key.Text()
	out, _, err := withKey.RenderSecret(string(tpl))
	if err != nil {
		return envFile{}, fmt.Errorf("render %s: %w", src, err)
	}
	if !bytes.Contains([]byte(out), []byte(key.Text())) {
		return envFile{}, fmt.Errorf("template %s does not write the HSM key: it must use {{ %s }} (e.g. %s={{ %s }})", src, VarHSMKeyText, inventory.EnvHSMKey, VarHSMKeyText)
	}
	f.content = []byte(out)
	s := sha256.Sum256(f.content)
	f.sum = hex.EncodeToString(s[:])
	fi, err := env.Conn.Stat(ctx, f.dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return envFile{}, fmt.Errorf("stat %s: %w", f.dest, err)
	}
	sum, err := env.Conn.Checksum(ctx, f.dest)
	if err != nil {
		return envFile{}, fmt.Errorf("checksum %s: %w", f.dest, err)
	}
	f.same = sum == f.sum && fi.Mode().Perm() == 0o600
	return f, nil
}
