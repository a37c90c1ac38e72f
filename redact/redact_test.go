package redact

import (
	"bytes"
	"strings"
	"testing"
)

const sentinel = "k1:SENTINEL-secret-value-0123456789abcdefghijk"

func TestStringMasksEveryOccurrence(t *testing.T) {
	r := New(sentinel, "abc") // "abc" is too short to register
	got := r.String("a " + sentinel + " b " + sentinel + " abc")
	if strings.Contains(got, sentinel) || strings.Count(got, Mask) != 2 || !strings.HasSuffix(got, " abc") {
		t.Fatalf("String() = %q", got)
	}
}

func TestLongerSecretMaskedWhole(t *testing.T) {
	r := New("secret-1", "secret-1-and-more")
	if got := r.String("x secret-1-and-more y"); got != "x "+Mask+" y" {
		t.Fatalf("got %q", got)
	}
}

func TestWriterMasksSecretSplitAcrossWrites(t *testing.T) {
	for split := 0; split <= len(sentinel); split++ {
		var out bytes.Buffer
		w := New(sentinel).Writer(&out)
		in := "before " + sentinel + " after"
		cut := len("before ") + split
		if _, err := w.Write([]byte(in[:cut])); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(in[cut:])); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if want := "before " + Mask + " after"; out.String() != want {
			t.Fatalf("split %d: got %q, want %q", split, out.String(), want)
		}
	}
}

func TestWriterPassesPlainTextThrough(t *testing.T) {
	var out bytes.Buffer
	w := New(sentinel).Writer(&out)
	for _, s := range []string{"hello ", "world", "\n"} {
		w.Write([]byte(s))
	}
	w.Close()
	if out.String() != "hello world\n" {
		t.Fatalf("got %q", out.String())
	}
}

func TestNilRedactorIsIdentity(t *testing.T) {
	var r *Redactor
	if got := r.Bytes([]byte("x")); string(got) != "x" {
		t.Fatal(got)
	}
}

func TestContains(t *testing.T) {
	r := New(sentinel, "abc")
	for _, c := range []struct {
		s    string
		want bool
	}{
		{"x " + sentinel + " y", true},
		{sentinel, true},
		{sentinel[:len(sentinel)-1], false},
		{"abc", false}, // too short to be registered
		{"", false},
	} {
		if got := r.Contains(c.s); got != c.want {
			t.Errorf("Contains(%q) = %v, want %v", c.s, got, c.want)
		}
	}
	var none *Redactor
	if none.Contains(sentinel) {
		t.Error("a nil Redactor holds no secret")
	}
}
