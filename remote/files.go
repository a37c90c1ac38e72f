package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pkg/sftp"
)

// tempMarker is the infix of upload temp files and directories:
// ".<base>.kmsctl-tmp-<random>".
const tempMarker = ".kmsctl-tmp-"

// tempPrefix returns the prefix of the temp files and directories of an
// upload to target.
func tempPrefix(target string) string {
	return path.Join(path.Dir(target), "."+path.Base(target)+tempMarker)
}

// sftpClient returns the connection's SFTP client, opening it on first use.
func (c *Client) sftpClient(ctx context.Context) (*sshConn, *sftp.Client, error) {
	sc, err := c.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	sc.sftpMu.Lock()
	defer sc.sftpMu.Unlock()
	if sc.sftp != nil {
		return sc, sc.sftp, nil
	}
	cl, err := sftp.NewClient(sc.client, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true))
	if err != nil {
		if sc.waitDead(100 * time.Millisecond) {
			return nil, nil, &LostError{Host: c.host, Op: "open sftp session", Err: err}
		}
		return nil, nil, fmt.Errorf("open sftp session on %s: %w", c.host, err)
	}
	// Both sizes depend on what the server offered, known only now. The
	// options only set fields; no file request has been sent yet.
	size := sftpPacketSize(c.o.SFTPPacketSize, string(sc.client.ServerVersion()), cl)
	inFlight := c.o.SFTPConcurrency
	if inFlight <= 0 {
		inFlight = sftpInFlight(size)
	}
	for _, opt := range []sftp.ClientOption{sftp.MaxPacketUnchecked(size), sftp.MaxConcurrentRequestsPerFile(inFlight)} {
		if err := opt(cl); err != nil {
			cl.Close()
			return nil, nil, fmt.Errorf("configure sftp session on %s (%d-byte requests, %d in flight): %w", c.host, size, inFlight, err)
		}
	}
	sc.sftp, sc.sftpPacket, sc.sftpInFlight = cl, size, inFlight
	return sc, cl, nil
}

// sftpInFlightBytes is the default budget of SFTP request bytes in flight
// per file. Measured here (bench/ssh.sh and bench/ansible, 2 cores,
// sshd on the same machine): one 50 MiB upload was fastest with 8 x 32 KiB
// or 2 x 255 KiB requests in flight; ten uploads at once (to ten sshd)
// took 2.2-2.9 s with 256-512 KiB in flight per connection, 3.3-4.0 s
// with 1 MiB and 7.5-8.2 s with 2 MiB, sshd's whole channel window.
const sftpInFlightBytes = 256 * 1024

// sftpInFlight is the default number of requests in flight per file for
// requests of size bytes: the byte budget, but at least 2 so that the
// link never idles between a reply and the next request.
func sftpInFlight(size int) int {
	return max(2, sftpInFlightBytes/size)
}

// SFTP request sizes. Every SFTP server must take 32 KiB requests
// (draft-ietf-secsh-filexfer-02 §3). OpenSSH's sftp-server takes messages of
// up to 256 KiB and, from OpenSSH 8.6, says so with the limits@openssh.com
// extension: max-read-length = max-write-length = 256 KiB - 1024. Measured
// on an open connection (bench/ssh.sh), 50 MiB went over in 0.13-0.16 s
// with such requests against 0.22-0.28 s with 32 KiB ones.
const (
	defaultSFTPPacket = 32 * 1024
	openSSHSFTPPacket = 256*1024 - 1024
)

// extensions is what sftpPacketSize needs of an SFTP client.
type extensions interface {
	HasExtension(name string) (string, bool)
}

// sftpPacketSize is the size of SFTP read/write requests: set, when
// positive; the size OpenSSH's sftp-server reports in limits@openssh.com,
// when the server's banner is OpenSSH's and its SFTP server offers that
// extension (the values cannot be read through pkg/sftp, but OpenSSH's are
// fixed); otherwise 32 KiB, which every server takes.
func sftpPacketSize(set int, serverVersion string, cl extensions) int {
	if set > 0 {
		return set
	}
	if _, ok := cl.HasExtension("limits@openssh.com"); ok && strings.HasPrefix(serverVersion, "SSH-2.0-OpenSSH_") {
		return openSSHSFTPPacket
	}
	return defaultSFTPPacket
}

// fail wraps an error of op: a *LostError when the connection died.
func (c *Client) fail(sc *sshConn, op string, err error) error {
	var se *sftp.StatusError
	answered := errors.As(err, &se) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrExist)
	if !answered && sc.waitDead(200*time.Millisecond) {
		return &LostError{Host: c.host, Op: op, Err: err}
	}
	return fmt.Errorf("%s on %s: %w", op, c.host, err)
}

// Upload writes src to target atomically and returns the hex sha256 of the
// bytes read from src. known is src's hex sha256 when the caller knows it
// in advance (a local file hashed once for every host of a run; either
// case): src is then not hashed again, and the file that landed must have
// that hash, so a source that changed since it was hashed fails the check
// below and leaves target alone. With known "" src is hashed as it streams.
//
//  1. stale temp files and directories of earlier interrupted uploads to
//     target (".<base>.kmsctl-tmp-*" in its directory) are removed;
//  2. a new temp file is created exclusively next to target and src is
//     streamed into it with concurrent SFTP writes while being hashed.
//     SFTP creates files with the server's umask (0644, typically) and
//     pkg/sftp cannot ask for another mode, so when perm does not let
//     others read target (a key, a secret) the temp file is created in a
//     private directory made first, ".<base>.kmsctl-tmp-<random>/<base>",
//     mode 0700 before anything is created in it: no other user can open
//     the file at any moment (a directory opened while it was still 0755
//     gives no way in: the search permission is checked at each lookup).
//     Otherwise (the fast path) it is ".<base>.kmsctl-tmp-<random>" itself,
//     chmod'ed 0600 before the first write;
//  3. the file is fsync'ed (fsync@openssh.com; when the server lacks that
//     extension, `sync -- TEMP` is run instead) and closed;
//  4. while the fsync runs, the temp file is hashed (see Checksum: read
//     back when it fits in two SFTP requests, else on the host); the hash
//     must equal src's, otherwise the temp file is removed and an error
//     returned;
//  5. owner ("user[:group]", "" = leave) is set with chown, then perm;
//  6. the temp file is renamed over target (posix-rename@openssh.com, or
//     `mv -f` when the server lacks it), and the private directory, if
//     any, removed.
//
// target is not touched before step 6; on any failure the temp file and
// directory are removed (or, when the connection died, by the next upload
// of target).
func (c *Client) Upload(ctx context.Context, target string, src io.Reader, known string, perm fs.FileMode, owner string) (sum string, err error) {
	op := "upload " + target
	if !path.IsAbs(target) {
		return "", fmt.Errorf("%s on %s: path must be absolute", op, c.host)
	}
	sc, sf, err := c.sftpClient(ctx)
	if err != nil {
		return "", err
	}
	prefix := tempPrefix(target)
	if err := removeStale(sf, prefix); err != nil {
		return "", c.fail(sc, op, err)
	}
	tmp, tmpDir := prefix+randomSuffix(), ""
	if perm&0o004 == 0 {
		tmpDir, tmp = tmp, path.Join(tmp, path.Base(target))
		if err := makePrivateDir(sf, tmpDir); err != nil {
			return "", c.fail(sc, op, err)
		}
	}
	f, err := sf.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		if tmpDir != "" && !sc.isDead() {
			sf.RemoveDirectory(tmpDir)
		}
		return "", c.fail(sc, op, fmt.Errorf("create temp file %s: %w", tmp, err))
	}
	fileOpen := true
	defer func() {
		if err == nil {
			return
		}
		if fileOpen {
			f.Close()
		}
		if !sc.isDead() {
			sf.Remove(tmp)
			if tmpDir != "" {
				sf.RemoveDirectory(tmpDir)
			}
		}
	}()
	if tmpDir == "" {
		if err := f.Chmod(0o600); err != nil {
			return "", c.fail(sc, op, fmt.Errorf("chmod temp file: %w", err))
		}
	}
	var r io.Reader = ctxReader{ctx, src}
	var h hash.Hash
	if known != "" {
		sum = strings.ToLower(known)
	} else {
		h = sha256.New()
		r = io.TeeReader(r, h)
	}
	n, err := f.ReadFromWithConcurrency(r, sc.sftpInFlight)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s on %s: %w", op, c.host, context.Cause(ctx))
		}
		return "", c.fail(sc, op, fmt.Errorf("write temp file %s after %d bytes: %w", tmp, n, err))
	}
	if h != nil {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	// fsync and the verifying hash run at once: the hash reads the page
	// cache that fsync is writing out, and neither waits for the other.
	var landed string
	var sumErr error
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		landed, sumErr = c.checksumOfSize(ctx, sc, sf, tmp, n)
		if sumErr != nil {
			sumErr = fmt.Errorf("%s: %w", op, sumErr)
		}
	}()
	needSync := false
	syncErr := f.Sync()
	<-hashed
	if syncErr != nil {
		if !unsupported(syncErr) {
			return "", c.fail(sc, op, fmt.Errorf("fsync temp file: %w", syncErr))
		}
		needSync = true
	}
	fileOpen = false
	if err := f.Close(); err != nil {
		return "", c.fail(sc, op, fmt.Errorf("close temp file: %w", err))
	}
	if needSync {
		if err := c.Run(ctx, Command("sync", "--", tmp), nil, nil, nil); err != nil {
			return "", fmt.Errorf("%s: fsync temp file (server lacks fsync@openssh.com): %w", op, err)
		}
	}
	if sumErr != nil {
		return "", sumErr
	}
	if landed != sum {
		return "", fmt.Errorf("%s on %s: checksum mismatch: sent %d bytes with sha256 %s but the temp file has sha256 %s; %s was left unchanged", op, c.host, n, sum, landed, target)
	}
	if owner != "" {
		if err := c.Run(ctx, Command("chown", "--", owner, tmp), nil, nil, nil); err != nil {
			return "", fmt.Errorf("%s: set owner %s: %w", op, owner, err)
		}
	}
	if err := sf.Chmod(tmp, perm); err != nil {
		return "", c.fail(sc, op, fmt.Errorf("chmod %o temp file: %w", perm, err))
	}
	if err := sf.PosixRename(tmp, target); unsupported(err) {
		// No posix-rename@openssh.com: rename(2) through mv.
		if err := c.Run(ctx, Command("mv", "-f", "--", tmp, target), nil, nil, nil); err != nil {
			return "", fmt.Errorf("%s: rename temp file over target: %w", op, err)
		}
	} else if err != nil {
		return "", c.fail(sc, op, fmt.Errorf("rename temp file over target: %w", err))
	}
	if tmpDir != "" {
		if err := sf.RemoveDirectory(tmpDir); err != nil {
			return "", c.fail(sc, op, fmt.Errorf("%s is in place, but its empty temp directory %s could not be removed (the next upload of %s removes it): %w", target, tmpDir, target, err))
		}
	}
	return sum, nil
}

// makePrivateDir creates the directory p and makes it 0700 before anything
// is put in it; SFTP's mkdir applies the server's umask (0755, typically).
// On failure p is removed again.
func makePrivateDir(sf *sftp.Client, p string) error {
	if err := sf.Mkdir(p); err != nil {
		return fmt.Errorf("create temp directory %s: %w", p, err)
	}
	if err := sf.Chmod(p, 0o700); err != nil {
		sf.RemoveDirectory(p)
		return fmt.Errorf("chmod 0700 temp directory %s: %w", p, err)
	}
	return nil
}

// readBackSHA256 reads the file p back through its own SFTP handle and
// hashes it; it reports small=false, having read no further, when p holds
// more than limit bytes. For a small file that is one or two read requests
// instead of a command (a session, a process, a round trip more). The reads
// are sequential and of at most packet bytes; pkg/sftp completes each one
// across short reads, so a server that answers with less cannot make bytes
// go missing.
func readBackSHA256(sf *sftp.Client, p string, packet int, limit int64) (sum string, small bool, err error) {
	f, err := sf.Open(p)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, packet)
	for off := int64(0); off <= limit; {
		k, err := f.ReadAt(buf, off)
		h.Write(buf[:k])
		off += int64(k)
		if errors.Is(err, io.EOF) {
			if off > limit {
				break
			}
			return hex.EncodeToString(h.Sum(nil)), true, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("read %s at byte %d: %w", p, off, err)
		}
	}
	return "", false, nil
}

// unsupported reports whether err is the server's SSH_FX_OP_UNSUPPORTED.
func unsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// removeStale deletes the leftovers of earlier uploads whose path starts
// with prefix: temp files, and private temp directories (prefix and 16 hex
// digits) with what they hold.
func removeStale(sf *sftp.Client, prefix string) error {
	dir, base := path.Split(prefix)
	entries, err := sf.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list directory %s: %w", dir, err)
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), base)
		p := path.Join(dir, e.Name())
		switch {
		case !ok:
		case e.Mode().IsRegular():
			if err := sf.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale temp file %s: %w", p, err)
			}
		case e.IsDir() && isRandomSuffix(name):
			if err := removeStaleDir(sf, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeStaleDir removes the private temp directory p of an interrupted
// upload: the files in it, then p. It holds at most the temp file; a
// directory in it is left, and fails the removal of p.
func removeStaleDir(sf *sftp.Client, p string) error {
	entries, err := sf.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list stale temp directory %s: %w", p, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := sf.Remove(path.Join(p, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale temp file %s: %w", path.Join(p, e.Name()), err)
		}
	}
	if err := sf.RemoveDirectory(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale temp directory %s: %w", p, err)
	}
	return nil
}

// isRandomSuffix reports whether s could be a randomSuffix.
func isRandomSuffix(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 16 && err == nil && s == strings.ToLower(s)
}

// randomSuffix returns 16 random lower-case hex digits.
func randomSuffix() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Download streams the remote file at p into dst with concurrent SFTP reads.
// A regular file must deliver as many bytes as its size when opened:
// pkg/sftp's concurrent reads skip data silently when a server answers with
// short reads (github.com/pkg/sftp/issues/658), so a short count is an error.
func (c *Client) Download(ctx context.Context, p string, dst io.Writer) error {
	op := "download " + p
	sc, sf, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	f, err := sf.Open(p)
	if err != nil {
		return c.fail(sc, op, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return c.fail(sc, op, fmt.Errorf("stat open file: %w", err))
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	n, err := f.WriteTo(dst)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s on %s: %w", op, c.host, context.Cause(ctx))
		}
		return c.fail(sc, op, err)
	}
	if fi.Mode().IsRegular() && n != fi.Size() {
		return fmt.Errorf("%s on %s: received %d bytes of a %d-byte file, so the copy is incomplete: the file changed during the download (run again once it is stable) or the host's SFTP server answered with short reads", op, c.host, n, fi.Size())
	}
	return nil
}

// Stat describes the remote path p (following symlinks). A missing path
// yields an error matching fs.ErrNotExist.
func (c *Client) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	sc, sf, err := c.sftpClient(ctx)
	if err != nil {
		return nil, err
	}
	fi, err := sf.Stat(p)
	if err != nil {
		return nil, c.fail(sc, "stat "+p, err)
	}
	return fi, nil
}

// Remove deletes the remote file (or symlink) at p; it refuses directories.
// A missing path yields an error matching fs.ErrNotExist.
func (c *Client) Remove(ctx context.Context, p string) error {
	op := "remove " + p
	sc, sf, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	fi, err := sf.Lstat(p)
	if err != nil {
		return c.fail(sc, op, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s on %s: is a directory (only files are removed)", op, c.host)
	}
	if err := sf.Remove(p); err != nil {
		return c.fail(sc, op, err)
	}
	return nil
}

// Checksum returns the hex sha256 of the remote file at p. A file of up to
// two SFTP requests is read back and hashed here; a larger one is hashed on
// the host by SHA256Script. A missing file yields an error matching
// fs.ErrNotExist.
func (c *Client) Checksum(ctx context.Context, p string) (string, error) {
	sc, sf, err := c.sftpClient(ctx)
	if err != nil {
		return "", err
	}
	fi, err := sf.Stat(p)
	if err != nil {
		return "", c.fail(sc, "checksum "+p, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("checksum %s on %s: is a directory, not a file", p, c.host)
	}
	return c.checksumOfSize(ctx, sc, sf, p, fi.Size())
}

// checksumOfSize hashes the file p, which had size bytes when last seen:
// read back when that fits in two SFTP requests (and still does), else on
// the host. Deciding by size up front matters: OpenSSH's sftp-server
// answers one request at a time, so a read-back probe of a large file
// would wait behind an fsync in progress instead of hashing beside it.
func (c *Client) checksumOfSize(ctx context.Context, sc *sshConn, sf *sftp.Client, p string, size int64) (string, error) {
	if limit := int64(2 * sc.sftpPacket); size <= limit {
		sum, small, err := readBackSHA256(sf, p, sc.sftpPacket, limit)
		if err != nil {
			return "", c.fail(sc, "checksum "+p, err)
		}
		if small {
			return sum, nil
		}
	}
	return checksum(ctx, c, p)
}

// SHA256Script is a POSIX shell command that prints the hex sha256 of its
// standard input as the first word of its output. It uses OpenSSL where
// installed (SHA extensions: 0.07 s for 50 MiB here, against 0.14 s for
// coreutils' sha256sum, which Debian builds without them), else sha256sum.
const SHA256Script = `if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi`

// checksum runs SHA256Script on p through conn and parses its output.
func checksum(ctx context.Context, conn Conn, p string) (string, error) {
	var out, errb bytes.Buffer
	err := conn.Run(ctx, "{ "+SHA256Script+"; } < "+Quote(p), nil, &limitWriter{w: &out, n: 4096}, &errb)
	if err != nil {
		var xe *ExitError
		if errors.As(err, &xe) && strings.Contains(errb.String(), "No such file") {
			return "", fmt.Errorf("checksum %s on %s: %w", p, conn.Host(), fs.ErrNotExist)
		}
		return "", fmt.Errorf("checksum %s: %w", p, err)
	}
	return parseSHA256Sum(out.String(), p, conn.Host())
}

// parseSHA256Sum extracts the hash from the output of sha256sum
// ("HASH  FILE", with a leading backslash when FILE was escaped) or of
// `openssl dgst -sha256 -r` ("HASH *FILE").
func parseSHA256Sum(out, p, host string) (string, error) {
	line := strings.TrimPrefix(out, "\\")
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields[0]) != 64 {
		return "", fmt.Errorf("checksum %s on %s: unexpected sha256 output %q", p, host, truncate(out, 100))
	}
	sum := strings.ToLower(fields[0])
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("checksum %s on %s: unexpected sha256 output %q", p, host, truncate(out, 100))
	}
	return sum, nil
}

// limitWriter keeps at most n bytes and silently drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	k := min(len(p), l.n)
	if k > 0 {
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// DialTCP opens a TCP connection to addr as seen from the host, through
// the SSH connection (direct-tcpip).
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	sc, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	nc, err := sc.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tunnel to %s via %s: %w", addr, c.host, context.Cause(ctx))
		}
		return nil, c.fail(sc, "tunnel to "+addr, err)
	}
	return nc, nil
}
