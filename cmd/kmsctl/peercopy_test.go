package main

import (
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
)

// TestPeerCopyRefused: provision, scale add and drill push node files
// from kms_*_src or the built-in templates and never copy them from a
// peer; an inventory that asks for a peer's copy (kms_*_from: peer) is
// refused up front, exit 4, naming the variable and kms_*_src, and no
// file of any host changes.
func TestPeerCopyRefused(t *testing.T) {
	l := newRecoverLab(t)
	for _, c := range []struct {
		name     string
		args     []string
		from, to string
	}{
		{"provision", []string{"provision", "kms3", "-e", "kms_config_from=peer"}, "kms_config_from", "kms_config_src"},
		{"scale add", []string{"scale", "add", "kms3", "--yes", "-e", "kms_config_from=peer"}, "kms_config_from", "kms_config_src"},
		{"drill", []string{"drill", "--scratch", "kms3", "-e", "kms_config_from=peer"}, "kms_config_from", "kms_config_src"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := l.snapshot()
			te, code := l.kmsctl(t, c.args...)
			msg := te.out.String() + te.errOut.String()
			if code != exit.Refused || !strings.Contains(msg, c.from+": peer for kms3") || !strings.Contains(msg, "with "+c.to+" instead") {
				t.Errorf("%v: exit %d, want %d naming %s and %s\n%s", c.args, code, exit.Refused, c.from, c.to, msg)
			}
			if l.snapshot() != before {
				t.Errorf("%v changed files", c.args)
			}
		})
	}
}
