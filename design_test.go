package kmsctl_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The repository's own documents that code, tests and the README point into
// by section ("docs/design.md §5.2", "docs/protocol.md §4.3").
const (
	designDoc   = "docs/design.md"
	protocolDoc = "docs/protocol.md"
)

// docOfName maps the name a reference uses to the document's path.
var docOfName = map[string]string{
	"design":   designDoc,
	"protocol": protocolDoc,
}

var (
	// docHeading matches a numbered heading: "## 3. ..." or "### 3.8 ...".
	docHeading = regexp.MustCompile(`(?m)^#{2,4} ([0-9]+(?:\.[0-9]+)*)\.? `)
	// sectionRef matches a section reference: "design.md §3.2" or
	// "protocol.md §4" names its document; a bare "§6.4" continues the
	// reference before it on the same line ("protocol.md §6.3 and §6.4"),
	// and inside a document refers to that document.
	sectionRef = regexp.MustCompile(`(?:\b(design|protocol)\.md )?§([0-9]+(?:\.[0-9]+)*)`)
	// outsideRef matches a reference to a design brief or protocol fact sheet
	// that lives outside the repository (DESIGN.md, minkms-protocol.md),
	// which a reader of the repository cannot follow.
	outsideRef = regexp.MustCompile(`DESIGN\.md|(?i:minkms-protocol|\bfact sheet)`)
	// factEnd and sheetStart catch "fact sheet" split across two lines.
	factEnd    = regexp.MustCompile(`(?i)\bfact\s*$`)
	sheetStart = regexp.MustCompile(`(?i)^\s*(?://|#|\*)?\s*sheet\b`)
)

// docSections returns the section numbers of a document's headings.
func docSections(t *testing.T, path string) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	secs := map[string]bool{}
	for _, m := range docHeading.FindAllSubmatch(doc, -1) {
		secs[string(m[1])] = true
	}
	if len(secs) < 10 {
		t.Fatalf("%s has only %d numbered sections", path, len(secs))
	}
	return secs
}

// docProblems returns the problems of one file's text: references to
// sections that do not exist (sections maps a document's path to its
// section numbers) and references to documents outside the repository. self
// is the document the file is ("" for other files). refs counts the
// references found per document.
func docProblems(path, self, text string, sections map[string]map[string]bool, refs map[string]int) []string {
	var problems []string
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		split := i+1 < len(lines) && factEnd.MatchString(line) && sheetStart.MatchString(lines[i+1])
		if outsideRef.MatchString(line) || split {
			problems = append(problems, path+":"+strconv.Itoa(i+1)+" refers to a document outside the repository (the design brief or the protocol fact sheet); point into "+designDoc+" or "+protocolDoc+" instead")
		}
	}
	for i, line := range lines {
		current := self
		for _, m := range sectionRef.FindAllStringSubmatch(line, -1) {
			if m[1] != "" {
				current = docOfName[m[1]]
			}
			if current == "" {
				continue // a bare § in a file that is no document: an RFC, say
			}
			refs[current]++
			if !sections[current][m[2]] {
				problems = append(problems, path+":"+strconv.Itoa(i+1)+" refers to "+current+" §"+m[2]+", which has no such section")
			}
		}
	}
	return problems
}

// TestDesignReferences: every "docs/design.md §N" and "docs/protocol.md §N"
// in the repository, and every "§N" inside those documents, names a section
// that exists; nothing refers to the design brief or the protocol fact sheet
// outside the repository.
func TestDesignReferences(t *testing.T) {
	sections := map[string]map[string]bool{
		designDoc:   docSections(t, designDoc),
		protocolDoc: docSections(t, protocolDoc),
	}
	refs := map[string]int{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch filepath.ToSlash(path) {
			case ".git", "bin", "lab": // git's store, build output, `make lab`'s state
				return filepath.SkipDir
			}
			return nil
		}
		if path == "design_test.go" {
			return nil // this file names the patterns it looks for
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data, 0) >= 0 {
			return nil // binary
		}
		self := ""
		if p := filepath.ToSlash(path); p == designDoc || p == protocolDoc {
			self = p
		}
		for _, p := range docProblems(path, self, string(data), sections, refs) {
			t.Error(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{designDoc, protocolDoc} {
		if refs[doc] < 10 {
			t.Errorf("found only %d references into %s; is the pattern still right?", refs[doc], doc)
		}
	}
}

// TestDocProblems holds the checker itself to account: each reference below
// must be reported, or not, as the case says.
func TestDocProblems(t *testing.T) {
	sections := map[string]map[string]bool{
		designDoc:   {"3": true, "3.2": true},
		protocolDoc: {"4": true, "4.3": true, "6.3": true},
	}
	for _, tt := range []struct {
		name, self, text string
		problems         int
	}{
		{"design ok", "", "see docs/design.md §3.2", 0},
		{"design missing", "", "see docs/design.md §3.9", 1},
		{"protocol ok", "", "// docs/protocol.md §4.3", 0},
		{"protocol missing", "", "// docs/protocol.md §4.9", 1},
		{"protocol section of design", "", "// docs/protocol.md §3.2", 1},
		{"continued ok", "", "docs/protocol.md §6.3 and §4", 0},
		{"continued missing", "", "docs/protocol.md §6.3 and §6.4", 1},
		{"continued switches document", "", "docs/design.md §3 and docs/protocol.md §3.2", 1},
		{"bare outside documents", "", "RFC 4254 §6.10", 0},
		{"bare inside protocol", protocolDoc, "as §4.3 and §9 say", 1},
		{"bare inside design", designDoc, "as §3.2 says", 0},
		{"outside protocol", "", "// minkms-protocol.md §4.3", 1},
		{"outside fact sheet", "", "// (fact sheet §8)", 1},
		{"outside fact sheet split", "", "// written from the fact\n// sheet (§4.3)", 1},
		{"outside design brief", "", "see DESIGN.md", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := docProblems("f", tt.self, tt.text, sections, map[string]int{})
			if len(got) != tt.problems {
				t.Errorf("%q: %d problems %q, want %d", tt.text, len(got), got, tt.problems)
			}
		})
	}
}
