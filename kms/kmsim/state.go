package kmsim

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key types, as KEY:STATUS reports them.
const (
	keyTypeAES256   = "AES256"
	keyTypeChaCha20 = "ChaCha20"
)

// Privileges of identities, as IdentityResponse carries them.
const (
	privSysAdmin uint32 = 1
	privAdmin    uint32 = 2
	privUser     uint32 = 3
)

// defaultEnclave is the enclave every fresh node has, and the one used by
// enclave-scoped commands sent to /v1/kms without an enclave name.
const defaultEnclave = "default"

// ciphertextVersion is the first byte of every ciphertext KEY:ENCRYPT and
// KEY:GENERATE produce: 0x01 || nonce || AEAD(ciphertext || tag).
const ciphertextVersion = 0x01

// nodeState is everything a node stores: its cluster membership and the
// replicated key-manager data. It is persisted sealed under the root key.
// A nodeState is never modified once published: a change makes a new one
// that shares what did not change (see clone and data).
type nodeState struct {
	ClusterID string            `json:"cluster_id"`
	NodeID    uint32            `json:"node_id"`
	Epoch     uint64            `json:"epoch"` // version of Nodes; bumped by every membership change
	Nodes     map[uint32]string `json:"nodes"` // the cluster definition: id → host
	Commit    uint64            `json:"commit"`
	Head      string            `json:"head,omitempty"` // the ID of the log entry that made Commit
	Data      *data             `json:"data"`
}

// fresh reports whether s is a fresh node: a one-node cluster that never committed anything.
func (s *nodeState) fresh() bool { return s.Commit == 0 && len(s.Nodes) == 1 }

// clone returns a copy of s to change: the definition is copied, the data
// (immutable) is shared.
func (s *nodeState) clone() *nodeState {
	c := *s
	c.Nodes = maps.Clone(s.Nodes)
	return &c
}

// maxID returns the highest node ID of the definition.
func (s *nodeState) maxID() uint32 {
	var m uint32
	for id := range s.Nodes {
		m = max(m, id)
	}
	return m
}

// idOf returns the ID of host in the definition.
func (s *nodeState) idOf(host string) (uint32, bool) {
	for id, h := range s.Nodes {
		if strings.EqualFold(h, host) {
			return id, true
		}
	}
	return 0, false
}

// data is the replicated key-manager state: what a backup holds. It is
// immutable: with/without return a changed copy that shares the rest, so a
// write costs the same whatever the number of objects.
type data struct {
	Enclaves map[string]*enclave `json:"enclaves"` // few: copied on write
}

type enclave struct {
	Name       string             `json:"name"`
	CreatedAt  time.Time          `json:"created_at"`
	CreatedBy  string             `json:"created_by,omitempty"`
	Keys       objects[*key]      `json:"keys"`
	Policies   objects[*policy]   `json:"policies"`
	Identities objects[*identity] `json:"identities"`
}

type key struct {
	Name     string       `json:"name"`
	Type     string       `json:"type"`
	Latest   uint32       `json:"latest"`   // the highest version ever created: never reused
	Versions []keyVersion `json:"versions"` // ascending by Version
}

type keyVersion struct {
	Version   uint32    `json:"version"`
	Secret    []byte    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

type policy struct {
	Name      string              `json:"name"`
	Allow     map[string][]string `json:"allow,omitempty"` // command name → key-name patterns
	Deny      map[string][]string `json:"deny,omitempty"`
	CreatedAt time.Time           `json:"created_at"`
	CreatedBy string              `json:"created_by,omitempty"`
}

type identity struct {
	Identity         string            `json:"identity"`
	Privilege        uint32            `json:"privilege"`
	Policy           string            `json:"policy,omitempty"`
	CreatedAt        time.Time         `json:"created_at"`
	CreatedBy        string            `json:"created_by,omitempty"`
	IsServiceAccount bool              `json:"service_account,omitempty"`
	Tags             map[string]string `json:"tags,omitempty"`
}

// newData returns the data of a fresh node: an empty default enclave.
func newData(now time.Time) *data {
	return &data{Enclaves: map[string]*enclave{defaultEnclave: newEnclave(defaultEnclave, now, "")}}
}

func newEnclave(name string, now time.Time, by string) *enclave {
	return &enclave{Name: name, CreatedAt: now.UTC(), CreatedBy: by}
}

// normalize completes freshly decoded data (not yet shared): a nil
// enclave map, and keys stored before key.Latest existed.
func (d *data) normalize() {
	if d.Enclaves == nil {
		d.Enclaves = map[string]*enclave{}
	}
	for _, e := range d.Enclaves {
		for _, k := range e.Keys.from("", "") {
			if n := len(k.Versions); n > 0 && k.Latest < k.Versions[n-1].Version {
				k.Latest = k.Versions[n-1].Version
			}
		}
	}
}

// withEnclave returns d with enclave e added or replaced.
func (d *data) withEnclave(e *enclave) *data {
	c := &data{Enclaves: maps.Clone(d.Enclaves)}
	c.Enclaves[e.Name] = e
	return c
}

// withoutEnclave returns d without enclave name.
func (d *data) withoutEnclave(name string) *data {
	c := &data{Enclaves: maps.Clone(d.Enclaves)}
	delete(c.Enclaves, name)
	return c
}

// findIdentity looks an identity up in every enclave.
func (d *data) findIdentity(id string) (*identity, *enclave) {
	for _, e := range d.Enclaves {
		if i, ok := e.Identities.get(id); ok {
			return i, e
		}
	}
	return nil, nil
}

// version returns version v of k; 0 means the latest.
func (k *key) version(v uint32) (*keyVersion, bool) {
	if len(k.Versions) == 0 {
		return nil, false
	}
	if v == 0 {
		return &k.Versions[len(k.Versions)-1], true
	}
	for i := range k.Versions {
		if k.Versions[i].Version == v {
			return &k.Versions[i], true
		}
	}
	return nil, false
}

// aead returns the AEAD of a key version.
func (kv *keyVersion) aead(typ string) (cipher.AEAD, error) {
	switch typ {
	case keyTypeChaCha20:
		return chacha20poly1305.New(kv.Secret)
	default:
		block, err := aes.NewCipher(kv.Secret)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	}
}

// encrypt seals plaintext under the key version (format: see ciphertextVersion).
func (kv *keyVersion) encrypt(typ string, plaintext, aad []byte) ([]byte, error) {
	aead, err := kv.aead(typ)
	if err != nil {
		return nil, fmt.Errorf("create cipher: %w", err)
	}
	nonce, err := randomBytes(aead.NonceSize())
	if err != nil {
		return nil, err
	}
	out := append([]byte{ciphertextVersion}, nonce...)
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// decrypt reverses encrypt; any failure is errOpen.
func (kv *keyVersion) decrypt(typ string, ciphertext, aad []byte) ([]byte, error) {
	aead, err := kv.aead(typ)
	if err != nil {
		return nil, errOpen
	}
	if len(ciphertext) < 1+aead.NonceSize()+aead.Overhead() || ciphertext[0] != ciphertextVersion {
		return nil, errOpen
	}
	nonce := ciphertext[1 : 1+aead.NonceSize()]
	pt, err := aead.Open(nil, nonce, ciphertext[1+aead.NonceSize():], aad)
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

// page returns the sorted names starting at continueAt (inclusive) that
// have prefix, at most limit of them, and the name that starts the next page.
func page(names []string, prefix, continueAt string, limit uint32) ([]string, string) {
	const maxLimit = 1000
	if limit == 0 || limit > maxLimit {
		limit = maxLimit
	}
	if continueAt != "" && !strings.HasPrefix(continueAt, prefix) {
		return nil, ""
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) || n < continueAt {
			continue
		}
		if uint32(len(out)) == limit {
			return out, n
		}
		out = append(out, n)
	}
	return out, ""
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
