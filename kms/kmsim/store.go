package kmsim

import (
	"encoding/binary"
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

// Files under DIR. root.key and state.db are JSON envelopes around
// AES-256-GCM ciphertext, replaced atomically (temp file, fsync, rename).
// log.db is appended to (and fsync-ed) by every write: records of a 4-byte
// big-endian length and an entry as JSON sealed under the root key. The
// state is state.db with the entries of log.db that follow it; once the log
// outgrows the state (at least minCompact bytes), the state is written
// anew and the log emptied.
const (
	rootKeyFile = "root.key" // the 32-byte root key, sealed under a key derived from the HSM key
	stateFile   = "state.db" // nodeState as JSON, sealed under the root key
	logFile     = "log.db"   // the entries committed after state.db
	lockFile    = ".lock"    // held (flock) while a node uses DIR
)

const (
	rootKeyFormat = "kmsim-root-key-v1"
	stateFormat   = "kmsim-state-v1"
	logFormat     = "kmsim-log-v1"
)

// minCompact is the log size below which the log is never compacted.
const minCompact = 1 << 20

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

	mu         sync.Mutex // held while writing; guards the fields below
	closed     bool
	log        *os.File // log.db, open for appending
	logSize    int64
	stateSize  int64 // of the last state.db written or read
	minCompact int64 // minCompact; smaller in tests
}

// close waits for a running save and makes later saves fail, so that
// nothing touches DIR once the node is stopped.
func (s *store) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		if s.log != nil {
			_ = s.log.Close() // every record was fsync-ed when written
		}
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
	s := &store{dir: dir, lock: flock.New(filepath.Join(dir, lockFile)), minCompact: minCompact}
	ok, err := s.lock.TryLock()
	if err != nil {
		return nil, nil, fmt.Errorf("kms: lock %s: %w", filepath.Join(dir, lockFile), err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("kms: %s is in use by another minkms process (it holds %s); stop it first", dir, filepath.Join(dir, lockFile))
	}
	// Snapshots spooled by restores that a crash interrupted.
	if tmp, err := filepath.Glob(filepath.Join(dir, "restore-*.tmp")); err == nil {
		for _, f := range tmp {
			_ = os.Remove(f) // a leftover only costs space
		}
	}
	st, err := s.load(k)
	if err == nil && st != nil {
		st, err = s.replay(st)
	}
	if err == nil {
		s.log, err = os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
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
	s.stateSize = int64(len(env.Sealed))
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

// replay applies the records of log.db that follow st. It stops at the
// first record that is torn (a crash while appending) or does not follow
// (written before the last state.db, when a crash came between writing it
// and emptying the log), and cuts the log there.
func (s *store) replay(st *nodeState) (*nodeState, error) {
	path := filepath.Join(s.dir, logFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kms: read %s: %w", path, err)
	}
	var good int64
	for off := 0; off+4 <= len(b); {
		size := int(binary.BigEndian.Uint32(b[off:]))
		if size > len(b)-off-4 {
			break
		}
		plain, err := open(s.rootKey, b[off+4:off+4+size], []byte(logFormat))
		if err != nil {
			return nil, fmt.Errorf("kms: unseal %s at offset %d: %w (damaged file)", path, off, err)
		}
		var e entry
		if err := json.Unmarshal(plain, &e); err != nil {
			return nil, fmt.Errorf("kms: decode %s at offset %d: %w", path, off, err)
		}
		off += 4 + size
		if e.Index <= st.Commit {
			good = int64(off) // already in state.db
			continue
		}
		if e.Data != nil {
			e.Data.normalize()
		}
		next, err := st.apply(&e)
		if err != nil {
			break
		}
		st, good = next, int64(off)
	}
	if good < int64(len(b)) {
		if err := os.Truncate(path, good); err != nil {
			return nil, fmt.Errorf("kms: cut %s after its last good record: %w", path, err)
		}
	}
	s.logSize = good
	return st, nil
}

// save replaces the stored state atomically and empties the log.
func (s *store) save(st *nodeState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked(st)
}

func (s *store) saveLocked(st *nodeState) error {
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
	if err := writeEnvelope(filepath.Join(s.dir, stateFile), envelope{Format: stateFormat, Sealed: sealed}); err != nil {
		return err
	}
	s.stateSize = int64(len(sealed))
	if s.log == nil || s.logSize == 0 {
		return nil
	}
	if err := s.log.Truncate(0); err != nil {
		return fmt.Errorf("empty %s: %w", logFile, err)
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", logFile, err)
	}
	s.logSize = 0
	return nil
}

// append stores entry e, which made state st: it appends e to the log, or
// writes st as the new state when the log has outgrown it (or e is a
// restore, which carries all data).
func (s *store) append(e *entry, st *nodeState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("node is stopped")
	}
	if e.Data != nil || s.logSize >= max(s.stateSize, s.minCompact) {
		return s.saveLocked(st)
	}
	plain, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode log entry: %w", err)
	}
	sealed, err := seal(s.rootKey, plain, []byte(logFormat))
	if err != nil {
		return fmt.Errorf("seal log entry: %w", err)
	}
	rec := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(sealed)), uint32(len(sealed)))
	rec = append(rec, sealed...)
	if _, err := s.log.Write(rec); err != nil {
		// Cut a partial record, so that later records follow the good ones.
		if terr := s.log.Truncate(s.logSize); terr != nil {
			return fmt.Errorf("append to %s: %w (and cut the partial record: %v)", logFile, err, terr)
		}
		return fmt.Errorf("append to %s: %w", logFile, err)
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", logFile, err)
	}
	s.logSize += int64(len(rec))
	return nil
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
