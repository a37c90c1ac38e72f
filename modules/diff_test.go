package modules

import (
	"strings"
	"testing"
)

func TestUnifiedDiffTrailingNewline(t *testing.T) {
	for _, c := range []struct {
		name     string
		old, new string
		existed  bool
		want     string
	}{
		{"new file", "", "hello\n", false, "--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+hello\n"},
		{"changed last line", "a\nb\n", "a\nc\n", true, "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"},
		{"emptied", "a\n", "", true, "--- a/x\n+++ b/x\n@@ -1 +0,0 @@\n-a\n"},
		{"newline added", "a", "a\n", true, "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"},
		{"no newline both", "a\nb", "a\nc", true, "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"},
		{"unchanged last line without newline", "a\nz", "b\nz", true, "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n z\n\\ No newline at end of file\n"},
	} {
		if got := unifiedDiff("/x", []byte(c.old), []byte(c.new), c.existed); got != c.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", c.name, got, c.want)
		}
	}
}

func TestDiffBinaryAndEqual(t *testing.T) {
	if d := unifiedDiff("/x", []byte("a"), []byte("a"), true); d != "" {
		t.Fatalf("equal diff %q", d)
	}
	if d := unifiedDiff("/x", []byte("a\x00"), []byte("b"), true); !strings.Contains(d, "Binary files differ") {
		t.Fatalf("binary diff %q", d)
	}
	if d := unifiedDiff("/x", []byte("a\nb\n"), []byte("a\nc\n"), true); !strings.Contains(d, "--- a/x") || !strings.Contains(d, "-b") || !strings.Contains(d, "+c") {
		t.Fatalf("diff %q", d)
	}
}
