//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
			sum, err := c.Upload(ctx, target, f, 0o640, "root:root")
			if err != nil {
				t.Fatalf("upload %s to %s: %v", src, alias, err)
			}
			if sum != want {
				t.Errorf("Upload returned sha256 %s, the source's is %s", sum, want)
			}
			got := strings.Fields(l.MustExec("files", "sha256sum "+target+" && stat -c '%s %a %U:%G' "+target))
			if len(got) != 5 || got[0] != want || got[2] != "52428800" || got[3] != "640" || got[4] != "root:root" {
				t.Errorf("landed file: got %q, want sha256 %s, 52428800 bytes, mode 640, root:root", got, want)
			}
			if left := l.MustExec("files", "ls -A /srv | grep kmsctl-tmp || true"); strings.TrimSpace(left) != "" {
				t.Errorf("temp files left in /srv: %s", left)
			}

			// Different content over the existing file replaces it.
			src2, want2 := randomFile(t, t.TempDir(), 3<<20, 2)
			f2, err := os.Open(src2)
			if err != nil {
				t.Fatal(err)
			}
			defer f2.Close()
			if _, err := c.Upload(ctx, target, f2, 0o600, ""); err != nil {
				t.Fatalf("second upload to %s: %v", alias, err)
			}
			if got := strings.Fields(l.MustExec("files", "sha256sum "+target)); len(got) == 0 || got[0] != want2 {
				t.Errorf("after the second upload sha256 is %q, want %s", got, want2)
			}
		})
	}
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
