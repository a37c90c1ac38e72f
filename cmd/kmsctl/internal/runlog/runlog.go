// Package runlog creates kmsctl's always-on run log: one file of JSON lines
// per run, at debug level, with secrets masked, in the user's state
// directory (files 0600, directories 0700).
package runlog

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/kmsctl/kmsctl/redact"
)

// Keep is how many run logs Create keeps: older ones are removed.
const Keep = 500

// Log is one run's log file.
type Log struct {
	// ID identifies the run: its start time and a random suffix.
	ID string
	// Path is the file's path.
	Path string
	f    *os.File
	w    io.WriteCloser

	mu     sync.Mutex
	closed bool
}

// Create creates dir/runs/<time>-<id>.log and removes the oldest logs beyond
// Keep. Everything written to the Log is masked by r before it reaches the
// file.
func Create(dir string, now time.Time, r *redact.Redactor) (*Log, error) {
	runs := filepath.Join(dir, "runs")
	if err := os.MkdirAll(runs, 0o700); err != nil {
		return nil, fmt.Errorf("create run log directory: %w", err)
	}
	// MkdirAll keeps the mode of existing directories: tighten ours.
	for _, d := range []string{dir, runs} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("restrict run log directory: %w", err)
		}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("run id: %w", err)
	}
	id := now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	path := filepath.Join(runs, id+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create run log: %w", err)
	}
	if err := prune(runs, Keep); err != nil {
		f.Close()
		return nil, err
	}
	return &Log{ID: id, Path: path, f: f, w: r.Writer(f)}, nil
}

// Continue reopens the log of run id under dir for appending (creating
// it, 0600, when it was removed): a resumed run goes on in its own log.
func Continue(dir, id string, r *redact.Redactor) (*Log, error) {
	if !validID.MatchString(id) {
		return nil, fmt.Errorf("run ID %q: want the form 20060102T150405Z-1a2b3c4d", id)
	}
	runs := filepath.Join(dir, "runs")
	if err := os.MkdirAll(runs, 0o700); err != nil {
		return nil, fmt.Errorf("create run log directory: %w", err)
	}
	path := filepath.Join(runs, id+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("continue run log: %w", err)
	}
	return &Log{ID: id, Path: path, f: f, w: r.Writer(f)}, nil
}

// validID is the shape of the IDs Create makes.
var validID = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$`)

// prune removes the oldest run logs in dir beyond keep. Names start with
// the UTC time, so name order is age order.
func prune(dir string, keep int) error {
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return fmt.Errorf("list run logs: %w", err)
	}
	sort.Strings(logs)
	for len(logs) > keep {
		if err := os.Remove(logs[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove old run log: %w", err)
		}
		logs = logs[1:]
	}
	return nil
}

// Write writes p, masked, to the file. Once the log is closed (a second
// Ctrl-C closes it while the run's goroutines may still log), writes are
// dropped: the log has ended.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return len(p), nil
	}
	return l.w.Write(p)
}

// Close flushes what the redacting writer holds back and closes the file.
// Closing it again does nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.w.Close()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close run log %s: %w", l.Path, err)
	}
	return nil
}
