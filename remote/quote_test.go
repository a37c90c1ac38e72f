package remote

import (
	"os/exec"
	"testing"
)

func TestQuoteGolden(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "''"},
		{"plain", "plain"},
		{"/usr/local/bin/minkms", "/usr/local/bin/minkms"},
		{"-rf", "-rf"},
		{"user:group", "user:group"},
		{"a=b", "'a=b'"},
		{"two words", "'two words'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{`"double"`, `'"double"'`},
		{"$HOME", "'$HOME'"},
		{"$(reboot)", "'$(reboot)'"},
		{"`id`", "'`id`'"},
		{"a;b", "'a;b'"},
		{"a&&b|c", "'a&&b|c'"},
		{"line1\nline2", "'line1\nline2'"},
		{"tab\there", "'tab\there'"},
		{"*", "'*'"},
		{"~root", "'~root'"},
		{"back\\slash", `'back\slash'`},
		{"ünïcødé", "'ünïcødé'"},
		{"!bang", "'!bang'"},
		{"#comment", "'#comment'"},
	}
	for _, c := range cases {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got, want := Command("rm", "-f", "--", "/tmp/a b", "it's"), `rm -f -- '/tmp/a b' 'it'\''s'`; got != want {
		t.Errorf("Command = %q, want %q", got, want)
	}
}

// TestQuoteRoundTrip checks with the real /bin/sh that every quoted word
// arrives as exactly one unchanged argument.
func TestQuoteRoundTrip(t *testing.T) {
	words := []string{"", " ", "it's", `"`, "$HOME", "$(echo pwned)", "`id`", "a\nb", "\\", "*", "ünïcødé", "-n", "--", "%s", "'\"'\"'"}
	for _, w := range words {
		out, err := exec.Command("/bin/sh", "-c", Command("printf", "%s|", w)).Output()
		if err != nil {
			t.Fatalf("sh -c %s: %v", Command("printf", "%s|", w), err)
		}
		if string(out) != w+"|" {
			t.Errorf("word %q came back as %q", w, out)
		}
	}
}
