package modules

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/kmsctl/kmsctl/tasks"
)

// uploadWorkers bounds the parallel uploads of one directory copy per host.
const uploadWorkers = 4

// dirFile is one local file of a directory copy.
type dirFile struct {
	rel string // slash path relative to the copied directory
	pl  payload
}

// dirPlan is what copying a local directory to base would change.
type dirPlan struct {
	base    string
	exists  bool // base is a directory on the host
	files   []dirFile
	upload  []dirFile // missing or different on the host
	mkdirs  []string  // remote directories to create
	fixMode []string  // remote files (not uploaded) whose mode differs
	chown   bool      // ownership below base must be set
	perm    fs.FileMode
	at      attrs
	result  tasks.Result
}

// copyDirSource reports whether src names a local directory, and where it
// lands: the directory itself under dest, or with a trailing "/" its
// content directly in dest (as Ansible's copy does).
func copyDirSource(env *tasks.Env, src, dest string) (fsys fs.FS, root, base string, ok bool) {
	fsys, root = env.LocalFS(src)
	fi, err := fs.Stat(fsys, root)
	if err != nil || !fi.IsDir() {
		return nil, "", "", false
	}
	base = path.Clean(dest)
	if !strings.HasSuffix(src, "/") {
		base = path.Join(base, path.Base(root))
	}
	return fsys, root, base, true
}

func planDir(ctx context.Context, env *tasks.Env, fsys fs.FS, root, base string) (dirPlan, error) {
	if env.Args.Has("validate") {
		return dirPlan{}, errors.New("validate works on single files, not on a directory src")
	}
	at, err := readAttrs(env.Args)
	if err != nil {
		return dirPlan{}, err
	}
	// owner and group apply with chown -R to base: a recursive change.
	check := checkPath(base)
	if at.owner != "" || at.group != "" {
		check = checkDestructive(env.Vars, base)
	}
	if check != nil {
		return dirPlan{}, fmt.Errorf("dest: %w", check)
	}
	secret, err := env.Args.Bool("secret", false)
	if err != nil {
		return dirPlan{}, err
	}
	dp := dirPlan{base: base, at: at, perm: 0o644}
	if secret {
		dp.perm = 0o600
	}
	if at.hasMode {
		dp.perm = at.mode
	}
	var dirs []string
	err = fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if root == "." {
			rel = p
		}
		if d.IsDir() {
			if rel != "" && rel != "." {
				dirs = append(dirs, rel)
			}
			return nil
		}
		shown := p
		if src, _ := env.Args.String("src"); path.IsAbs(src) {
			shown = "/" + p // the file system of an absolute src is rooted at /
		}
		pl, err := fsPayload(env, fsys, p, shown)
		if err != nil {
			return err
		}
		dp.files = append(dp.files, dirFile{rel: rel, pl: pl})
		return nil
	})
	if err != nil {
		return dp, fmt.Errorf("read local directory %s: %w", root, err)
	}

	// One remote command lists directories, checksums, wrong modes and
	// wrong owners below base.
	var script strings.Builder
	script.WriteString("if [ -d " + Quote(base) + " ]; then cd " + Quote(base) + " && find . -type d -printf 'd %p\\n'")
	if at.hasMode {
		script.WriteString(" && find . -type f ! -perm " + modeString(at.mode) + " -printf 'm %p\\n'")
	}
	if at.owner != "" || at.group != "" {
		var conds []string
		if at.owner != "" {
			conds = append(conds, "! -user "+Quote(at.owner))
		}
		if at.group != "" {
			conds = append(conds, "! -group "+Quote(at.group))
		}
		script.WriteString(" && find . \\( " + strings.Join(conds, " -o ") + " \\) -printf 'o %p\\n' -quit")
	}
	script.WriteString(" && find . -type f -exec sha256sum -- {} +; fi")
	res, err := mustRun(ctx, env.Conn, script.String())
	if err != nil {
		return dp, fmt.Errorf("list %s: %w", base, err)
	}
	remoteDirs := map[string]bool{}
	remoteSums := map[string]string{}
	wrongMode := map[string]bool{}
	exists := false
	for _, l := range strings.Split(res.Stdout, "\n") {
		switch {
		case len(l) > 2 && l[1] == ' ':
			rel := strings.TrimPrefix(strings.TrimPrefix(l[2:], "."), "/")
			switch l[0] {
			case 'd':
				exists = true
				remoteDirs[rel] = true
			case 'm':
				wrongMode[rel] = true
			case 'o':
				dp.chown = true
			}
		case len(l) > 66 && l[64:66] == "  ":
			remoteSums[strings.TrimPrefix(l[66:], "./")] = l[:64]
		}
	}
	dp.exists = exists
	if !exists {
		dp.mkdirs = append(dp.mkdirs, base)
	}
	for _, d := range dirs {
		if !remoteDirs[d] {
			dp.mkdirs = append(dp.mkdirs, path.Join(base, d))
		}
	}
	for _, f := range dp.files {
		switch {
		case remoteSums[f.rel] != f.pl.sum:
			dp.upload = append(dp.upload, f)
		case wrongMode[f.rel]:
			dp.fixMode = append(dp.fixMode, path.Join(base, f.rel))
		}
	}
	if (at.owner != "" || at.group != "") && (len(dp.mkdirs) > 0 || len(dp.upload) > 0) {
		dp.chown = true // one chown -R instead of one per uploaded file
	}
	var what []string
	if len(dp.mkdirs) > 0 {
		what = append(what, fmt.Sprintf("create %d directories", len(dp.mkdirs)))
	}
	if len(dp.upload) > 0 {
		what = append(what, fmt.Sprintf("upload %d of %d files", len(dp.upload), len(dp.files)))
	}
	if len(dp.fixMode) > 0 {
		what = append(what, fmt.Sprintf("set mode of %d files", len(dp.fixMode)))
	}
	if dp.chown {
		what = append(what, "set ownership")
	}
	dp.result = tasks.Result{Changed: len(what) > 0, Data: map[string]any{"dest": base, "files": len(dp.files), "uploaded": len(dp.upload)}}
	if dp.result.Changed {
		dp.result.Msg = strings.Join(what, ", ") + " in " + base
	}
	return dp, nil
}

func applyDir(ctx context.Context, env *tasks.Env, fsys fs.FS, root, base string) (tasks.Result, error) {
	dp, err := planDir(ctx, env, fsys, root, base)
	if err != nil || !dp.result.Changed {
		return dp.result, err
	}
	if !dp.exists {
		return dp.result, newDir(ctx, env.Conn, dp)
	}
	if len(dp.mkdirs) > 0 {
		sort.Strings(dp.mkdirs)
		if _, err := mustRun(ctx, env.Conn, "mkdir -p -- "+QuoteArgs(dp.mkdirs...)); err != nil {
			return dp.result, err
		}
	}
	if err := uploadAll(ctx, env.Conn, dp); err != nil {
		return dp.result, err
	}
	if len(dp.fixMode) > 0 {
		if _, err := mustRun(ctx, env.Conn, "chmod "+modeString(dp.at.mode)+" -- "+QuoteArgs(dp.fixMode...)); err != nil {
			return dp.result, err
		}
	}
	if dp.chown {
		if _, err := mustRun(ctx, env.Conn, chownCmd(dp.at, true, base)); err != nil {
			return dp.result, err
		}
	}
	return dp.result, nil
}

// uploadAll uploads the plan's files, a few at a time, and returns every error.
func uploadAll(ctx context.Context, c tasks.Conn, dp dirPlan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan dirFile)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range min(uploadWorkers, len(dp.upload)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := f.pl.upload(ctx, c, path.Join(dp.base, f.rel), dp.perm, ""); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	for _, f := range dp.upload {
		if ctx.Err() != nil {
			break
		}
		work <- f
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// newDir creates a directory that does not exist yet in one piece: a tar
// stream unpacked into a temporary sibling directory, fsynced, checked
// file by file against the local sha256 sums, then renamed into place.
// Three remote commands instead of one upload per file, and the host sees
// the whole directory or none of it.
func newDir(ctx context.Context, c tasks.Conn, dp dirPlan) (err error) {
	parent, name := path.Dir(dp.base), path.Base(dp.base)
	// rm: the temporary directory an interrupted earlier copy left behind.
	script := "set -e; mkdir -p -- " + Quote(parent) +
		"; rm -rf -- " + Quote(parent+"/."+name+".kmsctl-") + "??????" +
		"; T=$(mktemp -d " + Quote(parent+"/."+name+".kmsctl-XXXXXX") + "); printf '%s\\n' \"$T\"" +
		"; chmod 0755 \"$T\"; tar -x -p --no-same-owner -C \"$T\" -f -" +
		"; find \"$T\" -type f -exec sync -- {} +; sync -- \"$T\""
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := writeTar(pw, dp)
		pw.CloseWithError(err)
		werr <- err
	}()
	res, err := runCmd(ctx, c, script, pr)
	pr.CloseWithError(errors.New("remote command ended"))
	tarErr := <-werr
	tmp := strings.TrimSpace(strings.SplitN(res.Stdout, "\n", 2)[0])
	cleanup := func(cause error) error {
		if strings.HasPrefix(tmp, parent+"/."+name+".kmsctl-") {
			if _, rmErr := runCmd(context.WithoutCancel(ctx), c, "rm -rf -- "+Quote(tmp), nil); rmErr != nil {
				return errors.Join(cause, fmt.Errorf("remove temporary directory %s: %w", tmp, rmErr))
			}
		}
		return cause
	}
	switch {
	case err != nil:
		return cleanup(fmt.Errorf("unpack %s: %w", dp.base, err))
	case tarErr != nil:
		return cleanup(fmt.Errorf("send %s: %w", dp.base, tarErr))
	case res.RC != 0:
		return cleanup(fmt.Errorf("unpack %s: exit status %d: %s", dp.base, res.RC, strings.TrimSpace(res.Stderr)))
	}
	sums, err := mustRun(ctx, c, "cd "+Quote(tmp)+" && find . -type f -exec sha256sum -- {} +")
	if err != nil {
		return cleanup(fmt.Errorf("verify %s: %w", dp.base, err))
	}
	got := map[string]string{}
	for _, l := range strings.Split(sums.Stdout, "\n") {
		if len(l) > 66 && l[64:66] == "  " {
			got[strings.TrimPrefix(l[66:], "./")] = l[:64]
		}
	}
	for _, f := range dp.files {
		if got[f.rel] != f.pl.sum {
			return cleanup(fmt.Errorf("verify %s: %s has sha256 %q on the host, want %s", dp.base, f.rel, got[f.rel], f.pl.sum))
		}
	}
	if dp.chown {
		if _, err := mustRun(ctx, c, chownCmd(dp.at, true, tmp)); err != nil {
			return cleanup(err)
		}
	}
	if _, err := mustRun(ctx, c, "mv -T -- "+Quote(tmp)+" "+Quote(dp.base)); err != nil {
		return cleanup(fmt.Errorf("move %s into place: %w", dp.base, err))
	}
	return nil
}

// writeTar streams the plan's directories and files as a tar archive.
func writeTar(w io.Writer, dp dirPlan) error {
	tw := tar.NewWriter(w)
	for _, d := range dp.mkdirs {
		rel := strings.TrimPrefix(strings.TrimPrefix(d, dp.base), "/")
		if rel == "" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755}); err != nil {
			return fmt.Errorf("write tar: %w", err)
		}
	}
	for _, f := range dp.files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.rel, Size: f.pl.size, Mode: int64(modeBits(dp.perm).Perm())}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar: %w", err)
		}
		rc, err := f.pl.open()
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, rc)
		cerr := rc.Close()
		if err != nil {
			return fmt.Errorf("send %s: %w", f.rel, err)
		}
		if cerr != nil {
			return fmt.Errorf("read local file %s: %w", f.rel, cerr)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write tar: %w", err)
	}
	return nil
}
