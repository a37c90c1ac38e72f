package kmsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/gofrs/flock"
	"github.com/google/renameio/v2"

	"github.com/kmsctl/kmsctl/hsm"
)

// Files under DIR. Both are JSON envelopes around AES-256-GCM ciphertext
// and are replaced atomically (temp file, fsync, rename).
const (
	rootKeyFile = "root.key" // the 32-byte root key, sealed under a key derived from the HSM key
	stateFile   = "state.db" // nodeState as JSON, sealed under the root key
	lockFile    = ".lock"    // held (flock) while a node uses DIR
)

const (
	rootKeyFormat = "kmsim-root-key-v1"
	stateFormat   = "kmsim-state-v1"
)

// envelope is the on-disk form of a sealed file.
type envelope struct {
	Format         string `json:"format"`
	HSMFingerprint string `json:"hsm_fingerprint,omitempty"`
	Sealed         []byte `json:"sealed"`
}

// store persists one node's state under DIR.
type store struct {
	dir     string
	rootKey []byte

	lock *flock.Flock

	mu     sync.Mutex // held while writing; guards closed
	closed bool
}

// close waits for a running save and makes later saves fail, so that
// nothing touches DIR once the node is stopped.
func (s *store) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		_ = s.lock.Unlock() // closes the descriptor; nothing is left to undo if that fails
	}
	s.closed = true
}

// openStore opens (or initialises) DIR with the HSM key and returns the
// stored state, or nil when DIR holds none yet.
func openStore(dir string, k hsm.Key) (*store, *nodeState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("kms: create data directory %s: %w", dir, err)
	}
	s := &store{dir: dir, lock: flock.New(filepath.Join(dir, lockFile))}
	ok, err := s.lock.TryLock()
	if err != nil {
		return nil, nil, fmt.Errorf("kms: lock %s: %w", filepath.Join(dir, lockFile), err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("kms: %s is in use by another minkms process (it holds %s); stop it first", dir, filepath.Join(dir, lockFile))
	}
	st, err := s.load(k)
	if err != nil {
		_ = s.lock.Unlock() // the load error is the one to report
		return nil, nil, err
	}
	return s, st, nil
}

// load reads (or initialises) the root key and reads the state.
func (s *store) load(k hsm.Key) (*nodeState, error) {
	dir := s.dir
	env, err := readEnvelope(filepath.Join(dir, rootKeyFile), rootKeyFormat)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
			return nil, fmt.Errorf("kms: %s holds %s but no %s: the directory is damaged; restore the file or wipe the directory", dir, stateFile, rootKeyFile)
		}
		if s.rootKey, err = randomBytes(32); err != nil {
			return nil, err
		}
		sealed, err := seal(deriveKey(k, labelRootKey), s.rootKey, []byte(rootKeyFormat))
		if err != nil {
			return nil, fmt.Errorf("kms: seal root key: %w", err)
		}
		if err := writeEnvelope(filepath.Join(dir, rootKeyFile), envelope{Format: rootKeyFormat, HSMFingerprint: k.Fingerprint(), Sealed: sealed}); err != nil {
			return nil, err
		}
		return nil, nil
	case err != nil:
		return nil, err
	}
	if env.HSMFingerprint != k.Fingerprint() {
		return nil, fmt.Errorf("kms: %s was initialised with a different HSM key (fingerprint %s, MINIO_KMS_HSM_KEY has %s): start with the original HSM key or wipe the directory", dir, env.HSMFingerprint, k.Fingerprint())
	}
	if s.rootKey, err = open(deriveKey(k, labelRootKey), env.Sealed, []byte(rootKeyFormat)); err != nil {
		return nil, fmt.Errorf("kms: unseal root key in %s: %w (wrong HSM key or damaged file)", filepath.Join(dir, rootKeyFile), err)
	}
	env, err = readEnvelope(filepath.Join(dir, stateFile), stateFormat)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	plain, err := open(s.rootKey, env.Sealed, []byte(stateFormat))
	if err != nil {
		return nil, fmt.Errorf("kms: unseal %s: %w (damaged file)", filepath.Join(dir, stateFile), err)
	}
	var st nodeState
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("kms: decode %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Data == nil || len(st.Nodes) == 0 {
		return nil, fmt.Errorf("kms: %s has no cluster definition or data: the directory is damaged; wipe it", filepath.Join(dir, stateFile))
	}
	st.Data.normalize()
	return &st, nil
}

// save replaces the stored state atomically.
func (s *store) save(st *nodeState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("node is stopped")
	}
	plain, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	sealed, err := seal(s.rootKey, plain, []byte(stateFormat))
	if err != nil {
		return fmt.Errorf("seal state: %w", err)
	}
	return writeEnvelope(filepath.Join(s.dir, stateFile), envelope{Format: stateFormat, Sealed: sealed})
}

func readEnvelope(path, format string) (envelope, error) {
	var env envelope
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return env, err
		}
		return env, fmt.Errorf("kms: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return env, fmt.Errorf("kms: decode %s: %w", path, err)
	}
	if env.Format != format {
		return env, fmt.Errorf("kms: %s has format %q, want %q", path, env.Format, format)
	}
	return env, nil
}

func writeEnvelope(path string, env envelope) error {
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := renameio.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
