package kmsim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/kmsctl/kmsctl/hsm"
)

// HKDF "info" labels of the keys derived from the HSM key. Changing one
// makes existing data directories, backups or clusters unreadable.
const (
	labelNodeKey   = "kmsim node key v1"     // Ed25519 seed of the inter-node client certificate
	labelRPCKey    = "kmsim rpc key v1"      // AES-256-GCM key sealing inter-node payloads
	labelBackupKey = "kmsim backup key v1"   // AES-256-GCM key sealing /v1/db snapshots
	labelRootAPI   = "kmsim root api key v1" // Ed25519 seed of the default root API key
	labelRootKey   = "kmsim root key v1"     // AES-256-GCM key sealing the root key on disk
)

// errOpen is returned when an AEAD ciphertext does not authenticate.
var errOpen = errors.New("message authentication failed")

// deriveKey derives a 32-byte key for label from the HSM key.
func deriveKey(k hsm.Key, label string) []byte {
	secret := k.Secret()
	out, err := hkdf.Key(sha256.New, secret[:], nil, label, 32)
	if err != nil { // only for invalid lengths, which 32 is not
		panic(fmt.Sprintf("kmsim: hkdf: %v", err))
	}
	return out
}

// deriveEd25519 derives an Ed25519 private key for label from the HSM key.
func deriveEd25519(k hsm.Key, label string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(deriveKey(k, label))
}

// seal encrypts plaintext with AES-256-GCM under key, binding aad. The
// output is nonce || ciphertext || tag.
func seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// open reverses seal.
func open(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errOpen
	}
	nonce, ct := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create GCM: %w", err)
	}
	return aead, nil
}

// randomBytes returns n random bytes.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}
