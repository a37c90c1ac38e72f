package hsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const sentinel = "hsm:aes256:U0VOVElORUwtSFNNLUtFWS0wMTIzNDU2Nzg5YWJjZGU="

func TestParseRoundTripAndRedaction(t *testing.T) {
	k, err := Parse("  " + sentinel + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if k.Text() != sentinel {
		t.Fatalf("Text() = %q, want the input back", k.Text())
	}
	for _, s := range []string{k.String(), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, sentinel[len(Prefix):]) {
			t.Fatalf("formatted key leaks the secret: %q", s)
		}
	}
	if !strings.HasPrefix(k.Fingerprint(), "sha256:") || len(k.Fingerprint()) != 7+32 {
		t.Fatalf("fingerprint %q has the wrong shape", k.Fingerprint())
	}
}

func TestFingerprintDistinguishesKeys(t *testing.T) {
	a := New([32]byte{1})
	b := New([32]byte{2})
	if a.Fingerprint() == b.Fingerprint() || a.Equal(b) {
		t.Fatal("different keys share a fingerprint")
	}
	if a.Fingerprint() != New([32]byte{1}).Fingerprint() || !a.Equal(New([32]byte{1})) {
		t.Fatal("same key, different fingerprint")
	}
	if !(Key{}).IsZero() || a.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"hsm:aes128:" + sentinel[len(Prefix):],
		"hsm:aes256:not base64!!",
		"hsm:aes256:AAAA",
		"hsm:aes256:" + strings.TrimRight(sentinel[len(Prefix):], "="),
	} {
		_, err := Parse(in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) error = %v, want ErrMalformed", in, err)
		}
		if err != nil && len(in) > len(Prefix) && strings.Contains(err.Error(), in[len(Prefix):]) {
			t.Errorf("error leaks input: %v", err)
		}
	}
}
