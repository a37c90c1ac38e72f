package kmsmodules

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

// hsmCheckModule is kms_hsm_check: it reads the node's env file
// (kms_env_file) over the host's connection - as root when the host or task
// becomes root, since the file is 0600 - takes MINIO_KMS_HSM_KEY from it,
// and compares the key's fingerprint on this machine with the operator's
// HSM key (MINIO_KMS_HSM_KEY, kms_hsm_key_file or kms_hsm_key_command).
// Run on every node, it shows that they all hold the operator's key, so the
// same one. The keys stay in memory; only fingerprints are shown and
// registered (fingerprint, operator_fingerprint, matches, env_file). A node
// holding another key fails the task with a tasks.VerificationError (the
// CLI exits 7 when every failed host failed so); a key it cannot read fails
// it with an ordinary error. It changes nothing, in check mode
// too.
type hsmCheckModule struct{ m *mods }

func (hsmCheckModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{}}
}

func (h hsmCheckModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return h.Apply(ctx, env)
}

func (h hsmCheckModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return tasks.Result{}, fmt.Errorf("host %s is not an inventory host: the Key Manager modules need its kms_* variables", env.Host.Name)
	}
	if env.Conn == nil {
		return tasks.Result{}, fmt.Errorf("host %s: kms_hsm_check needs the host's connection", ih.Name)
	}
	op, err := h.m.hsmKey(ctx, env, ih.KMS)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("host %s: %w", ih.Name, err)
	}
	nodeKey, err := readNodeHSMKey(ctx, env, ih.KMS.EnvFile)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("host %s: %w", ih.Name, err)
	}
	r := tasks.Result{Data: map[string]any{
		"fingerprint": nodeKey.Fingerprint(), "operator_fingerprint": op.Fingerprint(),
		"matches": nodeKey.Equal(op), "env_file": ih.KMS.EnvFile,
	}}
	if !nodeKey.Equal(op) {
		r.Failed = true
		r.Msg = fmt.Sprintf("the HSM key in %s:%s (fingerprint %s) is not the operator's (fingerprint %s): this node cannot join or serve the cluster's data",
			ih.Name, ih.KMS.EnvFile, nodeKey.Fingerprint(), op.Fingerprint())
		return r, &tasks.VerificationError{Err: errors.New(r.Msg)}
	}
	r.Msg = fmt.Sprintf("the HSM key in %s:%s is the operator's (fingerprint %s)", ih.Name, ih.KMS.EnvFile, op.Fingerprint())
	return r, nil
}

// maxEnvFile bounds the env file read into memory.
const maxEnvFile = 1 << 20

// readNodeHSMKey downloads the env file into memory over the host's
// connection and parses its MINIO_KMS_HSM_KEY, registered with the run's
// masking (addKey) as soon as it is read. No error quotes the file's
// content.
func readNodeHSMKey(ctx context.Context, env *tasks.Env, path string) (hsm.Key, error) {
	var buf bytes.Buffer
	if err := env.Conn.Download(ctx, path, &limitWriter{w: &buf, n: maxEnvFile}); err != nil {
		return hsm.Key{}, fmt.Errorf("read the env file %s: %w", path, err)
	}
	text, line, ok := envValue(buf.Bytes(), inventory.EnvHSMKey)
	if !ok {
		return hsm.Key{}, fmt.Errorf("the env file %s sets no %s", path, inventory.EnvHSMKey)
	}
	addKey(env, strings.TrimSpace(text))
	k, err := hsm.Parse(text)
	if err != nil {
		return hsm.Key{}, fmt.Errorf("%s:%d: %s: %w", path, line, inventory.EnvHSMKey, err)
	}
	return k, nil
}

// envValue returns the value of name in a systemd EnvironmentFile (KEY=VALUE
// lines, # and ; comments, an optional "export ", the value optionally in
// matching single or double quotes; the last assignment wins, as systemd
// applies them in order) and its line number.
func envValue(b []byte, name string) (string, int, bool) {
	var val string
	var at int
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxEnvFile)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		l = strings.TrimPrefix(l, "export ")
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		val, at = v, n
	}
	return val, at, at > 0
}

// limitWriter fails a write past n bytes.
type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.w.Len()+len(p) > l.n {
		return 0, fmt.Errorf("larger than %d bytes: not an env file", l.n)
	}
	return l.w.Write(p)
}
