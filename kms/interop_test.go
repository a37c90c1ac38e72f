package kms

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"testing"
)

// Interop checks against docs/protocol.md for behaviour our simulator cannot
// catch, because both ends were written by us.

// GET /v1/db carries two Accept values, "application/*" and "gzip", as the
// vendor SDK sends them (docs/protocol.md §3.3), plus Accept-Encoding: gzip.
func TestBackupSendsBothAcceptValues(t *testing.T) {
	srv := newFakeKMS(t)
	var accept []string
	var acceptEnc string
	srv.other = func(w http.ResponseWriter, r *http.Request) {
		accept, acceptEnc = r.Header.Values("Accept"), r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Length", "4")
		w.Write([]byte("snap"))
	}
	c := newTestClient(t, testKey(t), srv)
	if _, err := c.Backup(context.Background(), srv.host(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"application/*", "gzip"}; !slices.Equal(accept, want) {
		t.Errorf("Accept values %q, want %q", accept, want)
	}
	if acceptEnc != "gzip" {
		t.Errorf("Accept-Encoding %q, want gzip", acceptEnc)
	}
}

// The vendor SDK ignores the body of a 200 answer to write commands
// (docs/protocol.md §4.3: what the real server sends there is unknown), so
// the client must not reject one that is not a matching frame.
func TestWriteIgnoresResponseBody(t *testing.T) {
	for _, body := range []string{
		"0000 00000000",        // a frame with another command id
		"0004 00000003 120102", // the request echoed, fine either way
		"deadbeef",             // not a frame at all
		"0004 00000000 0004 00000000",
	} {
		b, _ := hex.DecodeString(stripSpaces(body))
		srv := rawServer(t, 200, map[string]string{"Content-Type": "application/octet-stream"}, b, false)
		c := newTestClient(t, testKey(t), srv)
		if err := c.EditCluster(context.Background(), srv.host(), 2); err != nil {
			t.Errorf("200 with body %s to CLUSTER:EDIT: %v", body, err)
		}
	}
}

func stripSpaces(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)) }

// A gzip backup file given as a seekable reader (an *os.File) is restored as
// raw bytes with an exact Content-Length (docs/protocol.md §8), not chunked.
func TestRestoreGzipFileHasContentLength(t *testing.T) {
	snapshot := bytes.Repeat([]byte{9, 8, 7, 0x1f, 0x8b}, 3000)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(snapshot)
	zw.Close()
	for _, tt := range []struct {
		name    string
		r       io.Reader
		wantLen int64
	}{
		{"seekable", bytes.NewReader(zipped.Bytes()), int64(len(snapshot))},
		{"stream", io.MultiReader(bytes.NewReader(zipped.Bytes())), -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeKMS(t)
			var got []byte
			var gotLen int64
			var te []string
			srv.other = func(w http.ResponseWriter, r *http.Request) {
				gotLen, te = r.ContentLength, r.TransferEncoding
				got, _ = io.ReadAll(r.Body)
				w.Header().Set("Content-Length", "0")
			}
			c := newTestClient(t, testKey(t), srv)
			if err := c.Restore(context.Background(), srv.host(), tt.r, int64(zipped.Len())); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, snapshot) {
				t.Fatalf("server got %d bytes, want the raw snapshot (%d)", len(got), len(snapshot))
			}
			if gotLen != tt.wantLen {
				t.Errorf("Content-Length %d (Transfer-Encoding %q), want %d", gotLen, te, tt.wantLen)
			}
		})
	}
}

// A cancelled request is not a host failure: it must not push the host to the
// back of the load-balancing order for 30 s.
func TestCancelledRequestDoesNotMarkHostFailed(t *testing.T) {
	srv := newFakeKMS(t)
	c := newTestClient(t, testKey(t), srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ClusterStatus(ctx, ""); err == nil {
		t.Fatal("cancelled request succeeded")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failed) != 0 {
		t.Fatalf("cancelled request marked hosts failed: %v", c.failed)
	}
}
