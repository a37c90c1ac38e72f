package tasks

import (
	"strings"
	"testing"
)

func TestWrongArgumentTypeInUserWords(t *testing.T) {
	for _, c := range []struct {
		typ  ArgType
		v    any
		want string
	}{
		{ArgString, []any{"a"}, "want a string, got a list"},
		{ArgString, map[string]any{"a": 1}, "want a string, got a mapping"},
		{ArgString, nil, "want a string, got nothing"},
		{ArgList, map[string]any{}, "want a list, got a mapping"},
		{ArgList, 3, "want a list, got a number"},
		{ArgMap, []any{}, "want a mapping, got a list"},
		{ArgMap, "x", "want a mapping, got a string"},
		{ArgBool, 1.5, "want a boolean, got a number"},
		{ArgInt, true, "want an integer, got a boolean"},
		{ArgMode, []any{}, "got a list"},
		{ArgDuration, map[string]any{}, "got a mapping"},
	} {
		err := checkType(c.typ, c.v)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkType(%v, %#v) = %v, want %q", c.typ, c.v, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "interface") || strings.Contains(err.Error(), "[]") {
			t.Errorf("checkType(%v, %#v) shows a Go type: %v", c.typ, c.v, err)
		}
	}
	if _, err := contains(3, "a"); err == nil || err.Error() != "in: cannot look into a number" {
		t.Errorf("contains: %v", err)
	}
	if _, err := asBool("x", []any{1}); err == nil || !strings.Contains(err.Error(), "gave a list") {
		t.Errorf("asBool: %v", err)
	}
}
