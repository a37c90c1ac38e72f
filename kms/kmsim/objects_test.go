package kmsim

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

// objects.page agrees with paging a sorted name list, for random names,
// prefixes, starting points and limits, and with/without leave the
// receiver unchanged.
func TestObjectsPage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab-1"
	name := func() string {
		b := make([]byte, 1+r.IntN(5))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	var o objects[string]
	var names []string
	for range 300 {
		n := name()
		before := o
		o = o.with(n, n)
		if !slices.Contains(names, n) {
			names = append(names, n)
			if _, ok := before.get(n); ok {
				t.Fatalf("with changed the receiver: %q", n)
			}
		}
	}
	for _, n := range names[:20] {
		before := o
		o = o.without(n)
		names = slices.DeleteFunc(names, func(x string) bool { return x == n })
		if _, ok := before.get(n); !ok {
			t.Fatalf("without changed the receiver: %q", n)
		}
	}
	if o.len() != len(names) {
		t.Fatalf("len %d, want %d", o.len(), len(names))
	}
	for range 2000 {
		p := name()
		prefix, start := p[:r.IntN(len(p)+1)], ""
		if r.IntN(2) == 0 {
			start = prefix + name()
		}
		limit := uint32(r.IntN(8))
		got, gotNext := o.page(prefix, start, limit)
		want, wantNext := page(slices.Clone(names), prefix, start, limit)
		if !slices.Equal(got, want) || gotNext != wantNext {
			t.Fatalf("page(%q, %q, %d) = %v, %q; want %v, %q", prefix, start, limit, got, gotNext, want, wantNext)
		}
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var back objects[string]
	if err := json.Unmarshal(b, &back); err != nil || back.len() != o.len() {
		t.Fatalf("JSON round trip: %d objects, %v", back.len(), err)
	}
	for _, n := range names {
		if v, ok := back.get(n); !ok || v != n {
			t.Fatalf("JSON round trip lost %q", n)
		}
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil || len(m) != len(names) {
		t.Fatalf("JSON is not an object of names: %s", b)
	}
}
