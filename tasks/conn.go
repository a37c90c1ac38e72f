package tasks

import (
	"context"
	"io"
	"io/fs"
	"net"
)

// Conn is the narrow transport seam every task uses to act on one host.
// remote.Client satisfies it without importing this package, so every type in
// these signatures comes from the standard library.
type Conn interface {
	// Host names the host this connection reaches, as the inventory knows it.
	Host() string
	// Run runs a shell command line on the host. The returned error wraps a
	// value with an ExitStatus() int method when the command ran and exited
	// non-zero, unless it also has a BecomeFailed() bool method reporting
	// true (privilege escalation failed, the command never ran); any other
	// error means the command's outcome is unknown.
	// Cancelling ctx ends the remote command.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	// Upload streams src to path atomically (temp file in the target's
	// directory, fsync, chmod/chown, rename) and checks that the sha256 of
	// what landed is src's; otherwise path is left unchanged. sum is src's
	// hex sha256 when the caller knows it in advance (a local file hashed
	// once for every host of a run): the Conn does not hash src again, and
	// what landed must have that hash, so a source that changed since it
	// was hashed fails the upload. With sum "" the Conn hashes src as it
	// streams. owner is "user", "user:group" or "" (leave as is). It
	// returns the hex sha256 (lower case) of what landed.
	Upload(ctx context.Context, path string, src io.Reader, sum string, perm fs.FileMode, owner string) (string, error)
	// Download streams the remote file at path into dst.
	Download(ctx context.Context, path string, dst io.Writer) error
	// Stat describes the remote path; a missing path yields an error for
	// which errors.Is(err, fs.ErrNotExist) is true.
	Stat(ctx context.Context, path string) (fs.FileInfo, error)
	// Remove deletes the remote file at path (not directories).
	Remove(ctx context.Context, path string) error
	// Checksum returns the hex sha256 of the remote file at path.
	Checksum(ctx context.Context, path string) (string, error)
	// DialTCP opens a TCP connection to addr as seen from the host
	// (an SSH direct-tcpip tunnel).
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
	// Close releases the connection.
	Close() error
}
