package kmsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	"aead.dev/mtls"

	"github.com/kmsctl/kmsctl/hsm"
)

// RootAPIKey returns the root API key ("k1:...") derived from the HSM key
// and its identity ("h1:..."). It is the SysAdmin of a node started without
// admin.identity, as the real server's generated root key is.
func RootAPIKey(k hsm.Key) (apiKey, identity string, err error) {
	apiKey = "k1:" + base64.RawURLEncoding.EncodeToString(deriveKey(k, labelRootAPI))
	identity, err = APIKeyIdentity(apiKey)
	return apiKey, identity, err
}

// NewAPIKey returns a new random "k1:" API key and its "h1:" identity.
func NewAPIKey() (apiKey, identity string, err error) {
	seed, err := randomBytes(ed25519.SeedSize)
	if err != nil {
		return "", "", err
	}
	apiKey = "k1:" + base64.RawURLEncoding.EncodeToString(seed)
	identity, err = APIKeyIdentity(apiKey)
	return apiKey, identity, err
}

// APIKeyIdentity returns the "h1:" identity of a "k1:" or "k2:" API key.
// Errors never contain the key.
func APIKeyIdentity(apiKey string) (string, error) {
	key, err := mtls.ParsePrivateKey(apiKey)
	if err != nil {
		return "", fmt.Errorf("parse API key: not a k1:/k2: key")
	}
	return key.Identity().String(), nil
}

// ClientCertificate returns a self-signed TLS client certificate for an API
// key, as the Key Manager clients present it.
func ClientCertificate(apiKey string) (tls.Certificate, error) {
	key, err := mtls.ParsePrivateKey(apiKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse API key: not a k1:/k2: key")
	}
	signer, ok := key.Private().(crypto.Signer)
	if !ok {
		return tls.Certificate{}, fmt.Errorf("API key is not a signing key")
	}
	return selfSigned(signer, key.Identity().String())
}

// nodeCredential returns the inter-node client certificate derived from the
// HSM key and its identity. Only nodes with the same HSM key have it.
func nodeCredential(k hsm.Key) (tls.Certificate, string, error) {
	priv := deriveEd25519(k, labelNodeKey)
	id, err := publicKeyIdentity(priv.Public())
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err := selfSigned(priv, id)
	return cert, id, err
}

// publicKeyIdentity is "h1:" + base64url(SHA-256(DER SubjectPublicKeyInfo)).
func publicKeyIdentity(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "h1:" + base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// selfSigned returns a self-signed client certificate for signer.
func selfSigned(signer crypto.Signer, cn string) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create serial: %w", err)
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: signer}, nil
}

// CA is a throw-away certificate authority for tests and labs.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// NewCA returns a new ECDSA P-256 CA valid for ten years.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA key: %w", err)
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "kmsim test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns a PEM server certificate (also valid for client auth) and
// its PEM PKCS#8 key for the given DNS names and IP addresses.
func (ca *CA) Issue(hosts ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("create server key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("create serial: %w", err)
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "kmsim"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode server key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// ServerCertificate is Issue as a tls.Certificate.
func (ca *CA) ServerCertificate(hosts ...string) (tls.Certificate, error) {
	certPEM, keyPEM, err := ca.Issue(hosts...)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// publicIdentity checks an "h1:" identity text and returns its canonical form.
func publicIdentity(s string) (string, error) {
	id, err := mtls.ParseIdentity(s)
	if err != nil || id.IsZero() {
		return "", fmt.Errorf("invalid identity %q", s)
	}
	return id.String(), nil
}
