package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/kmsctl/kmsctl/safepath"
	"github.com/kmsctl/kmsctl/tasks"
)

// cmdResult is the outcome of a remote command that ran.
type cmdResult struct {
	Stdout, Stderr string
	RC             int
}

// runCmd runs cmd on the host and returns its output. A non-zero exit is
// not an error (see RC); an error means the command's outcome is unknown,
// or that privilege escalation failed (an error with a BecomeFailed() bool
// method reporting true, such as remote.BecomeError): then the command never
// ran, and that error's advice is returned instead of sudo's exit status.
func runCmd(ctx context.Context, c tasks.Conn, cmd string, stdin io.Reader) (cmdResult, error) {
	var out, errb bytes.Buffer
	err := c.Run(ctx, cmd, stdin, &out, &errb)
	res := cmdResult{Stdout: out.String(), Stderr: errb.String()}
	if err != nil {
		var bf interface{ BecomeFailed() bool }
		if errors.As(err, &bf) && bf.BecomeFailed() {
			return res, fmt.Errorf("run %q: %w", cmd, err)
		}
		var es interface{ ExitStatus() int }
		if errors.As(err, &es) {
			res.RC = es.ExitStatus()
			return res, nil
		}
		return res, fmt.Errorf("run %q: %w", cmd, err)
	}
	return res, nil
}

// mustRun runs cmd and turns a non-zero exit into an error naming the
// command and its stderr.
func mustRun(ctx context.Context, c tasks.Conn, cmd string) (cmdResult, error) {
	res, err := runCmd(ctx, c, cmd, nil)
	if err != nil {
		return res, err
	}
	if res.RC != 0 {
		return res, fmt.Errorf("%s: exit status %d: %s", cmd, res.RC, strings.TrimSpace(res.Stderr))
	}
	return res, nil
}

// exists reports whether the remote path exists, and its info.
func exists(ctx context.Context, c tasks.Conn, p string) (fs.FileInfo, bool, error) {
	fi, err := c.Stat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("stat %s: %w", p, err)
	}
	return fi, true, nil
}

// ownership reads the owner user and group names of a remote path.
func ownership(ctx context.Context, c tasks.Conn, p string) (user, group string, err error) {
	res, err := mustRun(ctx, c, "stat -c '%U:%G' -- "+Quote(p))
	if err != nil {
		return "", "", fmt.Errorf("read owner of %s: %w", p, err)
	}
	u, g, ok := strings.Cut(strings.TrimSpace(res.Stdout), ":")
	if !ok {
		return "", "", fmt.Errorf("read owner of %s: unexpected output %q", p, res.Stdout)
	}
	return u, g, nil
}

// modeString formats a mode for chmod: four octal digits.
func modeString(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// modeBits keeps the permission and special bits of a mode.
func modeBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// attrs are the wanted mode and ownership of a remote path.
type attrs struct {
	mode         fs.FileMode
	hasMode      bool
	owner, group string
}

func readAttrs(a tasks.Args) (attrs, error) {
	var at attrs
	var err error
	if at.mode, at.hasMode, err = a.Mode("mode"); err != nil {
		return at, err
	}
	if at.owner, err = a.String("owner"); err != nil {
		return at, err
	}
	if at.group, err = a.String("group"); err != nil {
		return at, err
	}
	return at, nil
}

// attrChanges returns the commands that bring p (described by fi) to the
// wanted attributes, and a description of each change.
func attrChanges(ctx context.Context, c tasks.Conn, p string, fi fs.FileInfo, at attrs) (cmds, what []string, err error) {
	if at.hasMode && modeBits(fi.Mode()) != at.mode {
		cmds = append(cmds, "chmod "+modeString(at.mode)+" -- "+Quote(p))
		what = append(what, fmt.Sprintf("mode %s→%s", modeString(modeBits(fi.Mode())), modeString(at.mode)))
	}
	if at.owner != "" || at.group != "" {
		u, g, err := ownership(ctx, c, p)
		if err != nil {
			return nil, nil, err
		}
		spec := ""
		if at.owner != "" && at.owner != u {
			spec = at.owner
			what = append(what, fmt.Sprintf("owner %s→%s", u, at.owner))
		}
		if at.group != "" && at.group != g {
			if spec == "" {
				spec = u
			}
			spec += ":" + at.group
			what = append(what, fmt.Sprintf("group %s→%s", g, at.group))
		}
		if spec != "" {
			cmds = append(cmds, "chown "+Quote(spec)+" -- "+Quote(p))
		}
	}
	return cmds, what, nil
}

// checkPath refuses empty, relative and unclean ("..") paths: the check of
// every remote path a module reads or writes. Paths a module removes or
// changes recursively get checkDestructive instead.
func checkPath(p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("refusing an empty path (is a variable undefined?)")
	}
	if !path.IsAbs(p) {
		return fmt.Errorf("refusing relative path %q: give an absolute path", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("refusing path %q: it contains \"..\"", p)
		}
	}
	return nil
}

// checkDestructive is the check of a path that is removed (file
// state=absent) or whose tree is changed (file recurse, copy's chown of a
// copied directory): the dangerous-path rule of package safepath, with the
// host's Key Manager files (its kms_config_file, kms_env_file, kms_certs_dir
// and kms_binary variables) protected, and no glob characters. The rule
// checks the cleaned path, so the caller must act on path.Clean(p). A
// refusal wraps a *safepath.Error (the CLI exits 4). vars are the host's
// variables (nil as a playbook is decoded: no host yet).
func checkDestructive(vars map[string]any, p string) error {
	if err := safepath.Check(p, safepath.Protected(vars)); err != nil {
		return err
	}
	if clean := path.Clean(p); strings.ContainsAny(clean, "*?[") {
		return fmt.Errorf("refusing path %q: it contains glob characters", clean)
	}
	return nil
}
