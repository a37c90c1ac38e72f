package wire

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrorBodyRoundTrip(t *testing.T) {
	for _, ct := range []string{ContentTypeProtobuf, ContentTypeJSON, "text/plain", ""} {
		for _, e := range Canonical() {
			rec := httptest.NewRecorder()
			WriteError(rec, ct, e.WithDetail("node 3"))
			resp := rec.Result()
			if resp.StatusCode != e.Status {
				t.Fatalf("%s %q: status %d", ct, e.Message, resp.StatusCode)
			}
			if resp.Header.Get("Content-Length") == "" {
				t.Fatalf("%s: no Content-Length", ct)
			}
			got := ReadError(resp)
			if !got.Matches(e) || got.Message != e.Message+": node 3" {
				t.Fatalf("%s: ReadError = %+v, want %+v with detail", ct, got, e)
			}
		}
	}
}

func TestErrorJSONBody(t *testing.T) {
	body, ctype := EncodeError("application/json; charset=utf-8", ErrKeyNotFound)
	if ctype != ContentTypeJSON || string(body) != `{"message":"key does not exist"}` {
		t.Fatalf("EncodeError = %s (%s)", body, ctype)
	}
	if got := DecodeError(404, "application/json", []byte(`{"message":"x","extra":1}`)); got.Message != "x" {
		t.Fatalf("DecodeError tolerant of extra keys: %+v", got)
	}
}

func TestErrorMatches(t *testing.T) {
	if (Error{404, "key does not exist"}).Matches(ErrEnclaveNotFound) {
		t.Fatal("different messages matched")
	}
	if (Error{500, "key does not exist"}).Matches(ErrKeyNotFound) {
		t.Fatal("different statuses matched")
	}
	if (Error{404, "key does not existence"}).Matches(ErrKeyNotFound) {
		t.Fatal("prefix without separator matched")
	}
	if (Error{Status: 502}).Error() != "bad gateway" {
		t.Fatalf("empty message: %q", (Error{Status: 502}).Error())
	}
}

func TestReadErrorLimit(t *testing.T) {
	long := strings.Repeat("x", 3*MaxErrorBody)
	resp := &http.Response{
		StatusCode:    500,
		ContentLength: -1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader(long)),
	}
	if got := ReadError(resp); len(got.Message) != MaxErrorBody {
		t.Fatalf("read %d bytes of error body, want %d", len(got.Message), MaxErrorBody)
	}
}
