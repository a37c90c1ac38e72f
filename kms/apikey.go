package kms

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"aead.dev/mtls"
)

// APIKey is a Key Manager API key: "k1:" + base64url(Ed25519 seed) or "k2:" +
// base64url(ECDSA scalar). Its String and GoString never show the secret;
// Secret does, and must only be used to hand the key to a secret store.
type APIKey struct {
	key mtls.PrivateKey
}

// ParseAPIKey parses a "k1:" or "k2:" API key. Errors never contain s.
func ParseAPIKey(s string) (APIKey, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "k1:") && !strings.HasPrefix(s, "k2:") {
		return APIKey{}, errors.New("parse API key: not a Key Manager API key (want k1: or k2: followed by base64url)")
	}
	k, err := mtls.ParsePrivateKey(s)
	if err != nil {
		// mtls errors name the problem (length, encoding) but never the key.
		return APIKey{}, fmt.Errorf("parse API key: %w", err)
	}
	return APIKey{key: k}, nil
}

// GenerateAPIKey returns a new random "k1:" (Ed25519) API key.
func GenerateAPIKey() (APIKey, error) {
	k, err := mtls.GenerateKeyEdDSA(rand.Reader)
	if err != nil {
		return APIKey{}, fmt.Errorf("generate API key: %w", err)
	}
	return APIKey{key: k}, nil
}

// IsZero reports whether k holds no key.
func (k APIKey) IsZero() bool { return k.key == nil }

// Identity returns the key's identity, "h1:" + base64url(SHA-256(SPKI)), or
// "" for the zero APIKey.
func (k APIKey) Identity() string {
	if k.key == nil {
		return ""
	}
	return k.key.Identity().String()
}

// Secret returns the key's text form ("k1:..."). It is the secret itself:
// never log it, print it or put it in argv.
func (k APIKey) Secret() string {
	if k.key == nil {
		return ""
	}
	return k.key.String()
}

// String returns a redacted form that shows the key type and its identity.
func (k APIKey) String() string {
	if k.key == nil {
		return "<no API key>"
	}
	return k.prefix() + "<redacted> (" + k.Identity() + ")"
}

// GoString is String: %#v must not print the key either.
func (k APIKey) GoString() string { return "kms.APIKey(" + k.String() + ")" }

func (k APIKey) prefix() string {
	if _, ok := k.key.(*mtls.ECDSAPrivateKey); ok {
		return "k2:"
	}
	return "k1:"
}

// certValidity is the validity of generated client certificates (the vendor
// SDK uses 90 days).
const certValidity = 90 * 24 * time.Hour

// Certificate returns a self-signed TLS client certificate for the key:
// subject CN = the identity, client-auth only, valid for 90 days from now.
// The server derives the identity from its public key alone.
func (k APIKey) Certificate() (tls.Certificate, error) {
	if k.key == nil {
		return tls.Certificate{}, errors.New("create client certificate: no API key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create client certificate: %w", err)
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: k.Identity()},
		NotBefore:             now,
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	priv, ok := k.key.Private().(crypto.Signer)
	if !ok {
		return tls.Certificate{}, errors.New("create client certificate: key cannot sign")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// CertificateIdentity returns the "h1:" identity of a certificate's public
// key, as a Key Manager server computes it for a peer.
func CertificateIdentity(cert *x509.Certificate) string {
	return mtls.CertificateIdentity(cert).String()
}

// ValidIdentity reports an error if s is not an "h1:" identity.
func ValidIdentity(s string) error {
	if !strings.HasPrefix(s, "h1:") {
		return fmt.Errorf("parse identity %q: want h1: followed by base64url", s)
	}
	if _, err := mtls.ParseIdentity(s); err != nil {
		return fmt.Errorf("parse identity %q: %w", s, err)
	}
	return nil
}
