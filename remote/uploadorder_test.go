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
// name that temp file or target, in order.
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
	for _, op := range ops {
		if op.Path == tmp || op.Path == target || op.To == target || (op.Kind == sshtest.OpExec && strings.Contains(op.Cmd, tmp)) {
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

// An upload writes the temp file, fsyncs it, hashes it, sets its mode and
// only then renames it over the target, as the last step; a file of up to
// two SFTP requests is read back, a larger one hashed on the host. A
// checksum that fails never renames, and the temp file is removed.
func TestUploadOrderWriteFsyncChecksumRename(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	for _, size := range []int{100, 1 << 20} {
		target := filepath.Join(dir, "blob")
		before := len(s.Ops())
		if _, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, size)), "", 0o640, ""); err != nil {
			t.Fatal(err)
		}
		tmp, ops := uploadOps(t, s.Ops()[before:], target)
		lastWrite, fsync, sum, chmod := -1, -1, -1, -1
		for i, op := range ops {
			switch {
			case op.Kind == sshtest.OpWrite && op.Path == tmp:
				lastWrite = i
			case op.Kind == sshtest.OpFsync && op.Path == tmp && fsync < 0:
				fsync = i
			case isChecksum(op, tmp) && sum < 0:
				sum = i
			case op.Kind == sshtest.OpSetstat && op.Path == tmp && op.Mode == 0o640:
				chmod = i
			}
		}
		rename := slices.IndexFunc(ops, func(op sshtest.Op) bool { return op.Kind == sshtest.OpRename })
		switch {
		case lastWrite < 0 || fsync < 0 || sum < 0 || chmod < 0 || rename < 0:
			t.Fatalf("%d bytes: a step is missing (write %d, fsync %d, checksum %d, chmod %d, rename %d): %s", size, lastWrite, fsync, sum, chmod, rename, opsString(ops))
		case !(lastWrite < fsync && lastWrite < sum && fsync < rename && sum < rename && chmod < rename):
			t.Errorf("%d bytes: out of order (write %d, fsync %d, checksum %d, chmod %d, rename %d): %s", size, lastWrite, fsync, sum, chmod, rename, opsString(ops))
		case rename != len(ops)-1 || ops[rename].Path != tmp || ops[rename].To != target:
			t.Errorf("%d bytes: the rename of %s over the target is not the last step: %s", size, tmp, opsString(ops))
		}
		if (size > 64<<10) != (ops[sum].Kind == sshtest.OpExec) {
			t.Errorf("%d bytes hashed by %v", size, ops[sum])
		}

		// One byte flipped on its way to the disk: checked, never renamed.
		before = len(s.Ops())
		s.CorruptNextWrite()
		if _, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, size)), "", 0o640, ""); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("%d bytes, corrupted: upload = %v", size, err)
		}
		tmp, ops = uploadOps(t, s.Ops()[before:], target)
		if !slices.ContainsFunc(ops, func(op sshtest.Op) bool { return isChecksum(op, tmp) }) {
			t.Errorf("%d bytes, corrupted: no checksum: %s", size, opsString(ops))
		}
		for _, op := range ops {
			if op.Kind == sshtest.OpRename || (op.Kind == sshtest.OpExec && strings.Contains(op.Cmd, "mv ")) {
				t.Errorf("%d bytes, corrupted: renamed despite the checksum mismatch: %s", size, opsString(ops))
			}
		}
		if last := ops[len(ops)-1]; last.Kind != sshtest.OpRemove || last.Path != tmp {
			t.Errorf("%d bytes, corrupted: the temp file is not removed last: %s", size, opsString(ops))
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("%d bytes, corrupted: temp file %s: %v", size, tmp, err)
		}
	}
}
