package hsm

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// counting is the key 00 01 02 ... 1f.
const countingText = "hsm:aes256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// TestFingerprintKnownAnswer pins the fingerprint: backup manifests record
// it, so a change would make every existing backup look like it belongs to
// another key. The values were computed with openssl:
//
//	printf 'kmsctl hsm fingerprint v1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f
//
// and truncated to 16 bytes.
func TestFingerprintKnownAnswer(t *testing.T) {
	k, err := Parse(countingText)
	if err != nil {
		t.Fatal(err)
	}
	var want [32]byte
	for i := range want {
		want[i] = byte(i)
	}
	if k.Secret() != want {
		t.Fatalf("Secret() = %x, want 00 01 02 ... 1f", k.Secret())
	}
	if got := k.Fingerprint(); got != "sha256:74460d9637bb3d6987d7036c36ee6dab" {
		t.Errorf("Fingerprint() = %s", got)
	}
	if got := New([32]byte{1}).Fingerprint(); got != "sha256:944fd6a332be5387e81533c8a3bc2592" {
		t.Errorf("Fingerprint of 01 00 ... 00 = %s", got)
	}
	if got := New(want).Text(); got != countingText {
		t.Errorf("Text() = %q, want %q", got, countingText)
	}
}

// TestFormattingNamesTheFingerprint: the redacted forms still identify the
// key (by fingerprint) and never show it.
func TestFormattingNamesTheFingerprint(t *testing.T) {
	k, err := Parse(countingText)
	if err != nil {
		t.Fatal(err)
	}
	want := "hsm:aes256:[REDACTED " + k.Fingerprint() + "]"
	for _, got := range []string{k.String(), k.GoString(), fmt.Sprintf("%v|%s|%#v|%+v", k, k, k, k)} {
		if !strings.Contains(got, want) || strings.Contains(got, countingText[len(Prefix):]) {
			t.Errorf("formatted key %q, want %q and not the key", got, want)
		}
	}
}

// TestParseIsStrict: only the canonical standard base64 of 32 bytes with
// its padding is a key; whitespace around it is allowed, inside it is not.
func TestParseIsStrict(t *testing.T) {
	payload := countingText[len(Prefix):]
	for _, in := range []string{
		Prefix + payload[:20] + "\n" + payload[20:],                                // a line break inside
		Prefix + payload[:20] + " " + payload[20:],                                 // a space inside
		Prefix + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)), // URL alphabet
		Prefix + payload[:len(payload)-2] + "9=",                                   // non-zero padding bits
		Prefix + base64.StdEncoding.EncodeToString(make([]byte, 33)),               // 33 bytes
		Prefix + base64.StdEncoding.EncodeToString(make([]byte, 31)),               // 31 bytes
		"HSM:AES256:" + payload,                                                    // the prefix is case-sensitive
		" " + Prefix + " " + payload,                                               // a space after the prefix
	} {
		if _, err := Parse(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", in, err)
		}
	}
	for _, in := range []string{countingText, "\t" + countingText + " \r\n"} {
		if k, err := Parse(in); err != nil || k.Text() != countingText {
			t.Errorf("Parse(%q) = %v, %v", in, k.Text(), err)
		}
	}
}

// TestEqualAndIsZero compare every byte, not a prefix.
func TestEqualAndIsZero(t *testing.T) {
	var a, b [32]byte
	b[31] = 1
	if New(a).Equal(New(b)) {
		t.Error("keys differing in the last byte are Equal")
	}
	if !New(b).Equal(New(b)) {
		t.Error("a key is not Equal to itself")
	}
	if !New(a).IsZero() || New(b).IsZero() {
		t.Error("IsZero looks at less than the whole key")
	}
}
