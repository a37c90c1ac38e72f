package kms

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// Backup streams the database snapshot of host (GET /v1/db; "" =
// load-balanced) to w and returns the number of bytes written. A gzip
// Content-Encoding is undone: w receives the raw snapshot, which Restore
// accepts as is. Needs SysAdmin.
func (c *Client) Backup(ctx context.Context, host string, w io.Writer) (int64, error) {
	// Two Accept values, as the vendor SDK sends them (docs/protocol.md §3.3).
	resp, ep, err := c.get(ctx, host, wire.PathDB, "", http.Header{
		"Accept":          {"application/*", "gzip"},
		"Accept-Encoding": {"gzip"},
	})
	if err != nil {
		return 0, fmt.Errorf("back up: %w", err)
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return 0, fmt.Errorf("back up from %s: decompress: %w", ep, err)
		}
		defer zr.Close()
		body = zr
	}
	n, err := io.Copy(w, body)
	if err != nil {
		return n, fmt.Errorf("back up from %s: after %d bytes: %w", ep, n, err)
	}
	return n, nil
}

// Restore streams a snapshot from r to host (PUT /v1/db), replacing its
// state. size is the length of r, or -1 if unknown. If r starts with the
// gzip magic (1f 8b), as files written by `minkms backup` do, it is
// decompressed and the raw snapshot is sent: with its exact Content-Length
// if r is an io.Seeker (an *os.File; it is then read twice), else chunked.
// Otherwise r is sent as is with Content-Length size. Sent to exactly host,
// never retried. Needs SysAdmin.
func (c *Client) Restore(ctx context.Context, host string, r io.Reader, size int64) error {
	if host == "" {
		return fmt.Errorf("restore: %w", ErrNoHost)
	}
	start := int64(-1) // offset of r to rewind to, -1 if r cannot seek
	if s, ok := r.(io.Seeker); ok {
		if off, err := s.Seek(0, io.SeekCurrent); err == nil {
			start = off
		}
	}
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2) // a short read means an empty or tiny snapshot; the server judges it
	var body io.Reader = br
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		raw, err := gunzippedSize(r, br, start)
		if err != nil {
			return fmt.Errorf("restore to %s: decompress: %w", host, err)
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("restore to %s: decompress: %w", host, err)
		}
		defer zr.Close()
		body, size = zr, raw
	}
	req := &request{
		method:  http.MethodPut,
		path:    wire.PathDB,
		stream:  body,
		length:  size,
		headers: http.Header{"Accept": {wire.ContentTypeProtobuf}},
	}
	resp, ep, err := c.do(ctx, host, req)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("restore: %w", errorFrom(resp, ep))
	}
	drain(resp)
	return nil
}

// gunzippedSize returns the decompressed size of the gzip stream in br (which
// reads r), and rewinds r to start and resets br for a second read. It
// returns -1 and touches nothing if r cannot seek (start < 0).
func gunzippedSize(r io.Reader, br *bufio.Reader, start int64) (int64, error) {
	if start < 0 {
		return -1, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		return 0, err
	}
	if _, err := r.(io.Seeker).Seek(start, io.SeekStart); err != nil {
		return 0, fmt.Errorf("rewind: %w", err)
	}
	br.Reset(r)
	return n, nil
}
