package modules

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/kmsctl/kmsctl/tasks"
)

// fileModule manages a path's existence, kind, mode and ownership:
// state directory (mkdir -p), absent (rm -rf), touch (create if missing),
// file (must exist; default). It refuses empty and relative paths. A path
// it removes (state absent) or changes recursively (recurse) must pass the
// dangerous-path rule (package safepath), with the host's Key Manager files
// protected: literal paths when the playbook is decoded (CheckArgs), every
// path again on the host. recurse applies owner and group to a directory's
// whole tree (mode applies to the path itself only).
type fileModule struct{}

func (fileModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{
		"path":    {Type: tasks.ArgString, Required: true, CmdLine: true},
		"state":   {Type: tasks.ArgString},
		"mode":    {Type: tasks.ArgMode, CmdLine: true},
		"owner":   {Type: tasks.ArgString, CmdLine: true},
		"group":   {Type: tasks.ArgString, CmdLine: true},
		"recurse": {Type: tasks.ArgBool},
	}}
}

// CheckArgs refuses, as the playbook is decoded, a literal path that the
// dangerous-path rule refuses for a literal state=absent or recurse, so
// that --syntax-check finds it and no host is touched. The host's Key
// Manager files are known only on the host: Plan and Apply check again.
func (fileModule) CheckArgs(args tasks.Args) error {
	if err := checkEnum(args, "state", "file", "directory", "absent", "touch"); err != nil {
		return err
	}
	if !args.Literal("path") || !args.Literal("state") || !args.Literal("recurse") {
		return nil
	}
	p, err := args.String("path")
	if err != nil {
		return err
	}
	state, err := args.String("state")
	if err != nil {
		return err
	}
	recurse, err := args.Bool("recurse", false)
	if err != nil {
		return err
	}
	if state != "absent" && !recurse {
		return nil
	}
	if err := checkDestructive(nil, p); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	return nil
}

// filePlan is the commands file would run and what they change.
type filePlan struct {
	cmds []string
	what []string
	path string
}

func (fileModule) plan(ctx context.Context, env *tasks.Env) (filePlan, error) {
	p, err := env.Args.String("path")
	if err != nil {
		return filePlan{}, err
	}
	state, err := env.Args.String("state")
	if err != nil {
		return filePlan{}, err
	}
	if state == "" {
		state = "file"
	}
	recurse, err := env.Args.Bool("recurse", false)
	if err != nil {
		return filePlan{}, err
	}
	if recurse && state != "directory" {
		return filePlan{}, fmt.Errorf("recurse needs state=directory")
	}
	check := checkPath(p)
	if state == "absent" || recurse {
		check = checkDestructive(env.Vars, p)
	}
	if check != nil {
		return filePlan{}, fmt.Errorf("path: %w", check)
	}
	// Act on the path that was checked: a trailing slash would make rm,
	// chmod and chown -R follow a symlink at p.
	p = path.Clean(p)
	at, err := readAttrs(env.Args)
	if err != nil {
		return filePlan{}, err
	}
	fp := filePlan{path: p}
	fi, ok, err := exists(ctx, env.Conn, p)
	if err != nil {
		return fp, err
	}
	q := Quote(p)
	switch state {
	case "absent":
		if ok {
			fp.cmds = append(fp.cmds, "rm -rf -- "+q)
			fp.what = append(fp.what, "remove "+p)
		}
		return fp, nil
	case "directory":
		if ok && !fi.IsDir() {
			return fp, fmt.Errorf("%s exists and is not a directory", p)
		}
		if !ok {
			fp.cmds = append(fp.cmds, "mkdir -p -- "+q)
			fp.what = append(fp.what, "create directory "+p)
		}
	case "touch":
		if !ok {
			fp.cmds = append(fp.cmds, "touch -- "+q)
			fp.what = append(fp.what, "create file "+p)
		}
	case "file":
		if !ok {
			return fp, fmt.Errorf("%s does not exist (use state: touch to create it, or copy)", p)
		}
		if fi.IsDir() {
			return fp, fmt.Errorf("%s is a directory, not a file (use state: directory)", p)
		}
	default:
		return fp, fmt.Errorf("state %q: want file, directory, absent or touch", state)
	}
	if !ok {
		// Created just now: set everything that was asked.
		if at.hasMode {
			fp.cmds = append(fp.cmds, "chmod "+modeString(at.mode)+" -- "+q)
		}
		if at.owner != "" || at.group != "" {
			fp.cmds = append(fp.cmds, chownCmd(at, recurse, p))
		}
		return fp, nil
	}
	cmds, what, err := attrChanges(ctx, env.Conn, p, fi, at)
	if err != nil {
		return fp, err
	}
	if recurse && (at.owner != "" || at.group != "") {
		// Does anything in the tree have another owner?
		var conds []string
		if at.owner != "" {
			conds = append(conds, "! -user "+Quote(at.owner))
		}
		if at.group != "" {
			conds = append(conds, "! -group "+Quote(at.group))
		}
		res, err := mustRun(ctx, env.Conn, "find "+q+" \\( "+strings.Join(conds, " -o ")+" \\) -print -quit")
		if err != nil {
			return fp, err
		}
		if strings.TrimSpace(res.Stdout) != "" {
			// Replace a top-level chown by the recursive one.
			kept := cmds[:0]
			for _, c := range cmds {
				if !strings.HasPrefix(c, "chown ") {
					kept = append(kept, c)
				}
			}
			cmds = append(kept, chownCmd(at, true, p))
			what = append(what, "ownership inside "+p)
		}
	}
	fp.cmds = append(fp.cmds, cmds...)
	fp.what = append(fp.what, what...)
	return fp, nil
}

func chownCmd(at attrs, recurse bool, p string) string {
	r := ""
	if recurse {
		r = "-R "
	}
	if at.owner == "" {
		return "chgrp " + r + Quote(at.group) + " -- " + Quote(p)
	}
	spec := at.owner
	if at.group != "" {
		spec += ":" + at.group
	}
	return "chown " + r + Quote(spec) + " -- " + Quote(p)
}

func (fp filePlan) result() tasks.Result {
	r := tasks.Result{Changed: len(fp.cmds) > 0, Data: map[string]any{"path": fp.path}}
	if len(fp.what) > 0 {
		r.Msg = strings.Join(fp.what, ", ")
	}
	return r
}

func (m fileModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	fp, err := m.plan(ctx, env)
	return fp.result(), err
}

func (m fileModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	fp, err := m.plan(ctx, env)
	if err != nil {
		return fp.result(), err
	}
	for _, c := range fp.cmds {
		if _, err := mustRun(ctx, env.Conn, c); err != nil {
			return fp.result(), err
		}
	}
	return fp.result(), nil
}
