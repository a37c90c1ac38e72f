package kmsmodules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/safepath"
	"github.com/kmsctl/kmsctl/tasks"
)

// teardownModule is kms_teardown: it removes from the task host what
// `kmsctl provision` put there, and nothing else: the paths of the node's
// layout (its kms_* variables), in this order:
//
//  1. the env file (kms_env_file), which holds the HSM key: first, so that
//     a teardown cut short never leaves the key behind the other files;
//  2. the TLS private key (kms_certs_dir/private.key), the other secret;
//  3. the storage path (kms_storage_path), with everything in it: the only
//     tree it removes, and only when the dangerous-path rule (safepath)
//     allows it with the node's config, env file, certificates, binary and
//     unit protected;
//  4. the config file (kms_config_file), the certificate and the CA
//     (kms_certs_dir/public.crt, ca.crt);
//  5. the systemd unit file (kms_unit_file; the service disabled first when
//     it is enabled, systemd reloaded after), then the binary (kms_binary);
//  6. the certificates directory and then the config file's directory when
//     that is the certificates directory's parent (/etc/minkms by default),
//     each only when nothing but the paths above is in it, and then by
//     rmdir (a file someone else put there stays, and so does the
//     directory).
//
// The service user is left in place (it owns nothing kms_teardown leaves).
//
// Refusals (a safety refusal, nothing removed): the node's service is
// running (active, activating, reloading or deactivating) or its state
// cannot be read; the node's Key Manager answers (a running member of a
// cluster, or a node on its own); a path of the layout that is not
// absolute and clean, is "/", lies in an SSH directory or is a directory
// where a file belongs; a storage path the dangerous-path rule refuses; a
// unit file whose name is not the service's; an env file that sets no
// MINIO_KMS_HSM_KEY (not the node's env file). It reaches the node's API
// with the admin API key, as the other modules do.
//
// After removing, it verifies: no path of the layout exists any more, and
// no file left in the layout's directories (a certificates or config
// directory kept because it was not empty) holds the HSM key (the key read
// from the env file, else the operator's when it can be read). A key found
// fails the task with a tasks.VerificationError (exit 7). It is ok,
// changing nothing, when nothing of the layout is left.
type teardownModule struct{ m *mods }

func (teardownModule) Spec() tasks.Spec {
	return tasks.Spec{Args: map[string]tasks.ArgSpec{}}
}

// teardownKind is how one path of the layout is removed.
type teardownKind int

const (
	tdFile     teardownKind = iota // a regular file (or a symlink): removed
	tdTree                         // the storage path: removed with everything in it
	tdEmptyDir                     // a directory: removed only when empty
	tdLeftover                     // an upload's temp copy left by an interrupted run: removed
)

// uploadTempMarker marks the temp copies the remote package uploads through
// (".BASE.kmsctl-tmp-RANDOM" beside the target, a file or a private
// directory): a run cut off between the upload and its rename leaves one,
// and the env file's holds the HSM key.
const uploadTempMarker = ".kmsctl-tmp-"

// teardownPath is one path of the node's layout, in the order removed.
type teardownPath struct {
	What    string
	Path    string
	Kind    teardownKind
	present bool
}

// teardown is what kms_teardown found on the host.
type teardown struct {
	host    string
	service string
	enabled bool // the service is enabled: disabled before its unit file goes
	paths   []teardownPath
	kept    []string // directories of the layout that hold other files: kept
	key     hsm.Key  // the HSM key to look for afterwards; zero = unknown
	keyFrom string   // where key came from
}

func (t teardown) present() []teardownPath {
	var out []teardownPath
	for _, p := range t.paths {
		if p.present {
			out = append(out, p)
		}
	}
	return out
}

func (t teardown) data() map[string]any {
	d := map[string]any{}
	if len(t.kept) > 0 {
		d["kept"] = anyStrings(t.kept)
	}
	if !t.key.IsZero() {
		d["fingerprint"] = t.key.Fingerprint()
	}
	return d
}

func (m teardownModule) Plan(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	t, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	todo := t.present()
	d := t.data()
	if len(todo) == 0 && !t.enabled {
		d["removed"] = []any{}
		return tasks.Result{Msg: "nothing of the node's layout is left on " + t.host, Data: d}, nil
	}
	var what []any
	var names []string
	for _, p := range todo {
		what = append(what, p.Path)
		names = append(names, p.Path)
	}
	d["would_remove"] = what
	msg := "would remove " + strings.Join(names, ", ")
	if t.enabled {
		msg = "would disable " + t.service + " and remove " + strings.Join(names, ", ")
	}
	return tasks.Result{Changed: true, Msg: msg, Data: d}, nil
}

func (m teardownModule) Apply(ctx context.Context, env *tasks.Env) (tasks.Result, error) {
	t, err := m.plan(ctx, env)
	if err != nil {
		return tasks.Result{}, err
	}
	d := t.data()
	var removed []any
	changed := false
	if t.enabled {
		if err := run(ctx, env.Conn, "systemctl disable -- "+shellQuote(t.service)); err != nil {
			return tasks.Result{}, fmt.Errorf("disable %s on %s: %w", t.service, t.host, err)
		}
		changed = true
	}
	unitGone := false
	for _, p := range t.present() {
		var err error
		switch p.Kind {
		case tdFile:
			err = env.Conn.Remove(ctx, p.Path)
			if errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		case tdTree, tdLeftover:
			err = run(ctx, env.Conn, "rm -rf -- "+shellQuote(p.Path))
		case tdEmptyDir:
			// rmdir removes it only when it is empty: a file that
			// appeared since the plan stays, and so does the directory.
			err = run(ctx, env.Conn, "rmdir -- "+shellQuote(p.Path))
		}
		if err != nil {
			d["removed"] = removed
			return tasks.Result{Changed: changed || len(removed) > 0, Data: d},
				fmt.Errorf("remove the %s %s on %s (removed before it: %v): %w", p.What, p.Path, t.host, removed, err)
		}
		removed = append(removed, p.Path)
		changed = true
		if p.What == "unit file" {
			unitGone = true
		}
	}
	if unitGone {
		if err := run(ctx, env.Conn, "systemctl daemon-reload"); err != nil {
			return tasks.Result{Changed: true, Data: d}, fmt.Errorf("reload systemd on %s after removing the unit file: %w", t.host, err)
		}
	}
	if removed == nil {
		removed = []any{}
	}
	d["removed"] = removed
	if err := m.verify(ctx, env, t); err != nil {
		return tasks.Result{Changed: changed, Failed: true, Msg: err.Error(), Data: d}, &tasks.VerificationError{Err: err}
	}
	msg := fmt.Sprintf("removed %d paths of the node's layout from %s, the env file with the HSM key first", len(removed), t.host)
	if !changed {
		msg = "nothing of the node's layout is left on " + t.host
	}
	if len(t.kept) > 0 {
		msg += fmt.Sprintf("; kept %s (it holds files that are not the node's; no HSM key in them)", strings.Join(t.kept, ", "))
	}
	return tasks.Result{Changed: changed, Msg: msg, Data: d}, nil
}

// plan checks that the node is not running and that its layout is one
// kms_teardown may remove, and finds which of its paths are there.
func (m teardownModule) plan(ctx context.Context, env *tasks.Env) (teardown, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return teardown{}, fmt.Errorf("host %s is not an inventory host: kms_teardown needs its kms_* variables", env.Host.Name)
	}
	if env.Conn == nil {
		return teardown{}, fmt.Errorf("host %s: kms_teardown needs the host's connection", ih.Name)
	}
	n := ih.KMS
	t := teardown{host: ih.Name, service: n.Service, paths: teardownLayout(n)}
	if err := checkTeardownLayout(n, t.paths); err != nil {
		return teardown{}, err
	}
	if err := m.notRunning(ctx, env, &t, n); err != nil {
		return teardown{}, err
	}
	if err := t.addLeftovers(ctx, env.Conn); err != nil {
		return teardown{}, err
	}
	for i, p := range t.paths {
		fi, err := env.Conn.Stat(ctx, p.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return teardown{}, fmt.Errorf("stat the %s %s on %s: %w", p.What, p.Path, t.host, err)
		case p.Kind == tdFile && fi.IsDir():
			return teardown{}, &refusal{fmt.Sprintf("refused: the %s %s on %s is a directory; kms_teardown removes only the files of the node's layout (check %s's kms_* variables); nothing was removed",
				p.What, p.Path, t.host, t.host)}
		case (p.Kind == tdTree || p.Kind == tdEmptyDir) && !fi.IsDir():
			return teardown{}, &refusal{fmt.Sprintf("refused: the %s %s on %s is not a directory; check %s's kms_* variables; nothing was removed",
				p.What, p.Path, t.host, t.host)}
		}
		if p.Kind == tdEmptyDir {
			ours, err := onlyLayout(ctx, env.Conn, p.Path, t.paths[:i])
			if err != nil {
				return teardown{}, fmt.Errorf("%s: %w", t.host, err)
			}
			if !ours {
				t.kept = append(t.kept, p.Path)
				continue
			}
		}
		t.paths[i].present = true
	}
	if t.paths[0].present {
		k, err := readNodeHSMKey(ctx, env, n.EnvFile)
		if err != nil {
			return teardown{}, &refusal{fmt.Sprintf("refused: %s on %s is not a Key Manager env file kms_teardown can remove (%v); check kms_env_file; nothing was removed",
				n.EnvFile, t.host, err)}
		}
		t.key, t.keyFrom = k, n.EnvFile
	} else if k, err := m.m.hsmKey(ctx, env, n); err == nil {
		t.key, t.keyFrom = k, "the operator's HSM key"
	}
	return t, nil
}

// addLeftovers puts, right after each file of the layout, the temp copies
// of it that an interrupted upload left beside it (uploadTempMarker), so
// that they are removed with it (the env file's first) and verified gone.
func (t *teardown) addLeftovers(ctx context.Context, c tasks.Conn) error {
	listed := map[string][]string{}
	var out []teardownPath
	for _, p := range t.paths {
		out = append(out, p)
		if p.Kind != tdFile {
			continue
		}
		dir := path.Dir(p.Path)
		files, seen := listed[dir]
		if !seen {
			fi, err := c.Stat(ctx, dir)
			if err == nil && fi.IsDir() {
				if files, err = list(ctx, c, dir); err != nil {
					return fmt.Errorf("look for interrupted uploads on %s: %w", t.host, err)
				}
			} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("look for interrupted uploads on %s: stat %s: %w", t.host, dir, err)
			}
			listed[dir] = files
		}
		prefix := "." + path.Base(p.Path) + uploadTempMarker
		var found []string
		for _, f := range files {
			first, _, _ := strings.Cut(strings.TrimPrefix(f, dir+"/"), "/")
			if strings.HasPrefix(first, prefix) && !slices.Contains(found, dir+"/"+first) {
				found = append(found, dir+"/"+first)
			}
		}
		for _, f := range found {
			out = append(out, teardownPath{What: "interrupted upload of the " + p.What, Path: f, Kind: tdLeftover})
		}
	}
	t.paths = out
	return nil
}

// teardownLayout is the node's layout in the order kms_teardown removes it:
// the env file with the HSM key first.
func teardownLayout(n inventory.KMSNode) []teardownPath {
	ps := []teardownPath{
		{What: "env file", Path: n.EnvFile, Kind: tdFile},
		{What: "TLS private key", Path: n.CertsDir + "/private.key", Kind: tdFile},
		{What: "storage path", Path: n.StoragePath, Kind: tdTree},
		{What: "config file", Path: n.ConfigFile, Kind: tdFile},
		{What: "certificate", Path: n.CertsDir + "/public.crt", Kind: tdFile},
		{What: "CA certificate", Path: n.CertsDir + "/ca.crt", Kind: tdFile},
		{What: "unit file", Path: n.UnitFile, Kind: tdFile},
		{What: "binary", Path: n.Binary, Kind: tdFile},
		{What: "certificates directory", Path: n.CertsDir, Kind: tdEmptyDir},
	}
	if cd := path.Dir(n.ConfigFile); cd == path.Dir(n.CertsDir) && strings.Count(cd, "/") >= 2 {
		ps = append(ps, teardownPath{What: "config directory", Path: cd, Kind: tdEmptyDir})
	}
	return ps
}

// checkTeardownLayout refuses a layout kms_teardown must not act on.
func checkTeardownLayout(n inventory.KMSNode, ps []teardownPath) error {
	refuse := func(format string, a ...any) error {
		return &refusal{fmt.Sprintf("refused: host %s: ", n.Host) + fmt.Sprintf(format, a...) + "; nothing was removed"}
	}
	for _, p := range ps {
		switch {
		case p.Path == "" || !path.IsAbs(p.Path) || path.Clean(p.Path) != p.Path:
			return refuse("the %s %q is not an absolute, clean path (check its kms_* variable)", p.What, p.Path)
		case p.Path == "/":
			return refuse("the %s is /", p.What)
		case slices.Contains(strings.Split(p.Path, "/"), ".ssh"):
			return refuse("the %s %s is in an SSH directory", p.What, p.Path)
		}
	}
	protected := []string{n.ConfigFile, n.EnvFile, n.CertsDir, n.Binary, n.UnitFile}
	if err := safepath.Check(n.StoragePath, protected); err != nil {
		return refuse("kms_storage_path: %v", err)
	}
	if unit := path.Base(n.UnitFile); unit != n.Service && unit != n.Service+".service" {
		return refuse("the unit file %s is not named after the service %s (kms_unit_file, kms_service)", n.UnitFile, n.Service)
	}
	return nil
}

// notRunning refuses a node whose service runs or whose Key Manager
// answers, and notes whether the service is enabled.
func (m teardownModule) notRunning(ctx context.Context, env *tasks.Env, t *teardown, n inventory.KMSNode) error {
	out, err := output(ctx, env.Conn, "systemctl show --property=LoadState,ActiveState,SubState,UnitFileState -- "+shellQuote(n.Service))
	if err != nil {
		return &refusal{fmt.Sprintf("refused: the state of %s on %s cannot be read (%v); kms_teardown removes only a stopped node; nothing was removed", n.Service, t.host, err)}
	}
	props := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			props[k] = v
		}
	}
	switch props["ActiveState"] {
	case "inactive", "failed":
	case "":
		return &refusal{fmt.Sprintf("refused: systemd gave no state for %s on %s; kms_teardown removes only a stopped node; nothing was removed", n.Service, t.host)}
	default:
		return &refusal{fmt.Sprintf("refused: %s is %s on %s: a running Key Manager node. Remove it from its cluster first (kmsctl scale remove %s), "+
			"or stop its service if it is no member; nothing was removed", n.Service, props["ActiveState"], t.host, t.host)}
	}
	t.enabled = props["UnitFileState"] == "enabled" || props["UnitFileState"] == "enabled-runtime"
	a, err := m.m.open(ctx, env)
	if err != nil {
		return fmt.Errorf("kms_teardown asks the node's Key Manager whether it still runs: %w", err)
	}
	defer a.close()
	pctx, cancel := context.WithTimeout(ctx, targetProbe)
	v := kms.View(pctx, a.client, a.self)
	cancel()
	if v.Err == nil {
		return &refusal{fmt.Sprintf("refused: the Key Manager at %s answers as node %d of a cluster of %d (its service %s is %s): a running node. "+
			"Remove it from its cluster first (kmsctl scale remove %s) and stop what serves it; nothing was removed",
			a.self, v.ID, len(v.Members), n.Service, props["ActiveState"], t.host)}
	}
	return nil
}

// verify checks that no path of the layout is left and that no file left
// in the layout's directories holds the HSM key.
func (m teardownModule) verify(ctx context.Context, env *tasks.Env, t teardown) error {
	var dirs []string
	for _, p := range t.paths {
		_, err := env.Conn.Stat(ctx, p.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("verify the teardown of %s: stat %s: %w", t.host, p.Path, err)
		case p.Kind != tdEmptyDir:
			return fmt.Errorf("verify the teardown of %s: the %s %s is still there", t.host, p.What, p.Path)
		}
		dirs = append(dirs, p.Path)
	}
	if len(dirs) == 0 || t.key.IsZero() {
		return nil
	}
	needle := []byte(t.key.Text()[len(hsm.Prefix):])
	for _, dir := range dirs {
		files, err := list(ctx, env.Conn, dir)
		if err != nil {
			return fmt.Errorf("verify the teardown of %s: %w", t.host, err)
		}
		for _, f := range files {
			s := &searcher{needle: needle}
			if err := env.Conn.Download(ctx, f, s); err != nil {
				return fmt.Errorf("verify the teardown of %s: read %s: %w", t.host, f, err)
			}
			if s.found {
				return fmt.Errorf("verify the teardown of %s: %s holds the HSM key %s (%s); remove it by hand", t.host, f, t.key.Fingerprint(), t.keyFrom)
			}
		}
	}
	return nil
}

// list lists every regular file below dir on the host.
func list(ctx context.Context, c tasks.Conn, dir string) ([]string, error) {
	out, err := output(ctx, c, "find "+shellQuote(dir)+" -type f")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var ps []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			ps = append(ps, l)
		}
	}
	return ps, nil
}

// onlyLayout reports whether everything below dir on the host is a path of
// before (the layout's paths removed before dir) or below one of its
// directories that is removed: then dir is empty once they are gone.
func onlyLayout(ctx context.Context, c tasks.Conn, dir string, before []teardownPath) (bool, error) {
	out, err := output(ctx, c, "find "+shellQuote(dir))
	if err != nil {
		return false, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range strings.Split(out, "\n") {
		if e == "" || e == dir {
			continue
		}
		if !slices.ContainsFunc(before, func(p teardownPath) bool {
			return p.Path == e || p.present && p.Kind != tdFile && strings.HasPrefix(e, p.Path+"/")
		}) {
			return false, nil
		}
	}
	return true, nil
}

// searcher is an io.Writer that notes whether what it is written holds
// needle, across writes.
type searcher struct {
	needle []byte
	tail   []byte
	found  bool
}

func (s *searcher) Write(p []byte) (int, error) {
	if s.found {
		return len(p), nil
	}
	buf := append(s.tail, p...)
	if bytes.Contains(buf, s.needle) {
		s.found = true
		return len(p), nil
	}
	if keep := len(s.needle) - 1; len(buf) > keep {
		buf = buf[len(buf)-keep:]
	}
	s.tail = append(s.tail[:0], buf...)
	return len(p), nil
}

// run runs cmd on c and fails on a non-zero exit, with its standard error.
func run(ctx context.Context, c tasks.Conn, cmd string) error {
	_, err := output(ctx, c, cmd)
	return err
}

// output runs cmd on c and returns its standard output; a non-zero exit is
// an error with its standard error.
func output(ctx context.Context, c tasks.Conn, cmd string) (string, error) {
	var stdout, stderr bytes.Buffer
	if err := c.Run(ctx, cmd, nil, &stdout, &stderr); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("%s: %w: %s", cmd, err, msg)
		}
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return stdout.String(), nil
}

// shellQuote quotes s for a POSIX shell (as modules.Quote does): unchanged
// when it holds only safe characters, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func anyStrings(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
