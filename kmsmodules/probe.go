package kmsmodules

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/kmsctl/kmsctl/tasks"
)

// probeWriteModule is kms_probe_write: proof that the task host's node
// takes writes and serves reads. Through that node only, it creates a
// throw-away key (kmsctl-probe-RANDOM) in enclave (default: the server's
// default enclave), encrypts random bytes with it, decrypts them back,
// and deletes the key. It leaves nothing behind when it succeeds (ok, not
// changed); a failed step fails the task, naming the step, after trying to
// delete the key. It registers key, endpoint and took (milliseconds).
type probeWriteModule struct{ m *mods }

func (probeWriteModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{"enclave": {Type: tasks.ArgString}}}
}

func (p probeWriteModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	a, err := p.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	return tasks.Result{Msg: fmt.Sprintf("would create, use and delete a throw-away key through %s (%s)", a.host, a.self)}, nil
}

func (p probeWriteModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	enclave, err := env.Args.String("enclave")
	if err != nil {
		return tasks.Result{}, err
	}
	a, err := p.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return tasks.Result{}, fmt.Errorf("name the probe key: %w", err)
	}
	key := "kmsctl-probe-" + hex.EncodeToString(b[:])
	start := time.Now()
	if err := a.probe(ctx, enclave, key); err != nil {
		return tasks.Result{}, fmt.Errorf("write and read back through %s (%s): %w", a.host, a.self, err)
	}
	took := time.Since(start)
	return tasks.Result{
		Msg:  fmt.Sprintf("wrote and read back through %s (%s) in %s: key %s created, used and deleted", a.host, a.self, took.Round(time.Millisecond), key),
		Data: map[string]any{"key": key, "endpoint": a.self, "took": int(took.Milliseconds())},
	}, nil
}

// probe creates key, encrypts and decrypts with it, and deletes it; a
// failure after the creation still deletes the key.
func (a *access) probe(ctx context.Context, enclave, key string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*askTimeout)
	defer cancel()
	if err := a.client.CreateKey(ctx, enclave, key); err != nil {
		return err
	}
	defer func() {
		if derr := a.client.DeleteKey(context.WithoutCancel(ctx), enclave, key); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	plain := make([]byte, 32)
	if _, err := rand.Read(plain); err != nil {
		return fmt.Errorf("make the probe's plaintext: %w", err)
	}
	ct, version, err := a.client.Encrypt(ctx, enclave, key, plain, nil)
	if err != nil {
		return err
	}
	got, err := a.client.Decrypt(ctx, enclave, key, version, ct, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, plain) {
		return fmt.Errorf("key %s decrypted its own ciphertext to other bytes", key)
	}
	return nil
}
