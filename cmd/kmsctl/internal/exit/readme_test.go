package exit

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// documented is the exit-code table of the README, written out with literal
// numbers: a swap of two constants, a renumbered code or a README row that
// drifts fails TestCodesMatchREADME. word is a word the README's meaning of
// the code must contain.
var documented = []struct {
	code  int
	konst int
	word  string
}{
	{0, OK, "success"},
	{1, Usage, "usage"},
	{2, HostFailed, "failed"},
	{3, Unreachable, "unreachable"},
	{4, Refused, "refused"},
	{5, Locked, "lock"},
	{6, TimedOut, "timed out"},
	{7, VerifyFailed, "verification"},
	{130, Interrupted, "interrupted"},
}

// readmeExitCodes parses the table under "## Exit codes" in the README:
// code → meaning.
func readmeExitCodes(t *testing.T) map[int]string {
	t.Helper()
	path := filepath.Join("..", "..", "..", "..", "README.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the README: %v", err)
	}
	defer f.Close()
	codes := map[int]string{}
	in, header := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Exit codes"
			continue
		case !in || !strings.HasPrefix(line, "|"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 {
			t.Fatalf("%s:%d: exit-code row %q has %d cells, want 2", path, n, line, len(cells))
		}
		first, meaning := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if !header {
			if first != "Code" || meaning != "Meaning" {
				t.Fatalf("%s:%d: exit-code table header %q, want | Code | Meaning |", path, n, line)
			}
			header = true
			continue
		}
		if strings.Trim(first, "-") == "" {
			continue // the |---|---| line
		}
		code, err := strconv.Atoi(first)
		if err != nil {
			t.Fatalf("%s:%d: exit code %q is not a number", path, n, first)
		}
		if _, dup := codes[code]; dup {
			t.Fatalf("%s:%d: exit code %d listed twice", path, n, code)
		}
		codes[code] = meaning
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(codes) == 0 {
		t.Fatalf("%s has no exit-code table under \"## Exit codes\"", path)
	}
	return codes
}

// TestCodesMatchREADME holds the constants to literal numbers and both to
// the README's table.
func TestCodesMatchREADME(t *testing.T) {
	readme := readmeExitCodes(t)
	for _, d := range documented {
		if d.konst != d.code {
			t.Errorf("the constant for %q is %d; the documented code is %d", d.word, d.konst, d.code)
		}
		meaning, ok := readme[d.code]
		if !ok {
			t.Errorf("the README's exit-code table lacks %d (%s)", d.code, d.word)
			continue
		}
		if !strings.Contains(strings.ToLower(meaning), d.word) {
			t.Errorf("the README says exit code %d means %q; want a meaning with %q", d.code, meaning, d.word)
		}
		delete(readme, d.code)
	}
	for code, meaning := range readme {
		t.Errorf("the README documents exit code %d (%q), which the exit package does not define", code, meaning)
	}
}

// TestCodeLiterals: what Code returns, as literal numbers, for each kind of
// error a command produces.
func TestCodeLiterals(t *testing.T) {
	for _, d := range documented {
		if got := Code(With(d.konst, os.ErrInvalid)); got != d.code {
			t.Errorf("Code(With(%d, err)) = %d", d.code, got)
		}
		if got := Code(Silent{Code: d.konst}); got != d.code {
			t.Errorf("Code(Silent{%d}) = %d", d.code, got)
		}
	}
	if got := Code(Usagef("bad flag %q", "-x")); got != 1 {
		t.Errorf("Code(Usagef(...)) = %d, want 1", got)
	}
}

// TestMessages: an Error shows its wrapped error's message, or its code when
// it wraps none; Silent names its code.
func TestMessages(t *testing.T) {
	if got := (&Error{Code: 4}).Error(); got != "exit code 4" {
		t.Errorf("Error without a wrapped error = %q", got)
	}
	if got := With(2, os.ErrNotExist).Error(); got != os.ErrNotExist.Error() {
		t.Errorf("With(2, err).Error() = %q, want the wrapped message", got)
	}
	if got := (Silent{Code: 3}).Error(); got != "exit code 3" {
		t.Errorf("Silent.Error() = %q", got)
	}
}
