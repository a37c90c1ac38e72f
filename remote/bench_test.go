package remote_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kmsctl/kmsctl/remote"
	"github.com/kmsctl/kmsctl/remote/sshtest"
	"golang.org/x/crypto/ssh"
)

// BenchmarkUpload pushes a 32 MiB file (to tmpfs when /dev/shm exists)
// through the in-process server with different numbers of 32 KiB SFTP
// write requests in flight (pkg/sftp's server takes larger ones but answers
// reads with at most 32 KiB; bench/ssh.sh measures against OpenSSH, with
// the request size kmsctl picks there). Run:
// go test -run XXX -bench Upload ./remote/
func BenchmarkUpload(b *testing.B) {
	data := randomBytes(b, 32<<20)
	for _, n := range []int{1, 4, 8, 16, 32, 64} {
		b.Run("inflight="+strconv.Itoa(n), func(b *testing.B) {
			c, dir := benchClient(b, n)
			target := filepath.Join(dir, "blob")
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Upload(b.Context(), target, onlyReader{bytes.NewReader(data)}, "", 0o600, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUploadMode compares the two ways Upload stages a file: in the
// target's directory (0644: others may read it anyway) and in a private
// directory made for it (0600: three SFTP round trips more, mkdir, chmod
// and rmdir), for a small file, where round trips dominate, and a large
// one. Run: go test -run XXX -bench UploadMode ./remote/
func BenchmarkUploadMode(b *testing.B) {
	for _, size := range []int{4 << 10, 32 << 20} {
		data := randomBytes(b, size)
		for _, perm := range []os.FileMode{0o644, 0o600} {
			b.Run(fmt.Sprintf("size=%d/mode=%04o", size, perm), func(b *testing.B) {
				c, dir := benchClient(b, 0)
				target := filepath.Join(dir, "blob")
				b.SetBytes(int64(len(data)))
				b.ResetTimer()
				for range b.N {
					if _, err := c.Upload(b.Context(), target, onlyReader{bytes.NewReader(data)}, "", perm, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRunTrue measures per-command latency on an open connection.
func BenchmarkRunTrue(b *testing.B) {
	c, _ := benchClient(b, 0)
	b.ResetTimer()
	for range b.N {
		if err := c.Run(b.Context(), "true", nil, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func benchClient(b *testing.B, inflight int) (*remote.Client, string) {
	home := b.TempDir()
	b.Setenv("HOME", home)
	key := sshtest.GenerateKey(b)
	s := sshtest.Start(b, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	kh := filepath.Join(home, "known_hosts")
	sshtest.WriteKnownHosts(b, kh, s.KnownHostsLine())
	c, err := remote.Dial(b.Context(), remote.Options{
		Alias: "bench", HostName: "127.0.0.1", Port: s.Port(), User: "bench",
		IdentityFiles: []string{sshtest.ClientKeyFile(b, key, "")}, SSHConfigFile: "none",
		KnownHostsFiles: []string{kh}, AgentSocket: "none", SFTPConcurrency: inflight,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	// Prefer tmpfs, so that the figure is the transport's, not the disk's.
	dir, err := os.MkdirTemp("/dev/shm", "kmsctl-bench-")
	if err != nil {
		return c, b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return c, dir
}
