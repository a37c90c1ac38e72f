package kmsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// objects is an immutable set of named objects (keys, policies or
// identities of one enclave), sorted by name: with and without return a new
// set and leave the receiver unchanged, in O(length of the name), so that a
// write copies only what it changes and readers never need a lock. The zero
// value is empty. The values are pointers that are never modified once in a
// set. In JSON it is an object {name: value}.
type objects[T any] struct{ t *iradix.Tree[T] }

func (o objects[T]) get(name string) (T, bool) {
	if o.t == nil {
		var zero T
		return zero, false
	}
	return o.t.Get([]byte(name))
}

func (o objects[T]) with(name string, v T) objects[T] {
	t := o.t
	if t == nil {
		t = iradix.New[T]()
	}
	t, _, _ = t.Insert([]byte(name), v)
	return objects[T]{t}
}

func (o objects[T]) without(name string) objects[T] {
	if o.t == nil {
		return o
	}
	t, _, _ := o.t.Delete([]byte(name))
	return objects[T]{t}
}

func (o objects[T]) len() int {
	if o.t == nil {
		return 0
	}
	return o.t.Len()
}

// from yields the objects whose names start with prefix, in name order,
// starting at the first name >= start.
func (o objects[T]) from(prefix, start string) iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		if o.t == nil {
			return
		}
		it := o.t.Root().Iterator()
		it.SeekLowerBound([]byte(max(prefix, start)))
		for k, v, ok := it.Next(); ok; k, v, ok = it.Next() {
			if !bytes.HasPrefix(k, []byte(prefix)) || !yield(string(k), v) {
				return
			}
		}
	}
}

// page returns the objects with prefix from continueAt (inclusive), at most
// limit of them (0 or more than 1000: 1000), and the name that starts the
// next page ("" on the last page).
func (o objects[T]) page(prefix, continueAt string, limit uint32) ([]T, string) {
	const maxLimit = 1000
	if limit == 0 || limit > maxLimit {
		limit = maxLimit
	}
	if continueAt != "" && !strings.HasPrefix(continueAt, prefix) {
		return nil, ""
	}
	var out []T
	for name, v := range o.from(prefix, continueAt) {
		if uint32(len(out)) == limit {
			return out, name
		}
		out = append(out, v)
	}
	return out, ""
}

// MarshalJSON writes {name: value, ...} in name order.
func (o objects[T]) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for name, v := range o.from("", "") {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		val, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %q: %w", name, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads {name: value, ...} (null is empty).
func (o *objects[T]) UnmarshalJSON(b []byte) error {
	var m map[string]T
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	txn := iradix.New[T]().Txn()
	for name, v := range m {
		txn.Insert([]byte(name), v)
	}
	o.t = txn.Commit()
	return nil
}
