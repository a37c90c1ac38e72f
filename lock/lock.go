// Package lock keeps kmsctl's local cluster locks: one lock file per
// cluster in a directory it is given (0700; files 0600), held with flock(2)
// through github.com/gofrs/flock, and a holder record beside it naming who
// holds it (user@host, pid, run ID, command, the step in flight, since
// when), which a second run reads to name the holder. The kernel releases
// a flock when its process dies, so a record left by a dead process does
// not block anyone: it is ignored while the lock is free and overwritten
// by the next holder. Several clusters are locked in sorted order, so two
// runs never wait on each other crosswise.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// Holder describes who holds a cluster's lock.
type Holder struct {
	User    string    `json:"user"` // user@host of the operator
	PID     int       `json:"pid"`
	Run     string    `json:"run"`     // the run's ID
	Command string    `json:"command"` // e.g. "kmsctl play recover.yml"
	Step    string    `json:"step,omitempty"`
	Since   time.Time `json:"since"`
}

// String names the holder for a message: "alice@bastion1 (pid 4242, run
// ID, `kmsctl play x`, since 08:51 UTC)".
func (h Holder) String() string {
	var b strings.Builder
	b.WriteString(h.User)
	fmt.Fprintf(&b, " (pid %d, run %s, `%s`", h.PID, h.Run, h.Command)
	if h.Step != "" {
		fmt.Fprintf(&b, ", at %s", h.Step)
	}
	fmt.Fprintf(&b, ", since %s UTC)", h.Since.UTC().Format("2006-01-02 15:04"))
	return b.String()
}

// HeldError is returned when a cluster's lock is held by another run.
type HeldError struct {
	Cluster string
	// Holder is the holder's record; nil when it cannot be read (the
	// holder is between taking the lock and writing it).
	Holder *Holder
}

// Error names the cluster and its holder.
func (e *HeldError) Error() string {
	if e.Holder == nil {
		return fmt.Sprintf("cluster %s is locked by another run (its holder record is not written yet)", e.Cluster)
	}
	return fmt.Sprintf("cluster %s is locked by %s", e.Cluster, e.Holder)
}

// validCluster is the shape of a cluster name, which names files.
var validCluster = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// probeGrace is how long Acquire keeps trying when it may not wait: a
// `kmsctl lock status` elsewhere holds a shared lock for a moment while it
// looks, which must not refuse a run.
const probeGrace = 200 * time.Millisecond

// retryDelay is the pause between attempts while waiting.
const retryDelay = 100 * time.Millisecond

func paths(dir, cluster string) (lockPath, holderPath string, err error) {
	if !validCluster.MatchString(cluster) {
		return "", "", fmt.Errorf("cluster name %q: want letters, digits, '.', '_' and '-'", cluster)
	}
	return filepath.Join(dir, cluster+".lock"), filepath.Join(dir, cluster+".holder"), nil
}

// Set is the locks of one run, held until Release.
type Set struct {
	mu       sync.Mutex
	clusters []string
	locks    []*flock.Flock
	holder   Holder
	dir      string
}

// Clusters returns the locked clusters, sorted.
func (s *Set) Clusters() []string { return append([]string(nil), s.clusters...) }

// Acquire locks every cluster of clusters (sorted, duplicates once) under
// dir for h, waiting up to wait for each that another run holds (ctx ends
// the wait too). When one cannot be taken it releases those it took and
// returns a *HeldError naming the holder.
func Acquire(ctx context.Context, dir string, clusters []string, h Holder, wait time.Duration) (*Set, error) {
	names := append([]string(nil), clusters...)
	sort.Strings(names)
	names = slices.Compact(names)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict lock directory: %w", err)
	}
	if wait < probeGrace {
		wait = probeGrace
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	s := &Set{holder: h, dir: dir}
	for _, c := range names {
		lp, hp, err := paths(dir, c)
		if err != nil {
			return nil, errors.Join(err, s.Release())
		}
		fl := flock.New(lp, flock.SetPermissions(0o600))
		ok, err := fl.TryLockContext(wctx, retryDelay)
		if !ok && ctx.Err() != nil {
			return nil, errors.Join(fmt.Errorf("lock cluster %s: %w", c, ctx.Err()), s.Release())
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, errors.Join(fmt.Errorf("lock cluster %s: %w", c, err), s.Release())
		}
		if !ok {
			held := &HeldError{Cluster: c}
			if rec, err := readHolder(hp); err == nil {
				held.Holder = rec
			}
			return nil, errors.Join(held, s.Release())
		}
		s.clusters = append(s.clusters, c)
		s.locks = append(s.locks, fl)
		if err := writeHolder(hp, h); err != nil {
			return nil, errors.Join(err, s.Release())
		}
	}
	return s, nil
}

// SetStep records the step in flight in every holder record of s.
func (s *Set) SetStep(step string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holder.Step = step
	var errs []error
	for _, c := range s.clusters {
		_, hp, _ := paths(s.dir, c)
		errs = append(errs, writeHolder(hp, s.holder))
	}
	return errors.Join(errs...)
}

// Release removes the holder records and releases the locks, in reverse
// order. Releasing again does nothing.
func (s *Set) Release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i := len(s.locks) - 1; i >= 0; i-- {
		_, hp, _ := paths(s.dir, s.clusters[i])
		if err := os.Remove(hp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove lock holder record: %w", err))
		}
		if err := s.locks[i].Unlock(); err != nil {
			errs = append(errs, fmt.Errorf("unlock cluster %s: %w", s.clusters[i], err))
		}
	}
	s.locks, s.clusters = nil, nil
	return errors.Join(errs...)
}

// State is what Status finds for one cluster.
type State struct {
	Cluster string `json:"cluster"`
	Held    bool   `json:"held"`
	// Holder is the holder's record when held (nil if not written yet).
	Holder *Holder `json:"holder,omitempty"`
}

// Status reports whether cluster's lock under dir is held, and by whom. It
// holds a shared lock for a moment to find out.
func Status(dir, cluster string) (State, error) {
	lp, hp, err := paths(dir, cluster)
	if err != nil {
		return State{}, err
	}
	st := State{Cluster: cluster}
	if _, err := os.Stat(lp); errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	fl := flock.New(lp, flock.SetFlag(os.O_RDONLY))
	ok, err := fl.TryRLock()
	if err != nil {
		return State{}, fmt.Errorf("probe lock of cluster %s: %w", cluster, err)
	}
	if ok {
		if err := fl.Unlock(); err != nil {
			return State{}, fmt.Errorf("probe lock of cluster %s: %w", cluster, err)
		}
		return st, nil
	}
	st.Held = true
	if rec, err := readHolder(hp); err == nil {
		st.Holder = rec
	} else if !errors.Is(err, fs.ErrNotExist) {
		return State{}, err
	}
	return st, nil
}

// List reports every cluster with a lock file under dir, sorted by name.
// A missing dir has none.
func List(dir string) ([]State, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	var out []State
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || !validCluster.MatchString(name) {
			continue
		}
		st, err := Status(dir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// writeHolder replaces the record at path atomically (temp file, fsync,
// rename), so a reader never sees half of one.
func writeHolder(path string, h Holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode lock holder: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".holder-*")
	if err != nil {
		return fmt.Errorf("write lock holder: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write lock holder: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write lock holder: %w", err)
	}
	return nil
}

// readHolder reads the record at path.
func readHolder(path string) (*Holder, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lock holder: %w", err)
	}
	var h Holder
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("read lock holder %s: %w", path, err)
	}
	return &h, nil
}
