package modules

import (
	"fmt"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// unifiedDiff returns a unified diff from old to new for path, or "" when
// they are equal. Binary content yields a one-line note instead.
func unifiedDiff(path string, old, new []byte, existed bool) string {
	if string(old) == string(new) {
		return ""
	}
	if isBinary(old) || isBinary(new) {
		return fmt.Sprintf("Binary files differ: %s\n", path)
	}
	from := "a" + path
	if !existed {
		from = "/dev/null"
	}
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        diffLines(old),
		B:        diffLines(new),
		FromFile: from,
		ToFile:   "b" + path,
		Context:  3,
	})
	if err != nil {
		return fmt.Sprintf("(no diff: %v)\n", err)
	}
	return d
}

// noNewline marks, like diff -u, a last line that lacks its newline.
const noNewline = "\n\\ No newline at end of file\n"

// diffLines splits b into lines that keep their "\n". Unlike
// difflib.SplitLines it adds no phantom line: empty content has no lines,
// and a last line without a newline carries the diff -u marker instead, so
// it also differs from the same text with a newline.
func diffLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if last := len(lines) - 1; lines[last] == "" {
		lines = lines[:last]
	} else {
		lines[last] += noNewline
	}
	return lines
}

func isBinary(b []byte) bool {
	n := len(b)
	if n > 8000 {
		n = 8000
	}
	for _, c := range b[:n] {
		if c == 0 {
			return true
		}
	}
	return false
}
