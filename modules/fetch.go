package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/kmsctl/kmsctl/tasks"
)

// fetchModule copies a remote file to the control machine: to
// dest/HOST/SRC, or with flat: true to dest itself (a dest ending in "/"
// or naming an existing directory gets the file's base name). It compares sha256 sums first and writes
// atomically (mode 0600), verifying the sum of what arrived.
type fetchModule struct{}

func (fetchModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"src":  {Type: tasks.ArgString, Required: true, CmdLine: true},
		"dest": {Type: tasks.ArgString, Required: true},
		"flat": {Type: tasks.ArgBool},
	}}
}

type fetchPlan struct {
	src, dest    string
	remote, have string
}

func (fetchModule) plan(ctx context.Context, env *tasks.Env) (fetchPlan, error) {
	src, err := env.Args.String("src")
	if err != nil {
		return fetchPlan{}, err
	}
	if err := checkPath(src); err != nil {
		return fetchPlan{}, fmt.Errorf("src: %w", err)
	}
	dest, err := env.Args.String("dest")
	if err != nil {
		return fetchPlan{}, err
	}
	if dest == "" {
		return fetchPlan{}, errors.New("dest is empty")
	}
	flat, err := env.Args.Bool("flat", false)
	if err != nil {
		return fetchPlan{}, err
	}
	isDir := func(p string) bool { fi, err := os.Stat(p); return err == nil && fi.IsDir() }
	switch {
	case flat && (strings.HasSuffix(dest, "/") || isDir(dest)):
		dest = filepath.Join(dest, path.Base(src))
	case !flat:
		dest = filepath.Join(dest, env.Host.Name, filepath.FromSlash(src))
	}
	sum, err := env.Conn.Checksum(ctx, src)
	if err != nil {
		return fetchPlan{}, fmt.Errorf("checksum %s: %w", src, err)
	}
	fp := fetchPlan{src: src, dest: dest, remote: sum}
	f, err := os.Open(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fp, fmt.Errorf("open local %s: %w", dest, err)
	default:
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fp, fmt.Errorf("read local %s: %w", dest, err)
		}
		fp.have = hex.EncodeToString(h.Sum(nil))
	}
	return fp, nil
}

func (fp fetchPlan) result(prefix string) tasks.Result {
	r := tasks.Result{Changed: fp.have != fp.remote, Data: map[string]any{"src": fp.src, "dest": fp.dest, "checksum": fp.remote}}
	if r.Changed {
		r.Msg = prefix + "fetch " + fp.src + " to " + fp.dest
	}
	return r
}

func (m fetchModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	fp, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	return fp.result("would "), nil
}

func (m fetchModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	fp, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	if fp.have == fp.remote {
		return fp.result(""), nil
	}
	if err := os.MkdirAll(filepath.Dir(fp.dest), 0o700); err != nil {
		return tasks.Result{}, fmt.Errorf("create local directory for %s: %w", fp.dest, err)
	}
	t, err := renameio.TempFile("", fp.dest)
	if err != nil {
		return tasks.Result{}, fmt.Errorf("create %s: %w", fp.dest, err)
	}
	defer t.Cleanup()
	if err := t.Chmod(0o600); err != nil {
		return tasks.Result{}, fmt.Errorf("chmod %s: %w", fp.dest, err)
	}
	h := sha256.New()
	if err := env.Conn.Download(ctx, fp.src, io.MultiWriter(t, h)); err != nil {
		return tasks.Result{}, fmt.Errorf("download %s: %w", fp.src, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != fp.remote {
		return tasks.Result{}, fmt.Errorf("download %s: checksum mismatch: remote %s, received %s (did the file change?)", fp.src, fp.remote, got)
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return tasks.Result{}, fmt.Errorf("write %s: %w", fp.dest, err)
	}
	return fp.result(""), nil
}
