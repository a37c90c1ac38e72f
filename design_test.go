package kmsctl_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// designDoc is the repository's own design document.
const designDoc = "docs/design.md"

var (
	// designHeading matches a numbered heading: "## 3. ..." or "### 3.8 ...".
	designHeading = regexp.MustCompile(`(?m)^#{2,4} ([0-9]+(?:\.[0-9]+)*)\.? `)
	// designRef matches a reference into the design document from elsewhere.
	designRef = regexp.MustCompile(`design\.md §([0-9]+(?:\.[0-9]+)*)`)
	// innerRef matches a reference inside the design document itself.
	innerRef = regexp.MustCompile(`§([0-9]+(?:\.[0-9]+)*)`)
	// outsideRef matches a reference to the design brief that lives outside
	// the repository (DESIGN.md), which a reader of the repository cannot follow.
	outsideRef = regexp.MustCompile(`DESIGN\.md`)
)

// designSections returns the section numbers of the design document's headings.
func designSections(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatalf("the design document: %v", err)
	}
	secs := map[string]bool{}
	for _, m := range designHeading.FindAllSubmatch(doc, -1) {
		secs[string(m[1])] = true
	}
	if len(secs) < 10 {
		t.Fatalf("%s has only %d numbered sections", designDoc, len(secs))
	}
	return secs
}

// TestDesignReferences: every "docs/design.md §N" in the repository, and every
// "§N" inside the design document, names a section that exists; nothing
// refers to a DESIGN.md outside the repository.
func TestDesignReferences(t *testing.T) {
	secs := designSections(t)
	refs := 0
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
		re := designRef
		if filepath.ToSlash(path) == designDoc {
			re = innerRef
		}
		for i, line := range strings.Split(string(data), "\n") {
			if outsideRef.MatchString(line) {
				t.Errorf("%s:%d refers to DESIGN.md, which is not in the repository; point into %s instead", path, i+1, designDoc)
			}
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				refs++
				if !secs[m[1]] {
					t.Errorf("%s:%d refers to %s §%s, which has no such section", path, i+1, designDoc, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if refs < 10 {
		t.Errorf("found only %d references into %s; is the pattern still right?", refs, designDoc)
	}
}
