package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// maxDiffSize is the largest remote file read back to show a diff.
const maxDiffSize = 1 << 20

// copyModule puts a file on the host from a local src or from content.
// A src directory is copied recursively (its content only when src ends
// with "/"): one remote command lists what is there with sha256 sums,
// then only missing or different files are uploaded, a few in parallel;
// mode applies to the files, owner and group to the whole tree, and files
// on the host that are not in src are left alone. validate: "CMD %s"
// checks a new file before it replaces dest (single files only).
// It compares the remote sha256 (Conn.Checksum) with the local one and
// uploads only when they differ, atomically (Conn.Upload: temp file,
// fsync, rename, checksum verified); mode, owner and group are then
// enforced. secret: true marks the content as secret, and so does content
// that holds or was computed from a secret variable (content: "key: {{
// kms_api_key }}"): no diff, and mode 0600 unless mode is given (an
// existing file loses its group and other bits). from_host: HOST makes src
// an absolute path on that host (another host of the inventory, reached
// with Env.Peer, become as the task): the file is streamed from it through
// kmsctl's memory, never written to the control machine's disk, and the
// sha256 HOST reports must be what lands (else dest is left unchanged).
type copyModule struct{}

var fileAttrArgs = map[string]tasks.ArgSpec{
	"dest":     {Type: tasks.ArgString, Required: true, CmdLine: true},
	"validate": {Type: tasks.ArgString, CmdLine: true},
	"mode":     {Type: tasks.ArgMode, CmdLine: true},
	"owner":    {Type: tasks.ArgString, CmdLine: true},
	"group":    {Type: tasks.ArgString, CmdLine: true},
	"secret":   {Type: tasks.ArgBool},
}

func (copyModule) Spec() tasks.Spec {
	a := map[string]tasks.ArgSpec{"src": {Type: tasks.ArgString}, "content": {Type: tasks.ArgString}, "from_host": {Type: tasks.ArgString}}
	for k, v := range fileAttrArgs {
		a[k] = v
	}
	return tasks.Spec{Args: a, ExactlyOneOf: [][]string{{"src", "content"}}}
}

// CheckArgs checks that from_host comes with src, a file on that host.
func (copyModule) CheckArgs(args tasks.Args) error {
	if args.Has("from_host") && !args.Has("src") {
		return errors.New("from_host needs src: the path of the file on that host")
	}
	return nil
}

// fromHost is the host src is on ("" = the control machine).
func fromHost(env *tasks.Env) (string, error) {
	if !env.Args.Has("from_host") {
		return "", nil
	}
	h, err := env.Args.String("from_host")
	if err == nil && strings.TrimSpace(h) == "" {
		err = errors.New("from_host is empty")
	}
	return h, err
}

// CheckLocal checks, before any host is touched, that a known src exists
// on the control machine.
func (copyModule) CheckLocal(env *tasks.Env) error {
	if !env.Args.Has("src") || !env.Args.Literal("src") || env.Args.Has("from_host") {
		return nil
	}
	src, err := env.Args.String("src")
	if err != nil {
		return err
	}
	return checkLocalSrc(env, src)
}

// checkLocalSrc checks that the local file or directory src exists.
func checkLocalSrc(env *tasks.Env, src string) error {
	if src == "" {
		return errors.New("src is empty")
	}
	fsys, name := env.LocalFS(src)
	if _, err := fs.Stat(fsys, name); err != nil {
		return fmt.Errorf("src %s: %w on the control machine%s", src, localCause(err), relativeHint(src))
	}
	return nil
}

// localCause is the reason of a local file error, without the path in
// the file system's own form ("tmp/x" for "/tmp/x"): messages name the
// path as the playbook gives it.
func localCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// relativeHint says where a relative local path is read from.
func relativeHint(p string) string {
	if filepath.IsAbs(p) {
		return ""
	}
	return " (a relative src is read from the playbook's directory)"
}

// source returns the content to put and the destination path.
func (copyModule) source(ctx context.Context, env *tasks.Env) (payload, string, error) {
	dest, err := env.Args.String("dest")
	if err != nil {
		return payload{}, "", err
	}
	if env.Args.Has("content") {
		s, err := env.Args.String("content")
		pl := memPayload([]byte(s))
		pl.secret = env.Secret["content"]
		return pl, dest, err
	}
	src, err := env.Args.String("src")
	if err != nil {
		return payload{}, "", err
	}
	if src == "" {
		return payload{}, "", errors.New("src is empty")
	}
	from, err := fromHost(env)
	if err != nil {
		return payload{}, "", err
	}
	var pl payload
	if from != "" {
		pl, err = peerPayload(ctx, env, from, src)
	} else {
		pl, err = filePayload(env, src)
	}
	if err != nil {
		return payload{}, "", err
	}
	if strings.HasSuffix(dest, "/") {
		dest += path.Base(filepath.ToSlash(src))
	}
	return pl, dest, nil
}

// dir reports whether the task copies a local directory.
func (copyModule) dir(env *tasks.Env) (fsys fs.FS, root, base string, ok bool, err error) {
	if env.Args.Has("content") || env.Args.Has("from_host") {
		return nil, "", "", false, nil
	}
	src, err := env.Args.String("src")
	if err != nil || src == "" {
		return nil, "", "", false, err
	}
	dest, err := env.Args.String("dest")
	if err != nil {
		return nil, "", "", false, err
	}
	fsys, root, base, ok = copyDirSource(env, src, dest)
	return fsys, root, base, ok, nil
}

func (m copyModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	if fsys, root, base, ok, err := m.dir(env); err != nil || ok {
		if err != nil {
			return tasks.Result{}, err
		}
		dp, err := planDir(ctx, env, fsys, root, base)
		return dp.result, err
	}
	data, dest, err := m.source(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	p, err := planPut(ctx, env, dest, data)
	return p.result, err
}

func (m copyModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	if fsys, root, base, ok, err := m.dir(env); err != nil || ok {
		if err != nil {
			return tasks.Result{}, err
		}
		return applyDir(ctx, env, fsys, root, base)
	}
	data, dest, err := m.source(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	return applyPut(ctx, env, dest, data)
}

// putPlan is what planPut found out.
type putPlan struct {
	result  tasks.Result
	dest    string
	upload  bool        // content differs or the file is missing
	perm    fs.FileMode // mode for the upload
	owner   string      // owner for the upload ("user[:group]")
	attrCmd []string    // commands fixing attributes when the content is equal
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// planPut decides what putting data at dest would change, read-only.
func planPut(ctx context.Context, env *tasks.Env, dest string, data payload) (putPlan, error) {
	if err := checkPath(dest); err != nil {
		return putPlan{}, fmt.Errorf("dest: %w", err)
	}
	at, err := readAttrs(env.Args)
	if err != nil {
		return putPlan{}, err
	}
	secret, err := env.Args.Bool("secret", false)
	if err != nil {
		return putPlan{}, err
	}
	secret = secret || data.secret
	sum := data.sum
	p := putPlan{dest: dest}
	p.result.Data = map[string]any{"dest": dest, "checksum": sum, "size": data.size}
	fi, ok, err := exists(ctx, env.Conn, dest)
	if err != nil {
		return p, err
	}
	if ok && fi.IsDir() {
		return p, fmt.Errorf("dest %s is a directory; name the file", dest)
	}
	if secret && !at.hasMode {
		// Secret content is for its owner alone unless a mode says otherwise.
		at.hasMode, at.mode = true, 0o600
		if ok {
			at.mode = modeBits(fi.Mode()) &^ 0o077
		}
	}
	var what []string
	if !ok {
		p.upload = true
		what = append(what, "create "+dest)
	} else {
		remote, err := env.Conn.Checksum(ctx, dest)
		if err != nil {
			return p, fmt.Errorf("checksum %s: %w", dest, err)
		}
		if remote != sum {
			p.upload = true
			what = append(what, "replace content of "+dest)
		}
	}
	switch {
	case at.hasMode:
		p.perm = at.mode
	case ok:
		p.perm = modeBits(fi.Mode())
	default:
		p.perm = 0o644
	}
	if at.owner != "" {
		p.owner = at.owner
		if at.group != "" {
			p.owner += ":" + at.group
		}
	}
	if ok {
		cmds, w, err := attrChanges(ctx, env.Conn, dest, fi, at)
		if err != nil {
			return p, err
		}
		what = append(what, w...)
		if !p.upload {
			p.attrCmd = cmds
		} else if at.owner == "" && at.group != "" {
			p.attrCmd = cmds // chgrp after the upload
		}
	} else if at.owner == "" && at.group != "" {
		p.attrCmd = []string{"chgrp " + Quote(at.group) + " -- " + Quote(dest)}
	}
	p.result.Changed = len(what) > 0
	if p.result.Changed {
		p.result.Msg = strings.Join(what, ", ")
	}
	if p.upload && env.Diff && !secret && !env.NoLog {
		var old []byte
		if fi != nil && fi.Size() > maxDiffSize || data.size > maxDiffSize {
			p.result.Diff = fmt.Sprintf("(%s: too large to diff)\n", dest)
		} else if ok {
			var buf bytes.Buffer
			if err := env.Conn.Download(ctx, dest, &buf); err != nil {
				return p, fmt.Errorf("read %s for diff: %w", dest, err)
			}
			old = buf.Bytes()
		}
		if p.result.Diff == "" {
			b, err := data.bytes()
			if err != nil {
				return p, err
			}
			p.result.Diff = unifiedDiff(dest, old, b, ok)
		}
	}
	return p, nil
}

// applyPut puts data at dest when planPut says so. With validate, the new
// content goes to a temporary file beside dest first, the validate command
// runs on it (%s is its path), and only a file that passed is renamed over
// dest; otherwise dest is left as it was.
func applyPut(ctx context.Context, env *tasks.Env, dest string, data payload) (tasks.Result, error) {
	validate, err := env.Args.String("validate")
	if err != nil {
		return tasks.Result{}, err
	}
	if validate != "" && !strings.Contains(validate, "%s") {
		return tasks.Result{}, fmt.Errorf("validate %q must contain %%s, the path of the file to check", validate)
	}
	p, err := planPut(ctx, env, dest, data)
	if err != nil || !p.result.Changed {
		return p.result, err
	}
	if p.upload && validate != "" {
		if res, err := validatedPut(ctx, env, p, data, validate); err != nil || res.Failed {
			return res, err
		}
	} else if p.upload {
		if err := data.upload(ctx, env.Conn, dest, p.perm, p.owner); err != nil {
			return p.result, err
		}
	}
	for _, c := range p.attrCmd {
		if _, err := mustRun(ctx, env.Conn, c); err != nil {
			return p.result, err
		}
	}
	return p.result, nil
}

// validatedPut uploads to a temporary sibling of dest, validates it and
// renames it into place. A failed validation is a failed Result with the
// command's output; the temporary file is removed in every failing case.
func validatedPut(ctx context.Context, env *tasks.Env, p putPlan, data payload, validate string) (tasks.Result, error) {
	// One fixed name per dest, in the temp file pattern of Conn.Upload
	// (".BASE.kmsctl-tmp-"): a copy left by an interrupted run is replaced
	// by the next validated copy, or removed by the next plain upload.
	tmp := path.Join(path.Dir(p.dest), "."+path.Base(p.dest)+".kmsctl-tmp-validate")
	cleanup := func(cause error) error {
		if err := env.Conn.Remove(context.WithoutCancel(ctx), tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return errors.Join(cause, fmt.Errorf("remove %s: %w", tmp, err))
		}
		return cause
	}
	rc, err := data.open()
	if err != nil {
		return p.result, err
	}
	sum, err := env.Conn.Upload(ctx, tmp, rc, data.sum, p.perm, p.owner)
	rc.Close()
	if err != nil {
		return p.result, cleanup(fmt.Errorf("upload %s: %w", tmp, err))
	}
	if sum != data.sum {
		return p.result, cleanup(fmt.Errorf("upload %s: checksum mismatch: planned %s, landed %s", tmp, data.sum, sum))
	}
	cmd := strings.ReplaceAll(validate, "%s", Quote(tmp))
	res, err := runCmd(ctx, env.Conn, cmd, nil)
	if err != nil {
		return p.result, cleanup(fmt.Errorf("validate %s: %w", p.dest, err))
	}
	if res.RC != 0 {
		r := p.result
		r.Changed, r.Failed, r.RC, r.Stdout, r.Stderr = false, true, res.RC, res.Stdout, res.Stderr
		r.Msg = fmt.Sprintf("validation of the new %s failed (exit %d), the file was left unchanged: %s", p.dest, res.RC, lastLine(strings.TrimSpace(res.Stderr)))
		return r, cleanup(nil)
	}
	if _, err := mustRun(ctx, env.Conn, "mv -f -- "+Quote(tmp)+" "+Quote(p.dest)); err != nil {
		return p.result, cleanup(fmt.Errorf("rename %s into place: %w", p.dest, err))
	}
	return p.result, nil
}
