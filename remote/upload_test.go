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
	"slices"
	"strings"
	"testing"
	"time"

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
			// The next upload re-dials and succeeds; the cut one's temp is
			// fresh (it could be a concurrent upload's) and is left.
			if _, err := c.Upload(ctx(t), target, bytes.NewReader(data), "", perm, ""); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
				t.Error("target content differs after the retry")
			}
			if now := tempFiles(t, dir); !slices.Equal(now, left) {
				t.Errorf("temp files after the retry: %v; want those of the cut, %v", now, left)
			}
			// Once StaleTempAge old, the next upload removes it.
			backdate(t, left...)
			if _, err := c.Upload(ctx(t), target, bytes.NewReader(data), "", perm, ""); err != nil {
				t.Fatal(err)
			}
			if left := tempFiles(t, dir); len(left) != 0 {
				t.Errorf("temp files left after the next upload: %v", left)
			}
		})
	}
}

// An upload removes what interrupted uploads of the same target left, once
// nothing of it was modified for StaleTempAge: temp files, and private temp
// directories with the file in them; nothing of other targets, no
// directory that is not named like one of its own, and no fresh temp (of
// an upload that may be in progress: a new file, or a new file in an old
// directory).
func TestUploadRemovesStaleTempFilesOfThatTargetOnly(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{})
	dir := t.TempDir()
	stale := filepath.Join(dir, ".a.conf.kmsctl-tmp-0123456789abcdef")
	staleDir := filepath.Join(dir, ".a.conf.kmsctl-tmp-fedcba9876543210")
	emptyDir := filepath.Join(dir, ".a.conf.kmsctl-tmp-00000000ffffffff")
	fresh := filepath.Join(dir, ".a.conf.kmsctl-tmp-1111111111111111")
	freshDir := filepath.Join(dir, ".a.conf.kmsctl-tmp-2222222222222222")
	freshInOld := filepath.Join(dir, ".a.conf.kmsctl-tmp-3333333333333333")
	other := filepath.Join(dir, ".b.conf.kmsctl-tmp-0123456789abcdef")
	otherDir := filepath.Join(dir, ".b.conf.kmsctl-tmp-fedcba9876543210")
	notOurs := filepath.Join(dir, ".a.conf.kmsctl-tmp-keep")
	for _, d := range []string{staleDir, emptyDir, freshDir, freshInOld, otherDir, notOurs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{stale, filepath.Join(staleDir, "a.conf"), fresh, filepath.Join(freshDir, "a.conf"), other, filepath.Join(otherDir, "b.conf"), filepath.Join(notOurs, "f")} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backdate(t, stale, staleDir, emptyDir, freshInOld, other, otherDir, notOurs)
	if err := os.WriteFile(filepath.Join(freshInOld, "a.conf"), []byte("being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * remote.StaleTempAge)
	if err := os.Chtimes(freshInOld, old, old); err != nil {
		t.Fatal(err)
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
		for _, p := range []string{fresh, filepath.Join(freshDir, "a.conf"), filepath.Join(freshInOld, "a.conf")} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("mode %04o: %s, fresh, was removed", perm, p)
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
		backdate(t, staleDir)
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

// Two uploads of different contents to one path at once, as the login user
// and through sudo, with and without the private temp directory: the
// first is in the middle of its transfer (its temp file exists) while the
// second runs from start to end. Neither removes the other's temp file,
// both succeed, the target holds one of the two contents whole, and no
// temp file is left.
func TestConcurrentUploadsToOnePath(t *testing.T) {
	_, _, c := connected(t, sshtest.Config{Sudo: sshtest.SudoAllow})
	conns := map[string]remote.Conn{"login user": c, "become root": remote.Become(c, "root")}
	for name, conn := range conns {
		for _, perm := range []os.FileMode{0o644, 0o600} {
			t.Run(fmt.Sprintf("%s %04o", name, perm), func(t *testing.T) {
				dir := t.TempDir()
				target := filepath.Join(dir, "minkms.env")
				first, second := randomBytes(t, 300<<10), randomBytes(t, 200<<10)
				pr, pw := io.Pipe()
				type result struct {
					sum string
					err error
				}
				done := make(chan result, 1)
				go func() {
					sum, err := conn.Upload(ctx(t), target, pr, "", perm, "")
					pr.CloseWithError(err) // unblocks the writes below if it failed early
					done <- result{sum, err}
				}()
				if _, err := pw.Write(first[:100<<10]); err != nil {
					t.Fatalf("first upload stopped reading: %v", err)
				}
				for deadline := time.Now().Add(20 * time.Second); len(tempFiles(t, dir)) == 0; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the first upload made no temp file")
					}
				}
				sum, err := conn.Upload(ctx(t), target, bytes.NewReader(second), "", perm, "")
				if err != nil || sum != sha(second) {
					t.Fatalf("second upload, while the first one runs = %q, %v", sum, err)
				}
				if _, err := pw.Write(first[100<<10:]); err != nil {
					t.Fatalf("first upload stopped reading after the second upload: %v", err)
				}
				pw.Close()
				r := <-done
				if r.err != nil || r.sum != sha(first) {
					t.Fatalf("first upload, interleaved with the second = %q, %v", r.sum, r.err)
				}
				got, err := os.ReadFile(target)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, first) && !bytes.Equal(got, second) {
					t.Errorf("target holds %d bytes with sha256 %s: neither upload's content", len(got), sha(got))
				}
				if left := tempFiles(t, dir); len(left) != 0 {
					t.Errorf("temp files left: %v", left)
				}
			})
		}
	}
}
