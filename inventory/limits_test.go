package inventory

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/yamlpos"
)

// problemsOf parses src and returns its problems, failing if it loads.
func problemsOf(t *testing.T, src string) []*yamlpos.Error {
	t.Helper()
	_, err := Parse("inv.yml", []byte(src))
	var ve *yamlpos.List
	if !errors.As(err, &ve) {
		t.Fatalf("Parse = %v, want a *yamlpos.List", err)
	}
	return ve.Errs
}

// TestAliasBombFailsFast: group bodies that alias each other so that the
// inventory expands exponentially (the YAML "billion laughs") are refused as
// too large once the work budget is spent, with that one problem, instead of
// being walked to the end.
func TestAliasBombFailsFast(t *testing.T) {
	var b strings.Builder
	b.WriteString("all:\n  children:\n    l0: &l0 {hosts: {h0: }}\n")
	for lvl := 1; lvl <= 8; lvl++ {
		fmt.Fprintf(&b, "    l%d: &l%d {children: {", lvl, lvl)
		for i := range 10 {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "c%d_%d: *l%d", lvl, i, lvl-1)
		}
		b.WriteString("}}\n")
	}
	probs := problemsOf(t, b.String())
	var too []*yamlpos.Error
	for _, p := range probs {
		if strings.Contains(p.Problem, "inventory too large") {
			too = append(too, p)
		}
	}
	if len(too) != 1 || too[0].Pos.File != "inv.yml" {
		t.Fatalf("want one \"inventory too large\" problem in inv.yml, got %v", probs)
	}
}

// TestAliasedGroupBodies: a group body, a hosts mapping and a children
// mapping may each be a YAML alias of one written earlier; the alias stands
// for the anchored node.
func TestAliasedGroupBodies(t *testing.T) {
	inv := mustParse(t, `
all:
  children:
    web: &body
      hosts: &hosts
        h1:
        h2:
      vars: {role: x}
    db: *body
    cache:
      hosts: *hosts
      children: &kids
        web:
    edge:
      children: *kids
`)
	for group, want := range map[string]string{"db": "h1,h2", "cache": "h1,h2", "edge": "h1,h2"} {
		got, err := inv.Select(group)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("Select(%s) = %v, %v; want %s", group, got, err, want)
		}
	}
	if v, err := inv.Vars("h1", nil); err != nil || v["role"] != "x" {
		t.Errorf("vars of h1 = %v, %v; want role x from the aliased body", v, err)
	}
}

// TestGroupNestingLimit: groups nest under children: down to maxDepth-1
// levels below all; a group body one level deeper is refused, at its key.
func TestGroupNestingLimit(t *testing.T) {
	nested := func(depth int) string {
		var b strings.Builder
		b.WriteString("all:\n")
		indent := "  "
		for d := 1; d <= depth; d++ {
			fmt.Fprintf(&b, "%schildren:\n%s  g%d:\n", indent, indent, d)
			indent += "    "
		}
		fmt.Fprintf(&b, "%shosts:\n%s  h1:\n", indent, indent)
		return b.String()
	}
	inv := mustParse(t, nested(maxDepth-1))
	if got, err := inv.Select(fmt.Sprintf("g%d", maxDepth-1)); err != nil || len(got) != 1 {
		t.Errorf("deepest group: %v, %v", got, err)
	}
	probs := problemsOf(t, nested(maxDepth))
	want := fmt.Sprintf("groups nested more than %d levels deep", maxDepth)
	if len(probs) != 1 || probs[0].Problem != want || !strings.HasSuffix(probs[0].Field, fmt.Sprintf(".g%d", maxDepth)) {
		t.Errorf("nesting %d deep: %v, want %q at g%d", maxDepth, probs, want, maxDepth)
	}
}

// TestGroupNameLength: a group name may be 255 characters long, not more,
// at the top level or under children:.
func TestGroupNameLength(t *testing.T) {
	long := "g" + strings.Repeat("x", 254)
	mustParse(t, long+":\n  hosts:\n    h1:\n")
	mustParse(t, "all:\n  children:\n    "+long+":\n      hosts:\n        h1:\n")
	for _, src := range []string{long + "x:\n  hosts:\n    h1:\n", "all:\n  children:\n    " + long + "x:\n      hosts:\n        h1:\n"} {
		probs := problemsOf(t, src)
		if len(probs) == 0 || !strings.HasPrefix(probs[0].Problem, "invalid group name") {
			t.Errorf("256-character group name: %v", probs)
		}
	}
}

// TestTopLevelGroupName: a top-level key other than all is a group and its
// name is checked like a child group's (a null key is no name); a duplicate or badly named group
// does not stop the groups after it from being read and checked.
func TestTopLevelGroupName(t *testing.T) {
	probs := problemsOf(t, `all:
  hosts:
    h1:
web:
  hosts:
    h2:
web:
  hosts:
    h3:
"web servers":
  hosts:
    h4:
db:
  hosts:
    h5:
      ansible_port: 0
null:
  hosts:
    h6:
`)
	want := []string{"7:1: web: duplicate key", `10:1: web servers: invalid group name "web servers"`, "16:21: db.hosts.h5.ansible_port: port 0 out of range",
		"17:1: key must be a name, got null"}
	var got []string
	for _, p := range probs {
		got = append(got, fmt.Sprintf("%d:%d: %s", p.Pos.Line, p.Pos.Column, strings.TrimPrefix(p.Field+": ", ": ")+p.Problem))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestGroupBodyReadToTheEnd: a problem in a group body (a duplicate key
// under the group, its children: or its hosts:, a bad host name) does not
// stop what follows from being read and checked, each host of a range is
// checked; an empty hosts: or children: is no problem.
func TestGroupBodyReadToTheEnd(t *testing.T) {
	probs := problemsOf(t, `all:
  children:
    web:
      hosts:
        h1:
      hosts:
        h2:
      vars:
        ansible_port: 0
      children:
        a:
          hosts: {h3: }
        a:
          hosts: {h4: }
        b:
          hosts:
            h5:
              ansible_port: 0
    empty:
      hosts:
      children:
    db:
      hosts:
        d1:
        d1:
        "-d[1:2]":
        d3:
          ansible_port: 0
`)
	want := []string{"6:7: all.children.web.hosts: duplicate key", "9:23: all.children.web.vars.ansible_port: port 0 out of range",
		"13:9: all.children.web.children.a: duplicate key", "18:29: all.children.web.children.b.hosts.h5.ansible_port: port 0 out of range",
		"25:9: all.children.db.hosts.d1: duplicate key",
		`26:9: all.children.db.hosts.-d[1:2]: invalid host name "-d1": must not start with '-'`,
		`26:9: all.children.db.hosts.-d[1:2]: invalid host name "-d2": must not start with '-'`,
		"28:25: all.children.db.hosts.d3.ansible_port: port 0 out of range"}
	var got []string
	for _, p := range probs {
		got = append(got, fmt.Sprintf("%d:%d: %s: %s", p.Pos.Line, p.Pos.Column, p.Field, p.Problem))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
