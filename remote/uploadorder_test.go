package remote_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

// uploadOps returns the operations of the upload to target among ops: the
// temp file it created (exclusively, for writing) and the operations that
// name that temp file, its private directory (when it is not in target's
// directory) or target, in order.
func uploadOps(t *testing.T, ops []sshtest.Op, target string) (tmp string, mine []sshtest.Op) {
	t.Helper()
	prefix := filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+".kmsctl-tmp-")
	for _, op := range ops {
		if op.Kind == sshtest.OpOpen && op.Write && strings.HasPrefix(op.Path, prefix) {
			if !op.Create || !op.Excl {
				t.Errorf("temp file not created exclusively: %v", op)
			}
			tmp = op.Path
			break
		}
	}
	if tmp == "" {
		t.Fatalf("no temp file of %s opened for writing among %s", target, opsString(ops))
	}
	tmpDir := filepath.Dir(tmp)
	for _, op := range ops {
		if op.Path == tmp || op.Path == target || op.To == target || (op.Kind == sshtest.OpExec && strings.Contains(op.Cmd, tmp)) ||
			(tmpDir != filepath.Dir(target) && op.Path == tmpDir) {
			mine = append(mine, op)
		}
	}
	return tmp, mine
}

// opsString renders ops for a failure message, consecutive reads or writes
// of one file as one line.
func opsString(ops []sshtest.Op) string {
	var b strings.Builder
	for i := 0; i < len(ops); i++ {
		op, n := ops[i], ops[i].Len
		j := i
		for ; (op.Kind == sshtest.OpRead || op.Kind == sshtest.OpWrite) && j+1 < len(ops) && ops[j+1].Kind == op.Kind && ops[j+1].Path == op.Path; j++ {
			n += ops[j+1].Len
		}
		if j > i {
			op.Len = n
		}
		fmt.Fprintf(&b, "\n  %d: %v", i, op)
		if j > i {
			fmt.Fprintf(&b, " in %d requests (%d-%d)", j-i+1, i, j)
		}
		i = j
	}
	return b.String()
}

// isChecksum reports whether op hashes tmp: a read-back over SFTP or the
// hash command run on the host.
func isChecksum(op sshtest.Op, tmp string) bool {
	return (op.Kind == sshtest.OpRead && op.Path == tmp) ||
		(op.Kind == sshtest.OpExec && strings.Contains(op.Cmd, remote.SHA256Script) && strings.Contains(op.Cmd, tmp))
}

// exposed reports whether the snapshot of op shows its file where another
// user could open it: readable by group or others, in a directory they can
// search. Only the directory the file is in counts: the tests make the
// target's directory 0755, like /etc/minkms.
func exposed(op sshtest.Op) bool {
	return op.Exists && op.FileMode&0o044 != 0 && op.DirMode&0o011 != 0
}

// checkNeverExposed fails the test if the temp file tmp of an upload of a
// file others may not read (perm without o+r) was, at any moment between
// its creation and its rename, open to other users (see sshtest.Op: the
// snapshots of its ops in order cover every such moment), or if its
// private directory was not 0700 before the file was created in it.
func checkNeverExposed(t *testing.T, what string, ops []sshtest.Op, tmp string) {
	t.Helper()
	opened := false
	for _, op := range ops {
		if op.Path != tmp {
			continue
		}
		opened = opened || op.Kind == sshtest.OpOpened
		if exposed(op) {
			t.Errorf("%s: the temp file could be opened by other users at %v: mode %v in a directory of mode %v: %s", what, op, op.FileMode, op.DirMode, opsString(ops))
			return
		}
	}
	if !opened {
		t.Errorf("%s: no snapshot of the temp file right after its creation: %s", what, opsString(ops))
	}
	tmpDir := filepath.Dir(tmp)
	isOp := func(kind sshtest.OpKind, p string) func(sshtest.Op) bool {
		return func(op sshtest.Op) bool { return op.Kind == kind && op.Path == p }
	}
	mkdir := slices.IndexFunc(ops, isOp(sshtest.OpMkdir, tmpDir))
	chmod := slices.IndexFunc(ops, func(op sshtest.Op) bool {
		return op.Kind == sshtest.OpSetstat && op.Path == tmpDir && op.HasMode && op.Mode == 0o700
	})
	open := slices.IndexFunc(ops, isOp(sshtest.OpOpen, tmp))
	if mkdir < 0 || chmod < 0 || !(mkdir < chmod && chmod < open) {
		t.Errorf("%s: the private directory %s is not made (%d), then 0700 (%d), before the temp file is created (%d): %s", what, tmpDir, mkdir, chmod, open, opsString(ops))
	}
}

// An upload writes the temp file, fsyncs it, hashes it, sets its mode and
// only then renames it over the target, as the last step on the file; a
// file of up to two SFTP requests is read back, a larger one hashed on the
// host. A file that others may not read (0640, 0600) is written in a
// private directory, never open to them, and that directory is removed
// last. A checksum that fails never renames, and the temp file (and its
// directory) is removed.
func TestUploadOrderWriteFsyncChecksumRename(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, perm := range []os.FileMode{0o644, 0o640, 0o600} {
		for _, size := range []int{100, 1 << 20} {
			what := fmt.Sprintf("%d bytes, mode %04o", size, perm)
			private := perm&0o004 == 0
			target := filepath.Join(dir, "blob")
			before := len(s.Ops())
			if _, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, size)), "", perm, ""); err != nil {
				t.Fatal(err)
			}
			tmp, ops := uploadOps(t, s.Ops()[before:], target)
			tmpDir := filepath.Dir(tmp)
			if private != (tmpDir != dir) {
				t.Errorf("%s: temp file %s", what, tmp)
			}
			lastWrite, fsync, sum, chmod := -1, -1, -1, -1
			for i, op := range ops {
				switch {
				case op.Kind == sshtest.OpWrite && op.Path == tmp:
					lastWrite = i
				case op.Kind == sshtest.OpFsync && op.Path == tmp && fsync < 0:
					fsync = i
				case isChecksum(op, tmp) && sum < 0:
					sum = i
				case op.Kind == sshtest.OpSetstat && op.Path == tmp && op.Mode == perm:
					chmod = i
				}
			}
			rename := slices.IndexFunc(ops, func(op sshtest.Op) bool { return op.Kind == sshtest.OpRename })
			last := len(ops) - 1
			if private {
				last--
				if op := ops[len(ops)-1]; op.Kind != sshtest.OpRmdir || op.Path != tmpDir {
					t.Errorf("%s: the private directory %s is not removed last: %s", what, tmpDir, opsString(ops))
				}
				checkNeverExposed(t, what, ops, tmp)
			}
			switch {
			case lastWrite < 0 || fsync < 0 || sum < 0 || chmod < 0 || rename < 0:
				t.Fatalf("%s: a step is missing (write %d, fsync %d, checksum %d, chmod %d, rename %d): %s", what, lastWrite, fsync, sum, chmod, rename, opsString(ops))
			case !(lastWrite < fsync && lastWrite < sum && fsync < rename && sum < rename && chmod < rename):
				t.Errorf("%s: out of order (write %d, fsync %d, checksum %d, chmod %d, rename %d): %s", what, lastWrite, fsync, sum, chmod, rename, opsString(ops))
			case rename != last || ops[rename].Path != tmp || ops[rename].To != target:
				t.Errorf("%s: the rename of %s over the target is not the last step on it: %s", what, tmp, opsString(ops))
			}
			if (size > 64<<10) != (ops[sum].Kind == sshtest.OpExec) {
				t.Errorf("%s: hashed by %v", what, ops[sum])
			}
			if fi, err := os.Stat(target); err != nil || fi.Mode() != perm {
				t.Errorf("%s: target %v, %v", what, fi, err)
			}

			// One byte flipped on its way to the disk: checked, never renamed.
			before = len(s.Ops())
			s.CorruptNextWrite()
			if _, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, size)), "", perm, ""); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("%s, corrupted: upload = %v", what, err)
			}
			tmp, ops = uploadOps(t, s.Ops()[before:], target)
			if !slices.ContainsFunc(ops, func(op sshtest.Op) bool { return isChecksum(op, tmp) }) {
				t.Errorf("%s, corrupted: no checksum: %s", what, opsString(ops))
			}
			for _, op := range ops {
				if op.Kind == sshtest.OpRename || (op.Kind == sshtest.OpExec && strings.Contains(op.Cmd, "mv ")) {
					t.Errorf("%s, corrupted: renamed despite the checksum mismatch: %s", what, opsString(ops))
				}
			}
			removed := len(ops) - 1
			if private {
				removed--
				checkNeverExposed(t, what+", corrupted", ops, tmp)
				if op := ops[len(ops)-1]; op.Kind != sshtest.OpRmdir || op.Path != filepath.Dir(tmp) {
					t.Errorf("%s, corrupted: the private directory is not removed last: %s", what, opsString(ops))
				}
			}
			if op := ops[removed]; op.Kind != sshtest.OpRemove || op.Path != tmp {
				t.Errorf("%s, corrupted: the temp file is not removed last: %s", what, opsString(ops))
			}
			if left := tempFiles(t, dir); len(left) != 0 {
				t.Errorf("%s, corrupted: temp files left: %v", what, left)
			}
		}
	}
}
