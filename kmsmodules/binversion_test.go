package kmsmodules_test

import (
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kmsmodules"
	"github.com/kmsctl/kmsctl/remote/fake"
)

// TestBinaryVersion: kms_binary_version runs the host's kms_binary (or
// path) with --version and registers the version in the API's format; a
// binary that fails, or prints no such version, fails the task naming it.
func TestBinaryVersion(t *testing.T) {
	if v := kmsmodules.BinaryVersion("minkms (kmsim) version 2026-01-01T00-00-00Z commit abc\n"); v != "2026-01-01T00-00-00Z" {
		t.Errorf("BinaryVersion(kmsim) = %q", v)
	}
	if v := kmsmodules.BinaryVersion("minkms version RELEASE.2024-03-26T17-52-38Z"); v != "2024-03-26T17-52-38Z" {
		t.Errorf("BinaryVersion(vendor) = %q", v)
	}
	l := newLab(t)
	c := fake.New(t, "kms3")
	h := &host{name: "kms3", conn: c, node: inventory.KMSNode{Host: "kms3", Binary: "/usr/local/bin/minkms"}}
	c.Expect("/usr/local/bin/minkms --version").Stdout("minkms (kmsim) version 2026-01-01T00-00-00Z commit abc\n")
	res, err := l.run("kms_binary_version", h, nil, true)
	if err != nil || res.Failed || res.Changed || res.Data["version"] != "2026-01-01T00-00-00Z" || res.Data["path"] != "/usr/local/bin/minkms" {
		t.Fatalf("kms_binary_version: %+v, %v", res, err)
	}
	c.Expect("'/opt/my minkms' --version").Stdout("something else\n")
	res, err = l.run("kms_binary_version", h, map[string]any{"path": "/opt/my minkms"}, false)
	if err != nil || !res.Failed || !strings.Contains(res.Msg, "prints no version") || !strings.Contains(res.Msg, "something else") {
		t.Fatalf("no version: %+v, %v", res, err)
	}
	c.Expect("/opt/gone --version").Stderr("sh: /opt/gone: not found").Exit(127)
	res, err = l.run("kms_binary_version", h, map[string]any{"path": "/opt/gone"}, false)
	if err != nil || !res.Failed || !strings.Contains(res.Msg, "/opt/gone on kms3 does not run") || !strings.Contains(res.Msg, "not found") {
		t.Fatalf("a binary that does not run: %+v, %v", res, err)
	}
}
