package kms

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"testing"
)

// Interop checks against the fact sheet for behaviour our simulator cannot
// catch, because both ends were written by us.

// GET /v1/db carries two Accept values, "application/*" and "gzip", as the
// vendor SDK sends them (fact sheet §3), plus Accept-Encoding: gzip.
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

// The vendor SDK ignores the body of a 200 answer to write commands (fact
// sheet §4.3: what the real server sends there is unknown), so the client must
// not reject one that is not a matching frame.
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
