package kmsmodules

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/google/renameio/v2"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// backupModule is kms_backup: it takes a snapshot of the task host's node
// (GET /v1/db) into dest on the machine running kmsctl, written atomically
// (a temp file beside it, fsynced, renamed; mode 0600), gzip-compressed
// with gzip: true, and a manifest beside it (DEST.manifest.json): the
// cluster (the cluster argument, an inventory group), the node, its
// version, the members it knows, the snapshot's size and sha256, the
// fingerprint of the HSM key in the node's env file (read like
// kms_hsm_check does: become root), the enclaves, keys, policies and
// identities it held and their counts, and a canary for kms_verify (see
// canaryKey). It is ok, changing nothing, when dest and its manifest exist,
// unless force is true. The objects are listed before and after the
// snapshot; a cluster that changed meanwhile fails the task (take it
// again). After writing, the manifest is read back and the snapshot
// checked against it; a pair that does not check out fails the task with a
// tasks.VerificationError.
type backupModule struct{ m *mods }

// The canary: a ciphertext of 32 random bytes made at backup time under
// key canaryKey of enclave canaryEnclave, which kms_backup creates when the
// node does not hold it (a write: it needs every node of the cluster). The
// key protects nothing else; the ciphertext and its plaintext go into the
// manifest, so that a restored node proves that it holds the backed-up
// keys by decrypting it.
const (
	canaryEnclave = "default"
	canaryKey     = "kmsctl-canary"
)

func (backupModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"dest":    {Type: tasks.ArgString, Required: true},
		"force":   {Type: tasks.ArgBool},
		"gzip":    {Type: tasks.ArgBool},
		"cluster": {Type: tasks.ArgString},
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
	gz, err := env.Args.Bool("gzip", false)
	if err != nil {
		return tasks.Result{}, err
	}
	cluster, err := env.Args.String("cluster")
	if err != nil {
		return tasks.Result{}, err
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
	// The canary key first, so that the objects listed hold it.
	canaryErr := ensureCanaryKey(ctx, a)
	before, err := listObjects(ctx, a.client)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("back up %s: %w", a.host, err)
	}
	var cn *canary
	if canaryErr == nil {
		if cn, err = makeCanary(ctx, a); err != nil {
			return tasks.Result{}, fmt.Errorf("back up %s: %w", a.host, err)
		}
	}
	size, sum, err := a.snapshot(ctx, dest, gz)
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
	n := before.count()
	m := manifest{Format: 1, Created: time.Now().UTC().Truncate(time.Second), Cluster: cluster, Endpoint: a.self, NodeID: self.ID, Version: self.Version,
		Nodes: manifestNodes(self), Snapshot: filepath.Base(dest), Size: size, SHA256: sum, Counts: &n,
		HSMFingerprint: nodeKey.Fingerprint(), Objects: before, Canary: cn}
	if gz {
		m.Compression = "gzip"
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return tasks.Result{}, fmt.Errorf("encode the backup manifest: %w", err)
	}
	if err := renameio.WriteFile(dest+manifestSuffix, append(js, '\n'), 0o600); err != nil {
		return tasks.Result{}, fmt.Errorf("write the backup manifest: %w", err)
	}
	data := map[string]any{"dest": dest, "manifest": dest + manifestSuffix, "size": int(size), "sha256": sum, "hsm_fingerprint": m.HSMFingerprint,
		"node_id": int(self.ID), "endpoint": a.self, "version": self.Version, "canary": cn != nil}
	for k, v := range n.data() {
		data[k] = v
	}
	msg := fmt.Sprintf("backed up %s (%s) to %s: %d bytes, sha256 %s", a.host, a.self, dest, size, sum)
	if canaryErr != nil {
		data["canary_warning"] = canaryErr.Error()
		msg += "; without a canary: " + canaryErr.Error()
	}
	// The pair as written must check out: what a restore will read.
	if err := checkWritten(dest); err != nil {
		r := tasks.Result{Failed: true, Data: data, Msg: fmt.Sprintf("back up %s: %v", a.host, err)}
		return r, &tasks.VerificationError{Err: errors.New(r.Msg)}
	}
	return tasks.Result{Changed: true, Data: data, Msg: msg}, nil
}

// checkWritten reads back the pair kms_backup wrote at dest: the manifest
// must read, the snapshot match its size and sha256 and, when compressed,
// decompress to its end. Any failure is a *tasks.VerificationError.
func checkWritten(dest string) error {
	fail := func(err error) error {
		return &tasks.VerificationError{Err: fmt.Errorf("the backup written does not check out when read back: %w", err)}
	}
	m, err := readManifest(dest + manifestSuffix)
	if err != nil {
		return fail(err)
	}
	if err := checkSnapshot(dest, m); err != nil {
		return fail(err)
	}
	if m.Compression != "gzip" {
		return nil
	}
	f, err := os.Open(dest)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fail(fmt.Errorf("decompress %s: %w", dest, err))
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fail(fmt.Errorf("decompress %s: %w", dest, err))
	}
	return nil
}

// manifestNodes is the cluster definition of v, sorted by node ID.
func manifestNodes(v kms.NodeView) []manifestNode {
	out := []manifestNode{}
	for _, id := range slices.Sorted(maps.Keys(v.Members)) {
		out = append(out, manifestNode{ID: id, Endpoint: v.Members[id]})
	}
	return out
}

// snapshot streams the node's snapshot into dest atomically, gzip
// compressed when gz, and returns the file's size and hex sha256.
func (a *access) snapshot(ctx context.Context, dest string, gz bool) (int64, string, error) {
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return 0, "", fmt.Errorf("create the directory of %s: %w", dest, err)
	}
	pf, err := renameio.NewPendingFile(dest, renameio.WithPermissions(0o600))
	if err != nil {
		return 0, "", fmt.Errorf("create %s: %w", dest, err)
	}
	defer pf.Cleanup()
	h := sha256.New()
	file := &counter{w: io.MultiWriter(pf, h)}
	var w io.Writer = file
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(file)
		w = zw
	}
	if _, err := a.client.Backup(ctx, a.self, w); err != nil {
		return 0, "", fmt.Errorf("back up %s: %w", a.host, err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return 0, "", fmt.Errorf("write %s: %w", dest, err)
		}
	}
	if err := pf.Chmod(fs.FileMode(0o600)); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", dest, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return 0, "", fmt.Errorf("write %s: %w", dest, err)
	}
	return file.n, hex.EncodeToString(h.Sum(nil)), nil
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ensureCanaryKey creates the canary key unless the node holds it.
func ensureCanaryKey(ctx context.Context, a *access) error {
	err := a.client.CreateKey(ctx, canaryEnclave, canaryKey)
	if err != nil && !errors.Is(err, kms.ErrKeyExists) {
		return fmt.Errorf("create the canary key %s/%s: %w", canaryEnclave, canaryKey, err)
	}
	return nil
}

// makeCanary encrypts 32 random bytes under the canary key (an encryption
// changes nothing on the node).
func makeCanary(ctx context.Context, a *access) (*canary, error) {
	pt := make([]byte, 32)
	if _, err := rand.Read(pt); err != nil {
		return nil, fmt.Errorf("make the canary: %w", err)
	}
	ct, ver, err := a.client.Encrypt(ctx, canaryEnclave, canaryKey, pt, nil)
	if err != nil {
		return nil, fmt.Errorf("make the canary under key %s/%s: %w", canaryEnclave, canaryKey, err)
	}
	return &canary{Enclave: canaryEnclave, Key: canaryKey, Version: ver, Ciphertext: ct, Plaintext: pt}, nil
}
