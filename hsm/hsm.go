// Package hsm parses and fingerprints Key Manager HSM keys (hsm:aes256:<base64 of 32 bytes>).
// It is pure: the key never leaves the process through this package, and its
// String form is redacted so that it cannot reach a log by accident.
package hsm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Prefix is the text prefix of a software HSM key.
const Prefix = "hsm:aes256:"

// ErrMalformed is returned (wrapped) for text that is not an HSM key.
var ErrMalformed = errors.New("malformed HSM key")

// Key is a parsed 256-bit software HSM key. Its zero value is not a key.
type Key struct {
	secret [32]byte
}

// Parse decodes "hsm:aes256:" followed by the standard, padded base64 of
// exactly 32 bytes. Surrounding whitespace is ignored; whitespace inside is
// an error. Errors never contain the input.
func Parse(text string) (Key, error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, Prefix) {
		return Key{}, fmt.Errorf("parse HSM key: %w: want prefix %q", ErrMalformed, Prefix)
	}
	payload := text[len(Prefix):]
	// Strict decoding still skips line breaks; a key is one unbroken token.
	raw, err := base64.StdEncoding.Strict().DecodeString(payload)
	if err != nil || strings.ContainsAny(payload, "\r\n") {
		return Key{}, fmt.Errorf("parse HSM key: %w: payload is not standard base64", ErrMalformed)
	}
	if len(raw) != 32 {
		return Key{}, fmt.Errorf("parse HSM key: %w: payload is %d bytes, want 32", ErrMalformed, len(raw))
	}
	var k Key
	copy(k.secret[:], raw)
	return k, nil
}

// New returns the key holding secret. It is meant for generating keys and for tests.
func New(secret [32]byte) Key { return Key{secret: secret} }

// Secret returns the raw 32 key bytes. Callers must not log them.
func (k Key) Secret() [32]byte { return k.secret }

// Text returns the key in its "hsm:aes256:..." text form. Callers must not log it.
func (k Key) Text() string {
	return Prefix + base64.StdEncoding.EncodeToString(k.secret[:])
}

// Fingerprint identifies the key without revealing it: "sha256:" followed by
// the hex of HMAC-SHA256(key, "kmsctl hsm fingerprint v1"), truncated to 16 bytes.
// Two keys have the same fingerprint exactly when they are the same key.
func (k Key) Fingerprint() string {
	mac := hmac.New(sha256.New, k.secret[:])
	mac.Write([]byte("kmsctl hsm fingerprint v1"))
	return fmt.Sprintf("sha256:%x", mac.Sum(nil)[:16])
}

// Equal reports whether k and other are the same key.
func (k Key) Equal(other Key) bool { return hmac.Equal(k.secret[:], other.secret[:]) }

// IsZero reports whether k is the zero value (no key).
func (k Key) IsZero() bool { return bytes.Equal(k.secret[:], make([]byte, 32)) }

// String is redacted so that a key formatted by accident never leaks.
func (k Key) String() string { return "hsm:aes256:[REDACTED " + k.Fingerprint() + "]" }

// GoString is redacted like String.
func (k Key) GoString() string { return k.String() }
