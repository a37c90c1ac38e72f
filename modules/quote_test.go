package modules

import (
	"os/exec"
	"testing"
)

func TestQuoteGolden(t *testing.T) {
	cases := map[string]string{
		"":                 "''",
		"plain":            "plain",
		"/usr/local/bin":   "/usr/local/bin",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"$HOME":            "'$HOME'",
		"a;rm -rf /":       "'a;rm -rf /'",
		"`id`":             "'`id`'",
		"x\ny":             "'x\ny'",
		"'":                `''\'''`,
		"key=val,a:b@c%d+": "key=val,a:b@c%d+",
		"*":                "'*'",
		"ü":                "'ü'",
	}
	for in, want := range cases {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := QuoteArgs("echo", "a b", "c"); got != "echo 'a b' c" {
		t.Errorf("QuoteArgs = %s", got)
	}
}

// TestQuoteRoundTripsThroughSh checks that /bin/sh gives back every word.
func TestQuoteRoundTripsThroughSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	words := []string{"", "a b", "it's", `"q"`, "$HOME", "$(id)", "`id`", "a\\b", "x\ny", "'''", "*", "!x", "-n", "ü€"}
	for _, w := range words {
		out, err := exec.Command(sh, "-c", "printf '%s' "+Quote(w)).Output()
		if err != nil {
			t.Fatalf("sh for %q: %v", w, err)
		}
		if string(out) != w {
			t.Errorf("sh gave %q for %q (quoted %s)", out, w, Quote(w))
		}
	}
}
