package remote

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestErrorMessagesAndClassification(t *testing.T) {
	xe := &ExitError{Host: "kms1", Cmd: "set -e\nrm -rf /tmp/x\nsecond line", Status: 2, Stderr: "boom\n"}
	if got, want := xe.Error(), "command on kms1 exited with status 2: set -e ...: boom"; got != want {
		t.Errorf("ExitError = %q, want %q", got, want)
	}
	sig := &ExitError{Host: "kms1", Cmd: "sleep 9", Status: -1, Signal: "KILL"}
	if !strings.Contains(sig.Error(), "killed by signal KILL") {
		t.Errorf("signal message = %q", sig.Error())
	}
	lost := &LostError{Host: "kms1", Op: "run command", Err: errors.New("EOF")}
	if !errors.Is(lost, ErrConnectionLost) || !lost.Unreachable() || !strings.Contains(lost.Error(), "not retried") {
		t.Errorf("LostError = %v", lost)
	}
	de := &DialError{Host: "kms1", Err: &HostKeyError{Kind: Revoked, Host: "kms1", Fingerprint: "SHA256:x", File: "/k", Line: 4}}
	var hk *HostKeyError
	if !errors.As(de, &hk) || !strings.Contains(de.Error(), "revoked by /k:4") {
		t.Errorf("DialError = %v", de)
	}
	pinned := &HostKeyError{Kind: Changed, Host: "[h]:2222", Alias: "kms2", Fingerprint: "SHA256:new", File: pinnedSource, KnownFingerprint: "SHA256:old"}
	if msg := pinned.Error(); !strings.Contains(msg, "host key for [h]:2222 changed") || strings.Contains(msg, "ssh-keygen -R") || !strings.Contains(msg, "re-pin") ||
		!strings.Contains(msg, "--expect-host-key kms2=SHA256:new") {
		t.Errorf("pinned changed message = %q", msg)
	}
}

func TestParseStatAndMode(t *testing.T) {
	fi, err := parseStat("81a4 6 1700000000\n", "/etc/minkms/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != "config.yaml" || fi.Size() != 6 || fi.Mode() != 0o644 || fi.ModTime().Unix() != 1700000000 {
		t.Errorf("parseStat = %v %v %v %v", fi.Name(), fi.Size(), fi.Mode(), fi.ModTime())
	}
	if m := unixMode(0o41777); m != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("unixMode(dir 1777) = %v", m)
	}
	if got := octalMode(fs.ModeSetuid | 0o755); got != "4755" {
		t.Errorf("octalMode = %s", got)
	}
	if _, err := parseStat("garbage", "/x"); err == nil {
		t.Error("parseStat accepted garbage")
	}
}

func TestParseSHA256Sum(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, out := range []string{h + "  /x\n", "\\" + h + "  /a\\nb\n", strings.ToUpper(h) + " -"} {
		if got, err := parseSHA256Sum(out, "/x", "h"); err != nil || got != h {
			t.Errorf("parseSHA256Sum(%q) = %q, %v", out, got, err)
		}
	}
	for _, out := range []string{"", "short  /x", strings.Repeat("zz", 32) + "  /x"} {
		if _, err := parseSHA256Sum(out, "/x", "h"); err == nil {
			t.Errorf("parseSHA256Sum(%q) accepted", out)
		}
	}
}
