package kmsmodules

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/google/renameio/v2"

	"github.com/kmsctl/kmsctl/tasks"
)

// backupModule is kms_backup: it takes a snapshot of the task host's node
// (GET /v1/db) into dest on the machine running kmsctl, written atomically
// (a temp file beside it, fsynced, renamed; mode 0600), and a manifest
// beside it (DEST.manifest.json): the node, its version, the snapshot's size
// and sha256, the fingerprint of the HSM key in the node's env file (read
// like kms_hsm_check does: become root), the enclaves, keys, policies and
// identities it held, and a canary ciphertext made under one of its keys
// for kms_verify. It is ok,
// changing nothing, when dest and its manifest exist, unless force is true.
// The objects are listed before and after the snapshot; a cluster that
// changed meanwhile fails the task (take it again).
type backupModule struct{ m *mods }

func (backupModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"dest":  {Type: tasks.ArgString, Required: true},
		"force": {Type: tasks.ArgBool},
	}}
}

func backupArgs(env *tasks.Env) (dest string, force, exists bool, err error) {
	if dest, err = env.Args.String("dest"); err != nil {
		return
	}
	if dest == "" {
		return "", false, false, errors.New("argument dest is empty")
	}
	if force, err = env.Args.Bool("force", false); err != nil {
		return
	}
	_, e1 := os.Stat(dest)
	_, e2 := os.Stat(dest + manifestSuffix)
	return dest, force, e1 == nil && e2 == nil, nil
}

func (b backupModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	dest, force, exists, err := backupArgs(env)
	if err != nil {
		return tasks.Result{}, err
	}
	data := map[string]any{"dest": dest, "manifest": dest + manifestSuffix}
	if exists && !force {
		return tasks.Result{Msg: dest + " and its manifest exist (force: true takes the backup again)", Data: data}, nil
	}
	return tasks.Result{Changed: true, Msg: fmt.Sprintf("would back up %s to %s", env.Host.Name, dest), Data: data}, nil
}

func (b backupModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	dest, force, exists, err := backupArgs(env)
	if err != nil {
		return tasks.Result{}, err
	}
	if exists && !force {
		return b.Plan(ctx, env)
	}
	a, err := b.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	nodeKey, err := readNodeHSMKey(ctx, env, a.envFile)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("back up %s: the fingerprint of its HSM key: %w", a.host, err)
	}
	self, err := a.selfView(ctx)
	if err != nil {
		return tasks.Result{}, err
	}
	before, err := listObjects(ctx, a.client)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("back up %s: %w", a.host, err)
	}
	cn, err := makeCanary(ctx, a, before)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("back up %s: %w", a.host, err)
	}
	size, sum, err := a.snapshot(ctx, dest)
	if err != nil {
		return tasks.Result{}, err
	}
	after, err := listObjects(ctx, a.client)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("back up %s: %w", a.host, err)
	}
	if !reflect.DeepEqual(before, after) {
		return tasks.Result{}, fmt.Errorf("back up %s: its objects changed while the snapshot was taken; %s is complete, but its manifest cannot say what it holds: take the backup again (force: true)", a.host, dest)
	}
	m := manifest{Format: 1, Created: time.Now().UTC().Truncate(time.Second), Endpoint: a.self, NodeID: self.ID, Version: self.Version,
		Snapshot: filepath.Base(dest), Size: size, SHA256: sum, HSMFingerprint: nodeKey.Fingerprint(), Objects: before, Canary: cn}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return tasks.Result{}, fmt.Errorf("encode the backup manifest: %w", err)
	}
	if err := renameio.WriteFile(dest+manifestSuffix, append(js, '\n'), 0o600); err != nil {
		return tasks.Result{}, fmt.Errorf("write the backup manifest: %w", err)
	}
	data := map[string]any{"dest": dest, "manifest": dest + manifestSuffix, "size": int(size), "sha256": sum, "hsm_fingerprint": m.HSMFingerprint}
	for k, v := range before.count() {
		data[k] = v
	}
	return tasks.Result{Changed: true, Data: data,
		Msg: fmt.Sprintf("backed up %s (%s) to %s: %d bytes, sha256 %s", a.host, a.self, dest, size, sum)}, nil
}

// snapshot streams the node's snapshot into dest atomically and returns its
// size and hex sha256.
func (a *access) snapshot(ctx context.Context, dest string) (int64, string, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return 0, "", fmt.Errorf("create the directory of %s: %w", dest, err)
	}
	pf, err := renameio.NewPendingFile(dest, renameio.WithPermissions(0o600))
	if err != nil {
		return 0, "", fmt.Errorf("create %s: %w", dest, err)
	}
	defer pf.Cleanup()
	h := sha256.New()
	n, err := a.client.Backup(ctx, a.self, io.MultiWriter(pf, h))
	if err != nil {
		return 0, "", fmt.Errorf("back up %s: %w", a.host, err)
	}
	if err := pf.Chmod(fs.FileMode(0o600)); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", dest, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", dest, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// makeCanary encrypts random bytes under the first key the node holds (an
// encryption changes nothing on the node); nil when it holds no key.
func makeCanary(ctx context.Context, a *access, o objects) (*canary, error) {
	for _, e := range o.Enclaves {
		if len(e.Keys) == 0 {
			continue
		}
		pt := make([]byte, 32)
		if _, err := rand.Read(pt); err != nil {
			return nil, fmt.Errorf("make the canary: %w", err)
		}
		ct, ver, err := a.client.Encrypt(ctx, e.Name, e.Keys[0].Name, pt, nil)
		if err != nil {
			return nil, fmt.Errorf("make the canary under key %s/%s: %w", e.Name, e.Keys[0].Name, err)
		}
		return &canary{Enclave: e.Name, Key: e.Keys[0].Name, Version: ver, Ciphertext: ct, Plaintext: pt}, nil
	}
	return nil, nil
}
