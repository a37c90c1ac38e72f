package remote

import "strings"

// Quote returns s quoted for a POSIX shell: wrapped in single quotes, with
// every embedded single quote written as '\”. Strings made only of
// characters that are never special to the shell are returned as they are.
// The empty string becomes ”.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isShellSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Command joins argv into one shell command line, quoting every word.
func Command(argv ...string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// isShellSafe reports whether s consists only of characters that need no
// quoting in any position of a POSIX shell word.
func isShellSafe(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_./,:+@%", r):
		default:
			return false
		}
	}
	return true
}
