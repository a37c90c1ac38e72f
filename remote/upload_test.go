package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// onlyReader hides every method but Read, as a network stream would.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestUploadAtomicModeOwnerChecksum(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	target := filepath.Join(dir, "minkms.env")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 3<<20+17)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := c.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", 0o640, me.Username)
	if err != nil {
		t.Fatal(err)
	}
	if sum != sha(data) {
		t.Errorf("returned sha256 %s, want %s", sum, sha(data))
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Error("target content differs")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v", fi.Mode())
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	var chown, sum256 bool
	for _, cmd := range s.Commands() {
		chown = chown || strings.HasPrefix(cmd, "chown -- "+me.Username+" ")
		sum256 = sum256 || strings.HasPrefix(cmd, "{ "+remote.SHA256Script+"; } < "+dir+"/.minkms.env.kmsctl-tmp-")
	}
	if !chown || !sum256 {
		t.Errorf("upload did not chown and checksum the temp file: %q", s.Commands())
	}
	// A relative path is refused.
	if _, err := c.Upload(ctx(t), "relative", strings.NewReader("x"), "", 0o600, ""); err == nil {
		t.Error("relative upload path accepted")
	}
}

// An upload cut off mid-transfer leaves the target alone; its temp file (in
// a private directory, for a mode others may not read) is removed by the
// next upload of the target.
func TestUploadCutMidTransferLeavesTargetAndCleansUp(t *testing.T) {
	for _, perm := range []os.FileMode{0o755, 0o600} {
		t.Run(fmt.Sprintf("%04o", perm), func(t *testing.T) {
			_, s, c := connected(t, sshtest.Config{})
			dir := t.TempDir()
			target := filepath.Join(dir, "minkms")
			old := []byte("previous binary\n")
			if err := os.WriteFile(target, old, 0o755); err != nil {
				t.Fatal(err)
			}
			s.CutAfterBytes(1 << 20)
			data := randomBytes(t, 8<<20)
			_, err := c.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", perm, "")
			if !errors.Is(err, remote.ErrConnectionLost) {
				t.Fatalf("upload cut by the server = %v, want ErrConnectionLost", err)
			}
			if got := readFile(t, target); got != string(old) {
				t.Fatal("target changed by an interrupted upload")
			}
			left := tempFiles(t, dir)
			if len(left) != 1 {
				t.Logf("temp files after the cut: %v", left) // the dead connection could not remove it
			}
			if perm == 0o600 {
				for _, p := range left {
					if fi, err := os.Stat(p); err != nil || fi.Mode() != os.ModeDir|0o700 {
						t.Errorf("left by the cut: %s %v %v; want a 0700 directory", p, fi, err)
					}
				}
			}
			// The next upload re-dials, removes the stale temp file and succeeds.
			if _, err := c.Upload(ctx(t), target, bytes.NewReader(data), "", perm, ""); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
				t.Error("target content differs after the retry")
			}
			if left := tempFiles(t, dir); len(left) != 0 {
				t.Errorf("temp files left after the next upload: %v", left)
			}
		})
	}
}

// An upload removes what interrupted uploads of the same target left: temp
// files, and private temp directories with the file in them; nothing of
// other targets, and no directory that is not named like one of its own.
func TestUploadRemovesStaleTempFilesOfThatTargetOnly(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	stale := filepath.Join(dir, ".a.conf.kmsctl-tmp-0123456789abcdef")
	staleDir := filepath.Join(dir, ".a.conf.kmsctl-tmp-fedcba9876543210")
	emptyDir := filepath.Join(dir, ".a.conf.kmsctl-tmp-00000000ffffffff")
	other := filepath.Join(dir, ".b.conf.kmsctl-tmp-0123456789abcdef")
	otherDir := filepath.Join(dir, ".b.conf.kmsctl-tmp-fedcba9876543210")
	notOurs := filepath.Join(dir, ".a.conf.kmsctl-tmp-keep")
	for _, d := range []string{staleDir, emptyDir, otherDir, notOurs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{stale, filepath.Join(staleDir, "a.conf"), other, filepath.Join(otherDir, "b.conf"), filepath.Join(notOurs, "f")} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, perm := range []os.FileMode{0o600, 0o644} {
		if _, err := c.Upload(ctx(t), filepath.Join(dir, "a.conf"), strings.NewReader("x"), "", perm, ""); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{stale, staleDir, emptyDir} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("mode %04o: stale %s of the target survived", perm, p)
			}
		}
		for _, p := range []string{other, otherDir, notOurs} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("mode %04o: %s, not the target's, was removed", perm, p)
			}
		}
		if err := os.Mkdir(staleDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUploadChecksumMismatchDetected(t *testing.T) {
	// The server's hash command reports a different hash for temp files, as
	// if the bytes were corrupted on the way to the disk. Files of more than
	// two SFTP requests (2 x 32 KiB against this server) are hashed on the
	// host.
	_, s, c := connected(t, sshtest.Config{Exec: func(_ context.Context, cmd string, _ io.Reader, stdout, _ io.Writer) (int, bool) {
		if strings.Contains(cmd, remote.SHA256Script) && strings.Contains(cmd, ".kmsctl-tmp-") {
			io.WriteString(stdout, strings.Repeat("0", 64)+"  file\n")
			return 0, true
		}
		return 0, false
	}})
	dir := t.TempDir()
	target := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, 64<<10+1)), "", 0o600, "")
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("upload with corrupted landing = %v", err)
	}
	if readFile(t, target) != "old" {
		t.Error("target replaced despite the checksum mismatch")
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	// A file of up to two requests is read back over SFTP: no command.
	before := len(s.Commands())
	if _, err := c.Upload(ctx(t), target, strings.NewReader("new"), "", 0o600, ""); err != nil {
		t.Fatalf("small upload: %v", err)
	}
	if cmds := s.Commands()[before:]; len(cmds) != 0 {
		t.Errorf("small upload ran commands %q; want its read-back over SFTP only", cmds)
	}
}

// A source whose sha256 is known in advance is not hashed again: the
// known hash is returned, and one that differs from what landed (the local
// file changed after it was hashed) fails the upload, whichever way the
// landed file is hashed.
func TestUploadKnownSum(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	target := filepath.Join(dir, "minkms")
	if err := os.WriteFile(target, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, 1 << 20} {
		data := randomBytes(t, size)
		sum, err := c.Upload(ctx(t), target, bytes.NewReader(data), strings.ToUpper(sha(data)), 0o755, "")
		if err != nil || sum != sha(data) {
			t.Fatalf("upload of %d bytes with a known sum = %s, %v; want %s", size, sum, err, sha(data))
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
			t.Fatalf("target differs after the upload of %d bytes with a known sum", size)
		}
		changed := randomBytes(t, size)
		_, err = c.Upload(ctx(t), target, bytes.NewReader(changed), sha(data), 0o755, "")
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("upload of %d bytes that differ from their declared hash = %v", size, err)
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
			t.Errorf("target replaced by %d bytes that differ from their declared hash", size)
		}
		if left := tempFiles(t, dir); len(left) != 0 {
			t.Errorf("temp files left: %v", left)
		}
	}
}

func TestUploadCancelled(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	target := filepath.Join(dir, "big")
	cctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{n: 1 << 20, cancel: cancel}
	_, err := c.Upload(cctx, target, r, "", 0o600, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload = %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Error("cancelled upload created the target")
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// cancelAfter produces zeros forever and cancels after n bytes.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (r *cancelAfter) Read(p []byte) (int, error) {
	r.n -= len(p)
	if r.n < 0 {
		r.cancel()
	}
	clear(p)
	return len(p), nil
}

func TestUploadCorruptedWriteDetected(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	target := filepath.Join(dir, "minkms")
	if err := os.WriteFile(target, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Read back over SFTP (100 bytes) and hashed on the host (1 MiB).
	for _, size := range []int{100, 1 << 20} {
		s.CorruptNextWrite() // one byte flipped on its way to the disk
		_, err := c.Upload(ctx(t), target, bytes.NewReader(randomBytes(t, size)), "", 0o755, "")
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("upload of %d bytes with a corrupted write = %v", size, err)
		}
		if readFile(t, target) != "old" {
			t.Errorf("target replaced by %d corrupted bytes", size)
		}
		if left := tempFiles(t, dir); len(left) != 0 {
			t.Errorf("temp files left: %v", left)
		}
	}
}

func TestUploadWithoutFsyncExtensionRunsSync(t *testing.T) {
	_, s, c := connected(t, sshtest.Config{NoFsync: true})
	target := filepath.Join(t.TempDir(), "f")
	if _, err := c.Upload(ctx(t), target, strings.NewReader("data"), "", 0o600, ""); err != nil {
		t.Fatal(err)
	}
	if readFile(t, target) != "data" {
		t.Error("content differs")
	}
	synced := false
	for _, cmd := range s.Commands() {
		synced = synced || strings.HasPrefix(cmd, "sync -- ")
	}
	if !synced {
		t.Errorf("no sync command without fsync@openssh.com: %q", s.Commands())
	}
}

// Writes of OpenSSH's size (256 KiB - 1024, what kmsctl uses against an
// OpenSSH 8.6+ server) carry a file intact, including a last partial
// request. Reading it back with such requests from a server that answers
// with short reads (pkg/sftp's, which sends at most 32 KiB) is an error, not
// a silently truncated copy (github.com/pkg/sftp/issues/658).
func TestLargeRequestsUploadIntactAndShortReadsDetected(t *testing.T) {
	e := newEnv(t)
	s := e.server(sshtest.Config{})
	e.trust(s.KnownHostsLine())
	o := e.opts(s)
	o.SFTPPacketSize = 256*1024 - 1024
	c := e.dial(o)
	target := filepath.Join(t.TempDir(), "minkms")
	data := randomBytes(t, 5<<20+12345)
	sum, err := c.Upload(ctx(t), target, onlyReader{bytes.NewReader(data)}, "", 0o755, "")
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if sum != sha(data) {
		t.Errorf("returned sha256 %s, want %s", sum, sha(data))
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Errorf("target holds %d bytes differing from the %d uploaded", len(got), len(data))
	}
	err = c.Download(ctx(t), target, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "copy is incomplete") {
		t.Errorf("download through short reads = %v, want the incomplete-copy error", err)
	}
}
