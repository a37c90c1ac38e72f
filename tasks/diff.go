package tasks

import (
	"fmt"

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
		A:        difflib.SplitLines(string(old)),
		B:        difflib.SplitLines(string(new)),
		FromFile: from,
		ToFile:   "b" + path,
		Context:  3,
	})
	if err != nil {
		return fmt.Sprintf("(no diff: %v)\n", err)
	}
	return d
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
