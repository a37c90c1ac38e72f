package redact

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// stream writes in through r's Writer in the given chunks and returns what
// came out after Close.
func stream(t testing.TB, r *Redactor, chunks ...string) string {
	t.Helper()
	var out bytes.Buffer
	w := r.Writer(&out)
	for _, c := range chunks {
		n, err := w.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// everySplit calls f with in cut into two and three chunks at every position.
func everySplit(in string, f func(chunks ...string)) {
	for i := 0; i <= len(in); i++ {
		f(in[:i], in[i:])
		for j := i; j <= len(in); j++ {
			f(in[:i], in[i:j], in[j:])
		}
	}
}

// TestWriterMixedLengths: secrets of very different lengths in one stream,
// split at every point. The short one at the very end is held back in the
// tail (the longest secret decides the tail's length) and must still be
// masked when Close flushes it.
func TestWriterMixedLengths(t *testing.T) {
	long := "hsm:aes256:SENTINEL/long/secret/value/0123456789abcdefghij="
	mid := "k1:SENTINEL-mid-0123"
	short := "pw1234"
	r := New(long, mid, short)
	in := "a=" + long + " b=" + mid + " c=" + short + " d=" + mid + "\n" + short
	want := "a=" + Mask + " b=" + Mask + " c=" + Mask + " d=" + Mask + "\n" + Mask
	if got := r.String(in); got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	everySplit(in, func(chunks ...string) {
		if got := stream(t, r, chunks...); got != want {
			t.Fatalf("chunks %q: got %q, want %q", chunks, got, want)
		}
	})
	// The short secret alone at the end, in one write: all of it is in the
	// tail when Close comes.
	if got := stream(t, r, "x "+short); got != "x "+Mask {
		t.Fatalf("short secret in the tail at Close: got %q", got)
	}
	// Nothing but the short secret, shorter than the tail.
	if got := stream(t, r, short); got != Mask {
		t.Fatalf("lone short secret: got %q", got)
	}
}

// TestWriterByteAtATime: one byte per Write, the harshest split.
func TestWriterByteAtATime(t *testing.T) {
	r := New(sentinel, "pw1234", "another-secret-42")
	in := "x" + sentinel + "pw1234" + "yy another-secret-42pw1234\n"
	want := "x" + Mask + Mask + "yy " + Mask + Mask + "\n"
	var chunks []string
	for i := range len(in) {
		chunks = append(chunks, in[i:i+1])
	}
	if got := stream(t, r, chunks...); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestOverlappingSecretsMaskedWhole: when two secrets overlap in the text,
// neither may show through: the overlapping stretch becomes one mask.
func TestOverlappingSecretsMaskedWhole(t *testing.T) {
	cases := []struct {
		secrets []string
		in      string
		want    string
	}{
		// the end of one is the start of the other (same length: the order
		// of registration must not matter)
		{[]string{"abcdef12", "12345678"}, "<abcdef12345678>", "<" + Mask + ">"},
		{[]string{"12345678", "abcdef12"}, "<abcdef12345678>", "<" + Mask + ">"},
		// different lengths, the shorter first in the text
		{[]string{"secret-xyz", "xyz-and-a-longer-tail"}, "secret-xyz-and-a-longer-tail!", Mask + "!"},
		// a chain of three
		{[]string{"aaaa-bbbb", "bbbb-cccc", "cccc-dddd"}, ".aaaa-bbbb-cccc-dddd.", "." + Mask + "."},
		// a secret inside another
		{[]string{"inner-secret", "outer-inner-secret-outer"}, "(outer-inner-secret-outer)", "(" + Mask + ")"},
		// a secret overlapping itself
		{[]string{"abab-abab"}, "abab-abab-abab", Mask},
		// adjacent, not overlapping: two masks
		{[]string{"secret-one", "secret-two"}, "secret-onesecret-two", Mask + Mask},
	}
	for _, c := range cases {
		r := New(c.secrets...)
		if got := r.String(c.in); got != c.want {
			t.Errorf("secrets %q: String(%q) = %q, want %q", c.secrets, c.in, got, c.want)
		}
		failed := false
		everySplit(c.in, func(chunks ...string) {
			if got := stream(t, r, chunks...); got != c.want && !failed {
				failed = true // one report per case
				t.Errorf("secrets %q: chunks %q: got %q, want %q", c.secrets, chunks, got, c.want)
			}
		})
	}
}

// TestWriterSecretAddedLater: a secret registered while a writer is in use
// is masked in what is written after.
func TestWriterSecretAddedLater(t *testing.T) {
	r := New("first-secret")
	var out bytes.Buffer
	w := r.Writer(&out)
	w.Write([]byte("first-secret "))
	r.Add("second-secret-longer")
	w.Write([]byte("second-secret-longer end"))
	w.Close()
	if want := Mask + " " + Mask + " end"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

// TestWriterWithoutSecrets passes everything through at once.
func TestWriterWithoutSecrets(t *testing.T) {
	var out bytes.Buffer
	w := New().Writer(&out)
	w.Write([]byte("abc"))
	if out.String() != "abc" {
		t.Fatalf("without secrets nothing is held back: got %q", out.String())
	}
	w.Close()
	if out.String() != "abc" {
		t.Fatalf("got %q", out.String())
	}
}

// TestWriterHoldsBackOnlyATail: text that cannot be part of a secret is
// passed on at once, except a tail one byte shorter than the longest secret.
func TestWriterHoldsBackOnlyATail(t *testing.T) {
	r := New("0123456789") // a tail of 9 bytes
	var out bytes.Buffer
	w := r.Writer(&out)
	w.Write([]byte("hello world, this is plain text"))
	if want := "hello world, this is p"; out.String() != want {
		t.Fatalf("after the write: %q, want %q", out.String(), want)
	}
	w.Close()
	if want := "hello world, this is plain text"; out.String() != want {
		t.Fatalf("after Close: %q", out.String())
	}
}

// TestWriterFlushesAFinishedMask: a secret that ends exactly where the
// held-back tail begins is masked and passed on at once, not held back.
func TestWriterFlushesAFinishedMask(t *testing.T) {
	r := New("0123456789") // a tail of 9 bytes
	var out bytes.Buffer
	w := r.Writer(&out)
	w.Write([]byte("xx0123456789abcdefghi"))
	if want := "xx" + Mask; out.String() != want {
		t.Fatalf("after the write: %q, want %q", out.String(), want)
	}
	w.Close()
	if want := "xx" + Mask + "abcdefghi"; out.String() != want {
		t.Fatalf("after Close: %q, want %q", out.String(), want)
	}
}

// TestWriterErrors: an error of the underlying writer is returned, from
// Write and from Close.
func TestWriterErrors(t *testing.T) {
	r := New("0123456789")
	w := r.Writer(failingWriter{})
	if n, err := w.Write([]byte("more than a tail of text")); err == nil || n != 0 {
		t.Fatalf("Write = %d, %v; want 0 and the error", n, err)
	}
	w = r.Writer(failingWriter{})
	if _, err := w.Write([]byte("short")); err != nil {
		t.Fatalf("a write that is all tail failed: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close hid the error")
	}
	w = r.Writer(failingWriter{})
	if err := w.Close(); err != nil {
		t.Fatalf("Close with nothing held back = %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errFailing }

var errFailing = &failingErr{}

type failingErr struct{}

func (*failingErr) Error() string { return "disk full" }

// TestAddIgnoresShortAndDuplicates: values shorter than six bytes are not
// registered; registering a value twice is harmless.
func TestAddIgnoresShortAndDuplicates(t *testing.T) {
	r := New("12345", "123456", "123456")
	if got := r.String("12345 123456"); got != "12345 "+Mask {
		t.Fatalf("got %q", got)
	}
	if got := r.String("no secret here"); got != "no secret here" {
		t.Fatalf("got %q", got)
	}
	b := []byte("no secret")
	if got := r.Bytes(b); &got[0] != &b[0] {
		t.Error("Bytes copied a buffer without secrets")
	}
}

// masksLeak reports a registered secret that shows in out outside the masks.
func masksLeak(r *Redactor, out string) (string, bool) {
	plain := strings.ReplaceAll(out, Mask, "\x00")
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, s := range r.secrets {
		if !bytes.Contains(s, []byte{0}) && strings.Contains(plain, string(s)) {
			return string(s), true
		}
	}
	return "", false
}

// FuzzWriterMatchesString: for any secrets, text and way of cutting the text
// into writes, the streaming writer masks exactly what whole-string masking
// does, and no secret shows outside a mask.
func FuzzWriterMatchesString(f *testing.F) {
	f.Add("k1:SENTINEL-0123456789\npw1234\nanother-secret", "x k1:SENTINEL-0123456789 pw1234 another-secret\n", uint64(1))
	f.Add("abcdef12\n12345678", "<abcdef12345678>", uint64(2))
	f.Add("aaaa-bbbb\nbbbb-cccc\ncccc-dddd", ".aaaa-bbbb-cccc-dddd.", uint64(3))
	f.Add("abab-abab", "abab-abab-abab-abab", uint64(4))
	f.Add("inner-secret\nouter-inner-secret-outer", "(outer-inner-secret-outer)inner-secret", uint64(5))
	f.Add("secret-one\nsecret-two", "secret-onesecret-two", uint64(6))
	f.Add("EDACTED]x\n012345", "012345EDACTED]x", uint64(7))
	f.Add("", "no secrets at all", uint64(8))
	f.Add("aaaaaa", strings.Repeat("a", 40), uint64(9))
	f.Fuzz(func(t *testing.T, secrets, in string, seed uint64) {
		if len(in) > 4096 || len(secrets) > 512 || strings.Count(secrets, "\n") > 16 {
			t.Skip("larger than anything the masking rules depend on; keeps the fuzzer fast")
		}
		r := New(strings.Split(secrets, "\n")...)
		want := r.String(in)
		if s, leak := masksLeak(r, want); leak {
			t.Fatalf("String(%q) = %q shows secret %q", in, want, s)
		}
		// Cut in into writes of random sizes, reproducibly from seed.
		rng := rand.New(rand.NewPCG(seed, seed>>1|1))
		var chunks []string
		for rest := in; len(rest) > 0; {
			n := rng.IntN(len(rest) + 1)
			if seed%5 == 0 {
				n = min(len(rest), 1) // one byte at a time
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got := stream(t, r, chunks...); got != want {
			t.Fatalf("secrets %q, chunks %q:\nstream %q\nString %q", secrets, chunks, got, want)
		}
	})
}

// TestMaskIsDocumented: the README and users' log searches rely on the mask's text.
func TestMaskIsDocumented(t *testing.T) {
	if Mask != "[REDACTED]" {
		t.Fatalf("Mask = %q; the README documents [REDACTED]", Mask)
	}
}
