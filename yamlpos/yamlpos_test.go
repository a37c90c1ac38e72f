package yamlpos

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestPosString(t *testing.T) {
	for _, c := range []struct {
		p    Pos
		want string
	}{
		{Pos{File: "inv.yml", Line: 3, Column: 7}, "inv.yml:3:7"},
		{Pos{File: "inv.yml", Line: 3}, "inv.yml:3"},
		{Pos{File: "-e"}, "-e"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.p, got, c.want)
		}
	}
}

func TestOf(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a:\n  b: 1\n"), &doc); err != nil {
		t.Fatal(err)
	}
	b := doc.Content[0].Content[1].Content[0]
	if got := Of("x.yml", b); got != (Pos{File: "x.yml", Line: 2, Column: 3}) {
		t.Errorf("Of(b) = %#v, want x.yml:2:3", got)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{Pos: Pos{File: "f.yml", Line: 2, Column: 5}, Field: "all.vars.x", Problem: "bad", Hint: "fix it"}
	if got := e.Error(); got != "f.yml:2:5: all.vars.x: bad (fix it)" {
		t.Errorf("Error() = %q", got)
	}
	e = &Error{Pos: Pos{File: "f.yml", Line: 2}, Problem: "bad"}
	if got := e.Error(); got != "f.yml:2: bad" {
		t.Errorf("Error() without field and hint = %q", got)
	}
	cause := fs.ErrNotExist
	e = &Error{Pos: Pos{File: "f.yml"}, Problem: "read vars: gone", Err: cause}
	if !errors.Is(e, fs.ErrNotExist) || e.Error() != "f.yml: read vars: gone" {
		t.Errorf("Err is not unwrapped or is printed: %q", e.Error())
	}
}

// TestJoin: nil for nothing, sorted by file, line and column (stable),
// duplicates removed, the input untouched, each problem found by errors.As.
func TestJoin(t *testing.T) {
	if err := Join(nil); err != nil {
		t.Fatalf("Join(nil) = %v", err)
	}
	at := func(file string, line, col int, problem string) *Error {
		return &Error{Pos: Pos{File: file, Line: line, Column: col}, Problem: problem}
	}
	in := []*Error{
		at("b.yml", 1, 1, "b1"),
		at("a.yml", 9, 2, "a9"),
		at("a.yml", 2, 8, "a2:8"),
		at("a.yml", 2, 3, "first at a2:3"),
		at("a.yml", 2, 3, "second at a2:3"),
		at("a.yml", 9, 2, "a9"),
	}
	err := Join(in)
	want := "a.yml:2:3: first at a2:3\na.yml:2:3: second at a2:3\na.yml:2:8: a2:8\na.yml:9:2: a9\nb.yml:1:1: b1"
	if err == nil || err.Error() != want {
		t.Fatalf("Join =\n%v\nwant\n%s", err, want)
	}
	if in[0].Problem != "b1" {
		t.Error("Join reordered its input")
	}
	var list *List
	if !errors.As(err, &list) || len(list.Errs) != 5 {
		t.Fatalf("errors.As(*List) = %v", list)
	}
	var one *Error
	if !errors.As(fmt.Errorf("load: %w", err), &one) || one.Pos.String() != "a.yml:2:3" {
		t.Errorf("errors.As(*Error) through wrapping = %v", one)
	}
}

func TestSyntax(t *testing.T) {
	var v any
	err := yaml.Unmarshal([]byte("a: [1,\nb: 2\n"), &v)
	if err == nil {
		t.Fatal("no syntax error")
	}
	e := Syntax("f.yml", err)
	if e.Pos.File != "f.yml" || e.Pos.Line == 0 || e.Hint != "fix the YAML syntax at or after this line; check the indentation" || !errors.Is(e, err) {
		t.Errorf("Syntax(line error) = %#v", e)
	}
	e = Syntax("f.yml", errors.New("yaml: control characters are not allowed"))
	if got := e.Error(); got != "f.yml: invalid YAML: control characters are not allowed (fix the YAML syntax)" {
		t.Errorf("Syntax(error without line) = %q", got)
	}
}
