package modules

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/kmsctl/kmsctl/tasks"
)

// statModule reads what is at a remote path and registers it under "stat":
// exists, path, isdir, isreg, islnk, size, mode ("0644"), mtime (Unix
// seconds) and, with get_checksum: true, checksum (sha256, the only
// checksum_algorithm). It never changes anything.
type statModule struct{}

func (statModule) Spec() tasks.Spec {
	return tasks.Spec{ReadOnly: true, Args: map[string]tasks.ArgSpec{
		"path":               {Type: tasks.ArgString, Required: true, CmdLine: true},
		"get_checksum":       {Type: tasks.ArgBool},
		"checksum_algorithm": {Type: tasks.ArgString},
	}}
}

// CheckArgs checks a known checksum_algorithm before any host is touched.
func (statModule) CheckArgs(args tasks.Args) error {
	return checkEnum(args, "checksum_algorithm", "sha256")
}

func (m statModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	return m.Apply(ctx, env)
}

func (statModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	p, err := env.Args.String("path")
	if err != nil {
		return tasks.Result{}, err
	}
	if err := checkPath(p); err != nil {
		return tasks.Result{}, fmt.Errorf("path: %w", err)
	}
	sum, err := env.Args.Bool("get_checksum", false)
	if err != nil {
		return tasks.Result{}, err
	}
	if alg, err := env.Args.String("checksum_algorithm"); err != nil {
		return tasks.Result{}, err
	} else if alg != "" && alg != "sha256" {
		return tasks.Result{}, fmt.Errorf("checksum_algorithm %q: only sha256 is supported", alg)
	}
	fi, ok, err := exists(ctx, env.Conn, p)
	if err != nil {
		return tasks.Result{}, err
	}
	st := map[string]any{"exists": ok, "path": p}
	msg := p + " does not exist"
	if ok {
		st["isdir"] = fi.IsDir()
		st["isreg"] = fi.Mode().IsRegular()
		st["islnk"] = fi.Mode()&fs.ModeSymlink != 0
		st["size"] = fi.Size()
		st["mode"] = modeString(modeBits(fi.Mode()))
		st["mtime"] = float64(fi.ModTime().UnixNano()) / 1e9
		msg = fmt.Sprintf("%s: %s, %d bytes, mode %s", p, kind(fi), fi.Size(), st["mode"])
		if sum && fi.Mode().IsRegular() {
			c, err := env.Conn.Checksum(ctx, p)
			if err != nil {
				return tasks.Result{}, fmt.Errorf("checksum %s: %w", p, err)
			}
			st["checksum"] = c
		}
	}
	return tasks.Result{Msg: msg, Data: map[string]any{"stat": st}}, nil
}

func kind(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "directory"
	case fi.Mode().IsRegular():
		return "file"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
