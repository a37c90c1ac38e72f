package remote

import (
	"context"
	"io"
	"io/fs"
	"net"
)

// Conn is the transport seam of one host: the method set of tasks.Conn,
// repeated here so that remote imports nothing of kmsctl. *Client and the
// decorators (Become, Redact, Trace) implement it.
type Conn interface {
	// Host names the host as the inventory knows it.
	Host() string
	// Run runs a shell command line; a non-zero exit yields an *ExitError.
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	// Upload streams src atomically to path and returns the hex sha256 of
	// what landed; sum is src's sha256 when known in advance ("" = hash src
	// while streaming), and what landed must have it.
	Upload(ctx context.Context, path string, src io.Reader, sum string, perm fs.FileMode, owner string) (string, error)
	// Download streams the remote file at path into dst.
	Download(ctx context.Context, path string, dst io.Writer) error
	// Stat describes a remote path (fs.ErrNotExist when missing).
	Stat(ctx context.Context, path string) (fs.FileInfo, error)
	// Remove deletes a remote file (fs.ErrNotExist when missing).
	Remove(ctx context.Context, path string) error
	// Checksum returns the hex sha256 of a remote file.
	Checksum(ctx context.Context, path string) (string, error)
	// DialTCP opens a direct-tcpip tunnel to addr as seen from the host.
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
	// Close releases the connection.
	Close() error
}
