// Package redact replaces registered secret values (API keys, HSM keys,
// passwords) with a fixed mask in text and in streams, so that secrets cannot
// reach logs, journals, reports or captured command output.
package redact

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// Mask is what every secret is replaced with.
const Mask = "[REDACTED]"

// minSecretLen is the shortest value that is registered; shorter values would
// mask ordinary words and are almost certainly not secrets.
const minSecretLen = 6

// Redactor holds the set of secret values to mask. It is safe for concurrent
// use; the zero value is not usable, call New.
type Redactor struct {
	mu      sync.RWMutex
	secrets [][]byte // longest first, so that a secret containing another is masked whole
}

// New returns a Redactor that masks the given secrets.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// Add registers a secret value. Values shorter than six bytes are ignored.
func (r *Redactor) Add(secret string) {
	if len(secret) < minSecretLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.secrets {
		if string(s) == secret {
			return
		}
	}
	r.secrets = append(r.secrets, []byte(secret))
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

// String masks every registered secret in s.
func (r *Redactor) String(s string) string {
	return string(r.Bytes([]byte(s)))
}

// Bytes masks every registered secret in b. It returns b itself when nothing matched.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil {
		return b
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.secrets {
		if bytes.Contains(b, s) {
			b = bytes.ReplaceAll(b, s, []byte(Mask))
		}
	}
	return b
}

// maxLen returns the length of the longest registered secret.
func (r *Redactor) maxLen() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.secrets) == 0 {
		return 0
	}
	return len(r.secrets[0])
}

// Writer returns a writer that masks secrets before passing bytes to w. A
// secret split across two Write calls is still masked: the writer holds back
// a tail shorter than the longest secret until more data or Close arrives.
// Close flushes the tail; it does not close w.
func (r *Redactor) Writer(w io.Writer) io.WriteCloser {
	return &writer{r: r, w: w}
}

type writer struct {
	mu   sync.Mutex
	r    *Redactor
	w    io.Writer
	tail []byte
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.tail, p...)
	keep := w.r.maxLen() - 1
	if keep < 0 {
		keep = 0
	}
	if len(buf) <= keep {
		w.tail = buf
		return len(p), nil
	}
	out := w.r.Bytes(append([]byte(nil), buf...))
	// Hold back a tail that might be the start of a secret, unless the
	// output ends with a mask (then nothing pending can belong to it).
	cut := len(out) - keep
	if cut < 0 {
		cut = 0
	}
	if bytes.HasSuffix(out, []byte(Mask)) {
		cut = len(out)
	}
	w.tail = append([]byte(nil), out[cut:]...)
	if _, err := w.w.Write(out[:cut]); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes what is held back.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.r.Bytes(w.tail)
	w.tail = nil
	if len(out) == 0 {
		return nil
	}
	_, err := w.w.Write(out)
	return err
}
