package sshtest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Key is an ed25519 key made by GenerateKey: an ssh.Signer that also keeps
// its private key so that ClientKeyFile can write it out.
type Key struct {
	ssh.Signer
	// Private is the ed25519 private key.
	Private ed25519.PrivateKey
}

func newEd25519Signer() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("make ssh signer: %w", err)
	}
	return &Key{Signer: s, Private: priv}, nil
}

// GenerateKey returns a fresh ed25519 key (a *Key, usable as an ssh.Signer
// for host keys, client keys and CAs).
func GenerateKey(t testing.TB) *Key {
	t.Helper()
	k, err := newEd25519Signer()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ClientKeyFile writes key as an OpenSSH private key file (mode 0600, with
// key.pub beside it) in a fresh t.TempDir and returns its path. A non-empty
// passphrase encrypts the file.
func ClientKeyFile(t testing.TB, key *Key, passphrase string) string {
	t.Helper()
	var (
		block *pem.Block
		err   error
	)
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(crypto.PrivateKey(key.Private), "sshtest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(crypto.PrivateKey(key.Private), "sshtest", []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("marshal private key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(key.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// KnownHostsLine returns a known_hosts line for key at addr ("host:port" or
// "host"), in the form OpenSSH writes ("[127.0.0.1]:2222 ssh-ed25519 ...").
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
}

// HashedKnownHostsLine is KnownHostsLine with the host name hashed, as
// OpenSSH's HashKnownHosts writes it.
func HashedKnownHostsLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(addr))}, key)
}

// RevokedLine returns a "@revoked" known_hosts line for key.
func RevokedLine(pattern string, key ssh.PublicKey) string {
	return "@revoked " + pattern + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// WriteKnownHosts writes lines (one per line) to path with mode 0600.
func WriteKnownHosts(t testing.TB, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CA is a certificate authority for host certificates.
type CA struct {
	// Key signs the certificates.
	Key *Key
}

// NewCA returns a CA with a fresh ed25519 key.
func NewCA(t testing.TB) *CA {
	t.Helper()
	return &CA{Key: GenerateKey(t)}
}

// PublicKey returns the CA's public key.
func (ca *CA) PublicKey() ssh.PublicKey { return ca.Key.PublicKey() }

// KnownHostsLine returns an "@cert-authority PATTERN KEY" known_hosts line
// trusting this CA for hosts matching pattern (for a non-standard port the
// pattern must match "[127.0.0.1]:PORT", see knownhosts.Normalize).
func (ca *CA) KnownHostsLine(pattern string) string {
	return "@cert-authority " + pattern + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
}

// SignHost returns a host certificate for key, valid for an hour around now
// for the given principals (host names as the client dials them, for
// example "127.0.0.1").
func (ca *CA) SignHost(t testing.TB, key ssh.PublicKey, principals ...string) *ssh.Certificate {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          uint64(now.UnixNano()),
		CertType:        ssh.HostCert,
		KeyId:           "sshtest host",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca.Key); err != nil {
		t.Fatalf("sign host certificate: %v", err)
	}
	return cert
}
