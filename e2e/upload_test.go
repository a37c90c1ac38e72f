//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/remote"
)

// uploadSize is the size of the end-to-end upload: 50 MiB, more than any buffer on the way.
const uploadSize = 50 << 20

// TestUpload50MiB: a 50 MiB file uploaded with the remote package to a real sshd lands intact
// (sha256 computed inside the container), with the requested mode and owner, and leaves no
// temp file behind; uploading different content over it replaces it atomically. The same
// is done through a ProxyJump bastion, the way kmsctl reaches hosts behind one.
func TestUpload50MiB(t *testing.T) {
	l := NewLab(t, "files", "gate")
	l.AddJumpAlias("files-via-gate", "files", "gate")
	src, want := randomFile(t, l.Dir, uploadSize, 1)

	for _, alias := range []string{"files", "files-via-gate"} {
		t.Run(alias, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c, err := remote.Dial(ctx, remote.Options{
				Alias:           alias,
				SSHConfigFile:   l.SSHConfig,
				AgentSocket:     "none",
				StateKnownHosts: filepath.Join(l.Dir, "kmsctl_known_hosts"),
			})
			if err != nil {
				t.Fatalf("dial %s: %v", alias, err)
			}
			defer c.Close()

			target := "/srv/" + alias + ".bin"
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sum, err := c.Upload(ctx, target, f, "", 0o640, "root:root")
			if err != nil {
				t.Fatalf("upload %s to %s: %v", src, alias, err)
			}
			if sum != want {
				t.Errorf("Upload returned sha256 %s, the source's is %s", sum, want)
			}
			got := strings.Fields(mustExec(t, l, "files", "sha256sum "+target+" && stat -c '%s %a %U:%G' "+target))
			if len(got) != 5 || got[0] != want || got[2] != "52428800" || got[3] != "640" || got[4] != "root:root" {
				t.Errorf("landed file: got %q, want sha256 %s, 52428800 bytes, mode 640, root:root", got, want)
			}
			if left := mustExec(t, l, "files", "ls -A /srv | grep kmsctl-tmp || true"); strings.TrimSpace(left) != "" {
				t.Errorf("temp files left in /srv: %s", left)
			}

			// Different content over the existing file replaces it.
			src2, want2 := randomFile(t, t.TempDir(), 3<<20, 2)
			f2, err := os.Open(src2)
			if err != nil {
				t.Fatal(err)
			}
			defer f2.Close()
			if _, err := c.Upload(ctx, target, f2, "", 0o600, ""); err != nil {
				t.Fatalf("second upload to %s: %v", alias, err)
			}
			if got := strings.Fields(mustExec(t, l, "files", "sha256sum "+target)); len(got) == 0 || got[0] != want2 {
				t.Errorf("after the second upload sha256 is %q, want %s", got, want2)
			}
		})
	}
}

// mustExec is l.Exec failing t (which may be a subtest, unlike l.MustExec's test).
func mustExec(t *testing.T, l *Lab, name, command string) string {
	t.Helper()
	out, err := l.Exec(name, command)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// randomFile writes size pseudo-random bytes (seeded, so reproducible) to a file in dir and
// returns its path and hex sha256. It streams: the content is never held in memory.
func randomFile(t *testing.T, dir string, size int64, seed uint64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, "upload-"+hex.EncodeToString([]byte{byte(seed)})+".bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seedBytes [32]byte
	seedBytes[0] = byte(seed)
	rng := rand.NewChaCha8(seedBytes)
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rng, size); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// TestUploadInterrupted: when the SSH connection to a real sshd dies in the middle of a 50 MiB
// upload (the container's per-connection sshd processes are killed), Upload fails with a
// *remote.LostError, the previous file is untouched, and the next upload (on a re-dialled
// connection) lands intact and leaves no temp file behind.
func TestUploadInterrupted(t *testing.T) {
	l := NewLab(t, "files")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := remote.Dial(ctx, remote.Options{Alias: "files", SSHConfigFile: l.SSHConfig, AgentSocket: "none",
		StateKnownHosts: filepath.Join(l.Dir, "kmsctl_known_hosts")})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()

	const target = "/srv/data.bin"
	old, oldSum := randomFile(t, t.TempDir(), 1<<20, 4)
	uploadFile(ctx, t, c, old, target)

	big, bigSum := randomFile(t, l.Dir, uploadSize, 5)
	f, err := os.Open(big)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// After 10 MiB have been read from the source, kill the connection's sshd processes
	// (not the listener: its title is "sshd: /usr/sbin/sshd -D [listener]").
	cut := &cutReader{r: f, after: 10 << 20, cut: func() {
		if out, err := l.Exec("files", "pkill -KILL -f '^sshd: root'"); err != nil {
			t.Errorf("kill the connection: %v\n%s", err, out)
		}
	}}
	_, err = c.Upload(ctx, target, cut, "", 0o600, "")
	var lost *remote.LostError
	if !errors.As(err, &lost) {
		t.Fatalf("upload over a killed connection: want a *remote.LostError, got %v", err)
	}
	if got := strings.Fields(l.MustExec("files", "sha256sum "+target)); len(got) == 0 || got[0] != oldSum {
		t.Fatalf("after the interrupted upload %s has sha256 %q, want the previous %s", target, got, oldSum)
	}
	t.Logf("/srv after the interrupted upload:\n%s", l.MustExec("files", "ls -lA /srv"))

	uploadFile(ctx, t, c, big, target)
	if got := strings.Fields(l.MustExec("files", "sha256sum "+target)); len(got) == 0 || got[0] != bigSum {
		t.Errorf("after the retried upload %s has sha256 %q, want %s", target, got, bigSum)
	}
	if left := l.MustExec("files", "ls -A /srv | grep kmsctl-tmp || true"); strings.TrimSpace(left) != "" {
		t.Errorf("temp files left in /srv after the next upload: %s", left)
	}
}

func uploadFile(ctx context.Context, t *testing.T, c *remote.Client, src, target string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.Upload(ctx, target, f, "", 0o600, ""); err != nil {
		t.Fatalf("upload %s to %s: %v", src, target, err)
	}
}

// cutReader calls cut once, synchronously, when more than after bytes have been read.
type cutReader struct {
	r     io.Reader
	after int64
	read  int64
	cut   func()
	done  bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	if !c.done && c.read > c.after {
		c.done = true
		c.cut()
	}
	return n, err
}
