package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kmsctl/kmsctl/tasks"
)

// countingFS counts the bytes read from its files. A pointer, so that it
// can be a key of the run's checksum cache.
type countingFS struct {
	fsys fs.FS
	read atomic.Int64
}

func (c *countingFS) Open(name string) (fs.File, error) {
	f, err := c.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c}, nil
}

type countingFile struct {
	fs.File
	c *countingFS
}

func (f countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.c.read.Add(int64(n))
	return n, err
}

// Hosts that describe the same local file at once get its hash from one
// read of it, and every one of them passes that hash to Conn.Upload as the
// content's known sum, so it is not hashed again per host.
func TestFsPayloadHashesOnceForConcurrentHosts(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "minkms"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	cfs := &countingFS{fsys: os.DirFS(dir)}
	env := &tasks.Env{Memo: &sync.Map{}}
	const hosts = 10
	sums := make([]string, hosts)
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := fsPayload(env, cfs, "minkms", "minkms")
			if err != nil {
				t.Error(err)
				return
			}
			c := &knownSumConn{}
			if err := p.upload(context.Background(), c, "/usr/local/bin/minkms", 0o755, ""); err != nil {
				t.Error(err)
				return
			}
			sums[i] = c.known
		}()
	}
	wg.Wait()
	for i, s := range sums {
		if s != hex.EncodeToString(want[:]) {
			t.Errorf("host %d got sha256 %q, want %x", i, s, want)
		}
	}
	if got := cfs.read.Load(); got != int64(len(data))*(1+hosts) {
		t.Errorf("%d hosts read %d bytes of a %d-byte file; want it read once to hash it and once per host to upload it", hosts, got, len(data))
	}
}

// knownSumConn records the known sum an Upload is given and, like a real
// connection, returns the sha256 of what it read.
type knownSumConn struct {
	tasks.Conn
	known string
}

func (c *knownSumConn) Upload(_ context.Context, _ string, src io.Reader, known string, _ fs.FileMode, _ string) (string, error) {
	c.known = known
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
