package kmsmodules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// restoreModule is kms_restore: it restores a snapshot taken by kms_backup
// (src, with its manifest beside it or named by manifest) onto the task
// host's node (PUT /v1/db), which must be clean: a one-node cluster with no
// history, whose env file holds the HSM key the manifest's fingerprint
// names (read like kms_hsm_check does: become root). The snapshot must be
// the one its manifest describes (size and sha256). Afterwards the node must hold exactly what the manifest lists and
// decrypt its canary. It is ok, changing nothing, when the node already
// holds exactly that; restoring onto a node that holds anything else, or
// runs with another HSM key, is refused (a safety refusal: restore only
// onto empty state, with the backup's HSM key). A snapshot that is not the
// one its manifest describes is refused too; a node that, once restored,
// does not hold what the manifest lists or cannot decrypt its canary
// fails the task with a tasks.VerificationError (exit 7) naming what is
// missing.
//
// no_manifest: true restores a snapshot that has no manifest of kmsctl (the
// vendor's CLI made it, say): nothing can be checked before (no size, no
// sha256, no HSM-key fingerprint), so the node must be clean, and what it
// holds afterwards is registered (enclaves, keys, policies, identities) for
// the caller to judge. A node that holds anything is refused, even the
// same snapshot restored already.
type restoreModule struct{ m *mods }

func (restoreModule) Spec() tasks.Spec {
	return tasks.Spec{ClusterLock: true, Args: map[string]tasks.ArgSpec{
		"src":         {Type: tasks.ArgString, Required: true},
		"manifest":    {Type: tasks.ArgString},
		"no_manifest": {Type: tasks.ArgBool},
	}}
}

// restoration is what kms_restore found.
type restoration struct {
	src        string
	m          manifest
	noManifest bool // no_manifest: m is empty, nothing is checked but the node's state
	done       bool // the node already holds exactly the backup
}

func (r restoreModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return r.run(ctx, env, true)
}

func (r restoreModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return r.run(ctx, env, false)
}

// run decodes and checks what kms_restore is asked; with check it reports what
// it would do, else it restores the snapshot.
func (r restoreModule) run(ctx context.Context, env *tasks.Env, check bool) (tasks.Result, error) {
	a, err := r.m.open(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	defer a.close()
	rs, err := r.plan(ctx, env, a)
	if err != nil {
		return tasks.Result{}, err
	}
	if rs.done {
		return tasks.Result{Msg: rs.doneMsg(a), Data: rs.data()}, nil
	}
	if check {
		return tasks.Result{Changed: true, Msg: fmt.Sprintf("would restore %s onto %s (%s)", rs.src, a.host, a.self), Data: rs.data()}, nil
	}
	f, err := os.Open(rs.src)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("open the snapshot: %w", err)
	}
	defer f.Close()
	size := rs.m.Size
	if rs.noManifest {
		fi, err := f.Stat()
		if err != nil {
			return tasks.Result{}, fmt.Errorf("read the snapshot: %w", err)
		}
		size = fi.Size()
	}
	if err := a.client.Restore(ctx, a.self, f, size); err != nil {
		return tasks.Result{}, fmt.Errorf("restore %s onto %s: %w", rs.src, a.host, err)
	}
	if rs.noManifest {
		got, err := listObjects(ctx, a.client)
		if err != nil {
			return tasks.Result{Changed: true}, fmt.Errorf("restored %s onto %s, but could not list what it holds: %w", rs.src, a.host, err)
		}
		c := got.count()
		d := map[string]any{"src": rs.src, "no_manifest": true}
		for k, v := range c.data() {
			d[k] = v
		}
		return tasks.Result{Changed: true, Data: d, Msg: fmt.Sprintf("restored %s onto %s (%s) without a manifest, so nothing could be checked before; "+
			"it now holds %d enclave(s), %d key(s), %d policies, %d identities", rs.src, a.host, a.self, c.Enclaves, c.Keys, c.Policies, c.Identities)}, nil
	}
	if err := holdsExactly(ctx, a, rs.m); err != nil {
		r := tasks.Result{Changed: true, Failed: true, Data: rs.data(),
			Msg: fmt.Sprintf("restored %s onto %s (%s), but it does not hold what the manifest lists: %v", rs.src, a.host, a.self, err)}
		return r, &tasks.VerificationError{Err: errors.New(r.Msg)}
	}
	return tasks.Result{Changed: true, Data: rs.data(),
		Msg: fmt.Sprintf("restored %s onto %s (%s); it holds what the backup held and decrypts its canary", rs.src, a.host, a.self)}, nil
}

func (rs restoration) data() map[string]any {
	d := map[string]any{"src": rs.src, "sha256": rs.m.SHA256}
	for k, v := range rs.m.Objects.count().data() {
		d[k] = v
	}
	return d
}

func (rs restoration) doneMsg(a *access) string {
	return fmt.Sprintf("%s (%s) already holds exactly what %s held", a.host, a.self, rs.src)
}

// plan reads the manifest, checks the snapshot against it, and finds the
// node clean (restore), already restored (ok) or holding other state
// (refused).
func (r restoreModule) plan(ctx context.Context, env *tasks.Env, a *access) (restoration, error) {
	var rs restoration
	var err error
	if rs.src, err = env.Args.String("src"); err != nil {
		return rs, err
	}
	mpath, err := env.Args.String("manifest")
	if err != nil {
		return rs, err
	}
	if rs.noManifest, err = env.Args.Bool("no_manifest", false); err != nil {
		return rs, err
	}
	if rs.noManifest {
		if mpath != "" {
			return rs, errors.New("arguments manifest and no_manifest: true exclude each other")
		}
		if _, err := os.Stat(rs.src); err != nil {
			return rs, fmt.Errorf("the snapshot: %w", err)
		}
		return rs, clean(ctx, a, rs)
	}
	if mpath == "" {
		mpath = rs.src + manifestSuffix
	}
	if rs.m, err = readManifest(mpath); err != nil {
		return rs, err
	}
	if err := checkSnapshot(rs.src, rs.m); err != nil {
		return rs, &refusal{"refused: " + err.Error()}
	}
	nodeKey, err := readNodeHSMKey(ctx, env, a.envFile)
	if err != nil {
		return rs, fmt.Errorf("restore onto %s: the fingerprint of its HSM key: %w", a.host, err)
	}
	if fp := nodeKey.Fingerprint(); fp != rs.m.HSMFingerprint {
		return rs, &refusal{fmt.Sprintf("refused: %s runs with the HSM key of fingerprint %s, the backup %s was taken under %s; its values cannot be unsealed with another key. "+
			"Put the backup's HSM key in %s:%s and restart the node", a.host, fp, rs.src, rs.m.HSMFingerprint, a.host, a.envFile)}
	}
	cerr := clean(ctx, a, rs)
	var ref *refusal
	if !errors.As(cerr, &ref) {
		return rs, cerr
	}
	if err := holdsExactly(ctx, a, rs.m); err == nil {
		rs.done = true
		return rs, nil
	}
	return rs, cerr
}

// clean is nil when the node is fresh (a one-node cluster with no
// history), a refusal when it holds state.
func clean(ctx context.Context, a *access, rs restoration) error {
	self, err := a.selfView(ctx)
	if err != nil {
		return err
	}
	if len(self.Members) == 1 && self.Commit == 0 {
		return nil
	}
	what := "and does not hold exactly what the backup held"
	if rs.noManifest {
		what = "and a snapshot without a manifest is restored only onto a clean node"
	}
	return &refusal{fmt.Sprintf("refused: %s (%s) is not clean: it is node %d of a cluster of %d node(s) with commit %d, %s. "+
		"Restore only onto a fresh node: stop it, wipe its data directory (kms_storage_path), start it, and restore before adding any node",
		a.host, a.self, self.ID, len(self.Members), self.Commit, what)}
}

// holdsExactly checks that the node holds exactly the manifest's objects
// and decrypts its canary.
func holdsExactly(ctx context.Context, a *access, m manifest) error {
	got, err := listObjects(ctx, a.client)
	if err != nil {
		return err
	}
	missing, extra := diff(m.Objects, got)
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing or different: %s", strings.Join(missing, ", ")))
	}
	if len(extra) > 0 {
		errs = append(errs, fmt.Errorf("not in the backup: %s", strings.Join(extra, ", ")))
	}
	if err := checkCanary(ctx, a.client, m.Canary); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
