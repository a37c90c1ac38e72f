package modules

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote/fake"
	"github.com/kmsctl/kmsctl/tasks"
)

// corrupting is a peer whose downloads flip one byte on the way (a stream
// corrupted between the peer and the task's host).
type corrupting struct{ *fake.Conn }

func (c corrupting) Download(ctx context.Context, p string, dst io.Writer) error {
	var b strings.Builder
	if err := c.Conn.Download(ctx, p, &b); err != nil {
		return err
	}
	s := []byte(b.String())
	s[len(s)/2] ^= 1
	_, err := dst.Write(s)
	return err
}

// peerEnv is the Env of a copy on target that reaches peers by name.
func peerEnv(target *fake.Conn, peers map[string]tasks.Conn, args map[string]any) *tasks.Env {
	e := testEnv(target, args)
	e.Peer = func(_ context.Context, name string) (tasks.Conn, error) {
		c, ok := peers[name]
		if !ok {
			return nil, errors.New("no route to " + name)
		}
		return c, nil
	}
	return e
}

// TestCopyFromHost: copy with from_host streams the peer's file to the
// task's host, verified by the sha256 the peer reports (mode and owner as
// asked; Plan writes nothing; a second run changes nothing); a stream
// corrupted on the way fails the copy and leaves dest as it was; a
// missing file or a directory on the peer, a relative src and an Env
// without peers fail naming the problem.
func TestCopyFromHost(t *testing.T) {
	peer := fake.New(t, "kms1")
	peer.SetFile("/etc/minkms/config.yaml", "version: v1\nadmin:\n  identity: h1:x\n", 0o640)
	target := fake.New(t, "kms3")
	target.SetFile("/etc/minkms/config.yaml", "old\n", 0o600)
	args := map[string]any{"src": "/etc/minkms/config.yaml", "from_host": "kms1", "dest": "/etc/minkms/config.yaml", "mode": "0640", "owner": "root", "group": "minkms-user"}
	peers := map[string]tasks.Conn{"kms1": peer}
	ctx := context.Background()
	if err := (copyModule{}).CheckArgs(tasks.Args{"from_host": "kms1", "content": "x", "dest": "/x"}); err == nil {
		t.Error("from_host without src accepted")
	}

	corrupt := map[string]tasks.Conn{"kms1": corrupting{peer}}
	before := target.Snapshot()
	_, err := copyModule{}.Apply(ctx, peerEnv(target, corrupt, args))
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "from kms1:/etc/minkms/config.yaml") {
		t.Fatalf("a corrupted stream: %v", err)
	}
	if after := target.Snapshot(); after != before {
		t.Fatalf("a corrupted stream changed the target:\n%s---\n%s", before, after)
	}

	p, err := copyModule{}.Plan(ctx, peerEnv(target, peers, args))
	if err != nil || !p.Changed || target.Snapshot() != before {
		t.Fatalf("Plan: %+v, %v", p, err)
	}
	r, err := copyModule{}.Apply(ctx, peerEnv(target, peers, args))
	if err != nil || !r.Changed {
		t.Fatalf("Apply: %+v, %v", r, err)
	}
	got, _ := target.File("/etc/minkms/config.yaml")
	want, _ := peer.File("/etc/minkms/config.yaml")
	if got.Content != want.Content || got.Mode != 0o640 || got.Owner != "root" || got.Group != "minkms-user" {
		t.Fatalf("copied %+v, want the content of %+v", got, want)
	}
	if r.Data["checksum"] != sha256Hex([]byte(want.Content)) {
		t.Errorf("checksum %v", r.Data["checksum"])
	}
	mid := target.Snapshot()
	if r, err := (copyModule{}).Apply(ctx, peerEnv(target, peers, args)); err != nil || r.Changed || target.Snapshot() != mid {
		t.Fatalf("second Apply: %+v, %v", r, err)
	}

	for want, mod := range map[string]func(a map[string]any){
		"stat kms1:/etc/minkms/nosuch": func(a map[string]any) { a["src"] = "/etc/minkms/nosuch" },
		"is a directory":               func(a map[string]any) { a["src"] = "/etc/minkms" },
		"must be an absolute path":     func(a map[string]any) { a["src"] = "config.yaml" },
		"no route to kms9":             func(a map[string]any) { a["from_host"] = "kms9" },
	} {
		a := map[string]any{}
		for k, v := range args {
			a[k] = v
		}
		mod(a)
		if _, err := (copyModule{}).Apply(ctx, peerEnv(target, peers, a)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", a, err, want)
		}
	}
	if _, err := (copyModule{}).Apply(ctx, testEnv(target, args)); err == nil || !strings.Contains(err.Error(), "no connection to another host") {
		t.Errorf("no peers: %v", err)
	}
	if target.Snapshot() != mid {
		t.Error("a failed copy changed the target")
	}
}
