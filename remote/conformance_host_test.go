package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
)

// The host part of the conformance suite: what the files look like after
// uploads and after the command lines kmsctl's modules send. Over SSH the
// commands run in a real shell with the real coreutils; the fake emulates
// them. The assertions are those kmsctl relies on: exit status, stdout,
// and the reason on stderr (whose wording varies between coreutils and
// shells, so only its reason is compared). systemctl is not here: the
// in-process server has no systemd; the fake's systemctl is held to a
// transcript of the real one instead (remote/fake TestSystemctlTranscript).

// hostRun runs a command line the connection is expected to run itself
// (unscripted) and returns its stdout, stderr and exit status.
func hostRun(t *testing.T, c conformanceConn, cmd string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := c.conn.Run(ctx, cmd, nil, &out, &errb)
	var xs interface{ ExitStatus() int }
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &xs):
		return out.String(), errb.String(), xs.ExitStatus()
	}
	t.Fatalf("%s: %v", cmd, err)
	return "", "", 0
}

// must runs cmd and fails the test unless it succeeds with no output.
func must(t *testing.T, c conformanceConn, cmd string) {
	t.Helper()
	if out, errOut, code := hostRun(t, c, cmd); code != 0 || out != "" || errOut != "" {
		t.Errorf("%s = exit %d, stdout %q, stderr %q; want 0 and no output", cmd, code, out, errOut)
	}
}

// fails runs cmd and fails the test unless it exits with status 1 (2 for
// a shell's own error, any non-zero when code is -1), without output, and
// with reason on stderr.
func fails(t *testing.T, c conformanceConn, cmd string, code int, reason string) {
	t.Helper()
	out, errOut, got := hostRun(t, c, cmd)
	if got == 0 || (code >= 0 && got != code) || out != "" || !strings.Contains(errOut, reason) {
		t.Errorf("%s = exit %d, stdout %q, stderr %q; want exit %d and %q on stderr", cmd, got, out, errOut, code, reason)
	}
}

// stdout runs cmd and fails the test unless it succeeds and prints want.
func stdout(t *testing.T, c conformanceConn, cmd, want string) {
	t.Helper()
	if out, errOut, code := hostRun(t, c, cmd); code != 0 || out != want {
		t.Errorf("%s = exit %d, stdout %q, stderr %q; want 0 and %q", cmd, code, out, errOut, want)
	}
}

// sortedLines runs cmd and returns its stdout lines, sorted (for commands
// like find whose order is the file system's).
func sortedLines(t *testing.T, c conformanceConn, cmd string) []string {
	t.Helper()
	out, errOut, code := hostRun(t, c, cmd)
	if code != 0 {
		t.Errorf("%s = exit %d, stderr %q", cmd, code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	sort.Strings(lines)
	return lines
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// otherOwner returns a user and group other than the login user's that
// chown can give files to, or "" when the suite cannot (not root).
func otherOwner(t *testing.T) (string, string) {
	if os.Geteuid() != 0 {
		return "", ""
	}
	for _, name := range []string{"daemon", "nobody", "bin"} {
		if _, err := user.Lookup(name); err == nil {
			if _, err := user.LookupGroup(name); err == nil {
				return name, name
			}
		}
	}
	return "", ""
}

// umask022 reports whether this process's umask is 022, the one the fake
// assumes for the modes of what commands create.
func umask022(t *testing.T) bool {
	data, err := os.ReadFile("/proc/self/status")
	return err == nil && strings.Contains(string(data), "\nUmask:\t0022\n")
}

func runHostConformance(t *testing.T, newConn func(t *testing.T) conformanceConn) {
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	upload := func(t *testing.T, c conformanceConn, p, data string, perm fs.FileMode) {
		t.Helper()
		if _, err := c.conn.Upload(ctx(t), p, strings.NewReader(data), "", perm, ""); err != nil {
			t.Fatalf("Upload %s: %v", p, err)
		}
	}

	t.Run("Directories", func(t *testing.T) {
		c := newConn(t)
		d := c.dir
		must(t, c, "mkdir -p -- "+d+"/a/b "+d+"/c")
		must(t, c, "mkdir -p -- "+d+"/a/b")
		fi, err := c.conn.Stat(ctx(t), d+"/a/b")
		if err != nil || !fi.IsDir() || !fi.Mode().IsDir() || fi.Name() != "b" {
			t.Fatalf("Stat of a directory = %v, %v; want a directory named b", fi, err)
		}
		if umask022(t) && fi.Mode().Perm() != 0o755 {
			t.Errorf("mkdir -p made mode %v, want drwxr-xr-x", fi.Mode())
		}
		upload(t, c, d+"/f", "file", 0o644)
		fails(t, c, "mkdir -p -- "+d+"/f", 1, "File exists")
		fails(t, c, "mkdir -p -- "+d+"/f/x", 1, "Not a directory")
		fails(t, c, "mkdir -- "+d+"/c", 1, "File exists")
		fails(t, c, "mkdir -- "+d+"/x/y", 1, "No such file or directory")
		must(t, c, "mkdir -- "+d+"/x")

		// The file operations refuse a directory, and leave it as it was.
		err = c.conn.Remove(ctx(t), d+"/c")
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove of a directory = %v, want an error (not fs.ErrNotExist)", err)
		}
		if _, err := c.conn.Checksum(ctx(t), d+"/c"); err == nil {
			t.Error("Checksum of a directory succeeded")
		}
		if err := c.conn.Download(ctx(t), d+"/c", io.Discard); err == nil {
			t.Error("Download of a directory succeeded")
		}
		if _, err := c.conn.Upload(ctx(t), d+"/c", strings.NewReader("x"), "", 0o644, ""); err == nil {
			t.Error("Upload over a directory succeeded")
		}
		if fi, err := c.conn.Stat(ctx(t), d+"/c"); err != nil || !fi.IsDir() {
			t.Errorf("after the refused operations, Stat = %v, %v; want the directory", fi, err)
		}
		_, err = c.conn.Upload(ctx(t), d+"/missing/f", strings.NewReader("x"), "", 0o644, "")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Upload into a missing directory = %v, want fs.ErrNotExist", err)
		}
		if got := strings.Join(c.list(t), ","); got != "a,c,f,x" {
			t.Errorf("entries of the directory = %s, want a,c,f,x (no temp files)", got)
		}
	})

	// An upload first removes what interrupted uploads of the same target
	// left next to it: temp files, and private temp directories (named
	// with 16 hex digits) with the file in them; nothing else.
	t.Run("UploadRemovesStaleTemps", func(t *testing.T) {
		c := newConn(t)
		d := c.dir
		staleDir, otherDir, notOurs := d+"/.f.kmsctl-tmp-0123456789abcdef", d+"/.g.kmsctl-tmp-0123456789abcdef", d+"/.f.kmsctl-tmp-keep"
		must(t, c, "mkdir -- "+staleDir+" "+otherDir+" "+notOurs)
		must(t, c, "touch -- "+staleDir+"/f "+d+"/.f.kmsctl-tmp-x "+otherDir+"/g "+notOurs+"/k")
		const want = ".f.kmsctl-tmp-keep,.g.kmsctl-tmp-0123456789abcdef"
		src := &confFailAfter{data: []byte("x"), err: errors.New("source broke")}
		if _, err := c.conn.Upload(ctx(t), d+"/f", src, "", 0o600, ""); err == nil {
			t.Fatal("Upload from a failing reader succeeded")
		}
		if got := strings.Join(c.list(t), ","); got != want {
			t.Errorf("after a failed upload of f, the entries are %s; want %s", got, want)
		}
		must(t, c, "mkdir -- "+staleDir)
		must(t, c, "touch -- "+staleDir+"/f")
		upload(t, c, d+"/f", "secret", 0o600)
		if got := strings.Join(c.list(t), ","); got != want+",f" {
			t.Errorf("after an upload of f, the entries are %s; want %s,f", got, want)
		}
		stdout(t, c, "stat -c '%a %s' -- "+d+"/f", "600 6\n")
		stdout(t, c, "stat -c %s -- "+notOurs+"/k", "0\n")
	})

	t.Run("StatChmodChown", func(t *testing.T) {
		c := newConn(t)
		p := c.dir + "/f"
		upload(t, c, p, "hello", 0o640)
		stdout(t, c, "stat -c '%U:%G' -- "+p, c.user+":"+c.group+"\n")
		stdout(t, c, "stat -c '%a %s %n' -- "+p, "640 5 "+p+"\n")
		must(t, c, "chmod 4755 -- "+p)
		stdout(t, c, "stat -c %a -- "+p, "4755\n")
		if fi, err := c.conn.Stat(ctx(t), p); err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&fs.ModeSetuid == 0 {
			t.Errorf("Stat after chmod 4755 = %v, %v; want -rwsr-xr-x", fi, err)
		}
		must(t, c, "chmod 0600 -- "+p)
		if fi, err := c.conn.Stat(ctx(t), p); err != nil || fi.Mode() != 0o600 {
			t.Errorf("Stat after chmod 0600 = %v, %v", fi, err)
		}
		must(t, c, "chown "+c.user+":"+c.group+" -- "+p)
		must(t, c, "chgrp "+c.group+" -- "+p)
		for _, cmd := range []string{"stat -c '%U:%G' --", "chmod 0644 --", "chown " + c.user + " --", "chgrp -R " + c.group + " --"} {
			fails(t, c, cmd+" "+c.dir+"/missing", 1, "No such file or directory")
		}

		u, g := otherOwner(t)
		if u == "" {
			t.Log("not root: ownership changes to another user are not checked")
			return
		}
		// Upload gives the new file to owner, then chown -R and find.
		if _, err := c.conn.Upload(ctx(t), p, strings.NewReader("x"), "", 0o644, u+":"+g); err != nil {
			t.Fatal(err)
		}
		stdout(t, c, "stat -c '%U:%G' -- "+p, u+":"+g+"\n")
		if _, err := c.conn.Upload(ctx(t), p, strings.NewReader("y"), "", 0o644, ""); err != nil {
			t.Fatal(err)
		}
		stdout(t, c, "stat -c '%U:%G' -- "+p, c.user+":"+c.group+"\n")
		tree := c.dir + "/t"
		must(t, c, "mkdir -p -- "+tree+"/u")
		must(t, c, "touch -- "+tree+"/u/f")
		find := "find " + tree + " \\( ! -user " + c.user + " -o ! -group " + c.group + " \\) -print -quit"
		stdout(t, c, find, "")
		must(t, c, "chown -R "+u+":"+g+" -- "+tree)
		stdout(t, c, "stat -c '%U:%G' -- "+tree+"/u/f", u+":"+g+"\n")
		stdout(t, c, find, tree+"\n")
		must(t, c, "chown "+c.user+" -- "+tree)
		must(t, c, "chgrp "+c.group+" -- "+tree)
		stdout(t, c, "stat -c '%U:%G' -- "+tree, c.user+":"+c.group+"\n")
		stdout(t, c, find, tree+"/u\n")
		stdout(t, c, "find "+tree+" \\( ! -user "+u+" \\) -print -quit", tree+"\n")
		fails(t, c, "find "+c.dir+"/missing -print -quit", 1, "No such file or directory")
	})

	t.Run("TouchRmMv", func(t *testing.T) {
		c := newConn(t)
		d := c.dir
		must(t, c, "touch -- "+d+"/n")
		fi, err := c.conn.Stat(ctx(t), d+"/n")
		if err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
			t.Fatalf("Stat after touch = %v, %v; want an empty file", fi, err)
		}
		if umask022(t) && fi.Mode() != 0o644 {
			t.Errorf("touch made mode %v, want -rw-r--r--", fi.Mode())
		}
		must(t, c, "touch -- "+d+"/n")
		fails(t, c, "touch -- "+d+"/x/n", 1, "No such file or directory")

		upload(t, c, d+"/new", "new content", 0o600)
		upload(t, c, d+"/old", "old", 0o644)
		must(t, c, "mv -f -- "+d+"/new "+d+"/old")
		var b bytes.Buffer
		if err := c.conn.Download(ctx(t), d+"/old", &b); err != nil || b.String() != "new content" {
			t.Errorf("after mv -f over a file: %q, %v", b.String(), err)
		}
		fails(t, c, "mv -f -- "+d+"/new "+d+"/old", 1, "No such file or directory")
		must(t, c, "mkdir -p -- "+d+"/tmpdir/sub")
		must(t, c, "mv -T -- "+d+"/tmpdir "+d+"/dir")
		if fi, err := c.conn.Stat(ctx(t), d+"/dir/sub"); err != nil || !fi.IsDir() {
			t.Errorf("after mv -T of a directory: %v, %v", fi, err)
		}
		must(t, c, "mv -f -- "+d+"/n "+d+"/dir")
		if _, err := c.conn.Stat(ctx(t), d+"/dir/n"); err != nil {
			t.Errorf("mv of a file onto a directory did not move it into the directory: %v", err)
		}

		fails(t, c, "rm -- "+d+"/dir", 1, "Is a directory")
		fails(t, c, "rmdir -- "+d+"/dir", 1, "Directory not empty")
		fails(t, c, "rmdir -- "+d+"/old", 1, "Not a directory")
		fails(t, c, "rmdir -- "+d+"/none", 1, "No such file or directory")
		must(t, c, "mkdir -p -- "+d+"/empty")
		must(t, c, "rmdir -- "+d+"/empty")
		if _, err := c.conn.Stat(ctx(t), d+"/empty"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after rmdir of an empty directory: Stat = %v, want not exist", err)
		}
		fails(t, c, "rm -- "+d+"/none", 1, "No such file or directory")
		must(t, c, "rm -rf -- "+d+"/none")
		must(t, c, "rm -rf -- "+d+"/dir")
		must(t, c, "rm -f -- "+d+"/old")
		if got := c.list(t); len(got) != 0 {
			t.Errorf("after rm -rf: entries %q, want none", got)
		}
	})

	t.Run("Sha256AndFind", func(t *testing.T) {
		c := newConn(t)
		d := c.dir + "/s"
		must(t, c, "mkdir -p -- "+d+"/sub")
		upload(t, c, d+"/a", "alpha", 0o644)
		upload(t, c, d+"/sub/b", "beta", 0o600)
		got := sortedLines(t, c, "cd "+d+" && find . -type f -exec sha256sum -- {} +")
		want := []string{hexSum("alpha") + "  ./a", hexSum("beta") + "  ./sub/b"}
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("sha256 of the tree =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := sortedLines(t, c, "cd "+d+" && find . -type d -printf 'd %p\\n'"); strings.Join(got, ",") != "d .,d ./sub" {
			t.Errorf("directories = %q", got)
		}
		if got := sortedLines(t, c, "cd "+d+" && find . -type f ! -perm 0644 -printf 'm %p\\n'"); strings.Join(got, ",") != "m ./sub/b" {
			t.Errorf("files of another mode = %q", got)
		}
		out, _, code := hostRun(t, c, "{ "+remote.SHA256Script+"; } < "+d+"/a")
		if f := strings.Fields(out); code != 0 || len(f) == 0 || f[0] != hexSum("alpha") {
			t.Errorf("checksum script = %q, exit %d", out, code)
		}
		fails(t, c, "{ "+remote.SHA256Script+"; } < "+d+"/none", -1, "No such file")
		fails(t, c, "cd "+d+"/none && true", -1, d+"/none")
		must(t, c, "true")
		must(t, c, "sync -- "+d+"/a")
		fails(t, c, "sync -- "+d+"/none", 1, "No such file or directory")
		if _, err := c.conn.Stat(ctx(t), path.Join(d, "a")); err != nil {
			t.Errorf("Stat: %v", err)
		}
	})

	t.Run("EchoTrueFalse", func(t *testing.T) {
		c := newConn(t)
		stdout(t, c, "echo hello 'two  words' \"k=v\"", "hello two  words k=v\n")
		stdout(t, c, "echo", "\n")
		must(t, c, "true")
		if out, errOut, code := hostRun(t, c, "false"); code != 1 || out != "" || errOut != "" {
			t.Errorf("false = exit %d, %q, %q; want 1 and no output", code, out, errOut)
		}
		if out, _, code := hostRun(t, c, "echo one && false && echo two"); code != 1 || out != "one\n" {
			t.Errorf("a && list stopping at false = exit %d, %q", code, out)
		}
	})

	t.Run("DialTCPRefused", func(t *testing.T) {
		c := newConn(t)
		_, err := c.conn.DialTCP(ctx(t), c.closedAddr)
		if err == nil {
			t.Fatalf("DialTCP to the closed port %s succeeded", c.closedAddr)
		}
		var u interface{ Unreachable() bool }
		if errors.As(err, &u) && u.Unreachable() {
			t.Errorf("a closed port reads as an unreachable host: %v", err)
		}
	})
}
