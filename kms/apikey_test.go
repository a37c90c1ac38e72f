package kms

import (
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
)

// The test vector of docs/protocol.md §2.4.
const (
	vectorKey      = "k1:d7cY_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2E"
	vectorPublic   = "40cf7de0726252d17949bd19bdbc0d648f7906f55a71f191c8a52b7234ab17fe"
	vectorIdentity = "h1:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw"
)

func TestAPIKeyVector(t *testing.T) {
	k, err := ParseAPIKey(vectorKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Identity(); got != vectorIdentity {
		t.Fatalf("Identity = %s, want %s", got, vectorIdentity)
	}
	cert, err := k.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	spki := cert.Leaf.RawSubjectPublicKeyInfo
	if want := "302a300506032b6570032100" + vectorPublic; hex.EncodeToString(spki) != want {
		t.Fatalf("SPKI = %x, want %s", spki, want)
	}
	sum := sha256.Sum256(spki)
	if got := "h1:" + base64.RawURLEncoding.EncodeToString(sum[:]); got != vectorIdentity {
		t.Fatalf("h1 of SPKI = %s", got)
	}
	if got := CertificateIdentity(cert.Leaf); got != vectorIdentity {
		t.Fatalf("CertificateIdentity = %s", got)
	}
	if k.Secret() != vectorKey {
		t.Fatal("Secret does not round-trip the key text")
	}
}

func TestClientCertificateFields(t *testing.T) {
	k := testKey(t)
	cert, err := k.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf.Subject.CommonName != k.Identity() || leaf.Issuer.CommonName != k.Identity() {
		t.Errorf("subject %q issuer %q, want the identity", leaf.Subject.CommonName, leaf.Issuer.CommonName)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v, want client auth only", leaf.ExtKeyUsage)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Errorf("KeyUsage %v IsCA %v BasicConstraintsValid %v", leaf.KeyUsage, leaf.IsCA, leaf.BasicConstraintsValid)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 90*24*time.Hour {
		t.Errorf("validity %v, want 90 days", d)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestAPIKeyECDSA(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		gen, err := mtls.GenerateKeyECDSA(curve, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseAPIKey(gen.String())
		if err != nil {
			t.Fatalf("%s: %v", curve.Params().Name, err)
		}
		if !strings.HasPrefix(gen.String(), "k2:") {
			t.Fatalf("generated ECDSA key is not k2: (%d chars)", len(gen.String()))
		}
		cert, err := k.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(gen.Public())
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		if want := "h1:" + base64.RawURLEncoding.EncodeToString(sum[:]); k.Identity() != want || CertificateIdentity(cert.Leaf) != want {
			t.Fatalf("%s: identity %s / %s, want %s", curve.Params().Name, k.Identity(), CertificateIdentity(cert.Leaf), want)
		}
		if !strings.HasPrefix(k.String(), "k2:<redacted>") {
			t.Fatalf("String = %q", k.String())
		}
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	for _, s := range []string{
		"", "k3:d7cY_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2E", "kes:v1:abc",
		"k1:d7cY_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2", // one char short
		"k1:d7cY_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2E=",
		"k1:!!!!_5k8HbBGkZpoy2hGmvkxg83QDBXsA_nFXDfTk2E",
		"h1:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw",
	} {
		if _, err := ParseAPIKey(s); err == nil {
			t.Errorf("ParseAPIKey accepted a malformed key (%d chars)", len(s))
		}
	}
}

// TestAPIKeyNeverPrinted uses a sentinel key and checks every way the key or
// a client holding it could be printed, and the errors of near-miss keys.
func TestAPIKeyNeverPrinted(t *testing.T) {
	sentinel := testKey(t)
	secret := sentinel.Secret()
	payload := strings.TrimPrefix(secret, "k1:")
	cfg := Config{Endpoints: []string{"127.0.0.1:1"}, APIKey: sentinel}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, v := range []any{sentinel, &sentinel, cfg, &cfg, c} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			outputs = append(outputs, fmt.Sprintf(verb, v))
		}
	}
	// Near-miss keys built from the secret must not be echoed in errors.
	for _, bad := range []string{secret + "x", secret[:len(secret)-1], "k3:" + payload, "k1:" + payload + "=="} {
		_, err := ParseAPIKey(bad)
		if err == nil {
			t.Fatalf("ParseAPIKey accepted a near-miss key")
		}
		outputs = append(outputs, err.Error())
	}
	if _, err := New(Config{Endpoints: []string{"bad/endpoint"}, APIKey: sentinel}); err != nil {
		outputs = append(outputs, err.Error())
	}
	for _, out := range outputs {
		if strings.Contains(out, payload) || strings.Contains(out, payload[:20]) {
			t.Fatalf("API key leaked in output: %q", strings.ReplaceAll(out, payload, "<SENTINEL>"))
		}
	}
	if !strings.Contains(sentinel.String(), sentinel.Identity()) {
		t.Errorf("String %q lacks the identity", sentinel.String())
	}
}

func TestValidIdentity(t *testing.T) {
	if err := ValidIdentity(vectorIdentity); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "h1:", "h1:abc", "h2:Rvxa7nj8zkL48CeDkN6LhpX-K7KK6uhIhpBOcTHNhWw", vectorKey} {
		if err := ValidIdentity(s); err == nil {
			t.Errorf("ValidIdentity(%q) = nil", s)
		}
	}
	var zero APIKey
	if zero.Identity() != "" || !zero.IsZero() || zero.Secret() != "" {
		t.Fatal("zero APIKey is not empty")
	}
	if _, err := zero.Certificate(); err == nil {
		t.Fatal("zero APIKey made a certificate")
	}
}
