package kms

import (
	"context"
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
