// Package redact replaces registered secret values (API keys, HSM keys,
// passwords) with a fixed mask in text and in streams, so that secrets cannot
// reach logs, journals, reports or captured command output.
package redact

import (
	"bytes"
	"cmp"
	"io"
	"slices"
	"strings"
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
	secrets [][]byte
	maxLen  int // length of the longest secret
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
	r.maxLen = max(r.maxLen, len(secret))
}

// String masks every registered secret in s.
func (r *Redactor) String(s string) string {
	return string(r.Bytes([]byte(s)))
}

// Contains reports whether s holds a registered secret. A nil Redactor
// holds none.
func (r *Redactor) Contains(s string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		if strings.Contains(s, string(sec)) {
			return true
		}
	}
	return false
}

// Bytes masks every registered secret in b. Every byte that belongs to an
// occurrence of a secret is hidden: occurrences that overlap (of two secrets,
// or of one secret with itself) become a single mask, so that no part of
// either shows; occurrences that merely touch stay separate masks. It returns
// b itself when nothing matched.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil {
		return b
	}
	spans, _ := r.scan(b)
	if len(spans) == 0 {
		return b
	}
	return maskSpans(b, spans)
}

// span is a stretch [start, end) of text covered by secrets.
type span struct{ start, end int }

// scan returns the stretches of b covered by occurrences of secrets, sorted
// and with overlapping ones merged, and the length of the longest secret.
func (r *Redactor) scan(b []byte) ([]span, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var found []span
	for _, s := range r.secrets {
		for i := 0; ; {
			j := bytes.Index(b[i:], s)
			if j < 0 {
				break
			}
			found = append(found, span{i + j, i + j + len(s)})
			i += j + 1 // occurrences of one secret may overlap
		}
	}
	if len(found) == 0 {
		return nil, r.maxLen
	}
	slices.SortFunc(found, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	merged := found[:1]
	for _, sp := range found[1:] {
		last := &merged[len(merged)-1]
		if sp.start < last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged, r.maxLen
}

// maskSpans returns a copy of b with each span replaced by Mask.
func maskSpans(b []byte, spans []span) []byte {
	out := make([]byte, 0, len(b))
	at := 0
	for _, sp := range spans {
		out = append(out, b[at:sp.start]...)
		out = append(out, Mask...)
		at = sp.end
	}
	return append(out, b[at:]...)
}

// Writer returns a writer that masks secrets before passing bytes to w,
// exactly as Bytes masks the whole of what was written. A secret split
// across Write calls is still masked: the writer holds back the last bytes
// (one fewer than the longest secret, more while they belong to a stretch
// of overlapping secrets that may go on) until more data or Close arrives.
// Close flushes them; it does not close w.
func (r *Redactor) Writer(w io.Writer) io.WriteCloser {
	return &writer{r: r, w: w}
}

type writer struct {
	mu   sync.Mutex
	r    *Redactor
	w    io.Writer
	tail []byte // unmasked bytes held back
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.tail, p...)
	spans, maxLen := w.r.scan(buf)
	// An occurrence that is not wholly in buf yet starts at cut or later.
	cut := max(len(buf)-max(maxLen-1, 0), 0)
	// Keep back a stretch of secrets that reaches past cut: a later
	// occurrence could overlap it and must then share its mask.
	done := 0
	for done < len(spans) && spans[done].end <= cut {
		done++
	}
	if done < len(spans) {
		cut = min(cut, spans[done].start)
	}
	out := maskSpans(buf[:cut], spans[:done])
	w.tail = append([]byte(nil), buf[cut:]...)
	if len(out) > 0 {
		if _, err := w.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close writes what is held back, masked.
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
