package playbooks

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/tasks"
)

const testInventory = `all:
  vars:
    color: blue
  children:
    kms:
      hosts:
        kms1: {color: red}
        kms2:
        kms3:
    web:
      hosts:
        web1:
`

const testPlaybook = `- name: kms
  hosts: kms
  tasks:
    - ping:
- name: web
  hosts: web
  tasks:
    - ping:
`

func parse(t *testing.T) (*inventory.Inventory, *Playbook) {
	t.Helper()
	inv, err := inventory.Parse("inventory.yml", []byte(testInventory))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Decode("site.yml", []byte(testPlaybook), nil, builtin())
	if err != nil {
		t.Fatal(err)
	}
	return inv, pb
}

func hostNames(p tasks.Play) []string {
	var out []string
	for _, h := range p.Hosts {
		out = append(out, h.Name)
	}
	return out
}

func TestPlays(t *testing.T) {
	inv, pb := parse(t)
	plays, err := Plays(pb, Options{Inventory: inv, Limit: "kms:!kms2", ExtraVars: map[string]any{"x": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	// --limit leaves the web play without hosts: it is dropped.
	if len(plays) != 1 || plays[0].Name != "kms" || !slices.Equal(hostNames(plays[0]), []string{"kms1", "kms3"}) {
		t.Fatalf("plays = %+v", plays)
	}
	h := plays[0].Hosts[0]
	if h.Vars["color"] != "red" || h.Vars["x"] != "1" || h.Vars["inventory_hostname"] != "kms1" {
		t.Errorf("kms1 vars = %v", h.Vars)
	}
	if plays[0].Hosts[1].Vars["color"] != "blue" {
		t.Errorf("kms3 vars = %v", plays[0].Hosts[1].Vars)
	}

	if _, err := Plays(pb, Options{Inventory: inv, Limit: "web1:&kms"}); !errors.Is(err, ErrNoHosts) {
		t.Errorf("no hosts left: err = %v", err)
	}
	if _, err := Plays(pb, Options{Inventory: inv, Limit: "nosuchhost"}); err == nil || !strings.Contains(err.Error(), "--limit") {
		t.Errorf("bad --limit: err = %v", err)
	}
}

// conn is a connection on which every command succeeds; it records them.
type conn struct {
	host string
	mu   *sync.Mutex
	ran  *[]string
}

func (c conn) Host() string { return c.host }
func (c conn) Run(_ context.Context, cmd string, _ io.Reader, _, _ io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.ran = append(*c.ran, c.host+": "+cmd)
	return nil
}
func (c conn) Upload(context.Context, string, io.Reader, fs.FileMode, string) (string, error) {
	return "", errors.ErrUnsupported
}
func (c conn) Download(context.Context, string, io.Writer) error { return errors.ErrUnsupported }
func (c conn) Stat(context.Context, string) (fs.FileInfo, error) {
	return nil, errors.ErrUnsupported
}
func (c conn) Remove(context.Context, string) error { return errors.ErrUnsupported }
func (c conn) Checksum(context.Context, string) (string, error) {
	return "", errors.ErrUnsupported
}
func (c conn) DialTCP(context.Context, string) (net.Conn, error) { return nil, errors.ErrUnsupported }
func (c conn) Close() error                                      { return nil }

func TestRun(t *testing.T) {
	inv, pb := parse(t)
	var (
		mu  sync.Mutex
		ran []string
	)
	eng := &tasks.Engine{Modules: builtin(), Connect: func(_ context.Context, h tasks.Host) (tasks.Conn, error) {
		return conn{host: h.Name, mu: &mu, ran: &ran}, nil
	}}
	recap, err := Run(context.Background(), eng, pb, Options{Inventory: inv, Limit: "kms1,web1"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ran)
	if !slices.Equal(ran, []string{"kms1: true", "web1: true"}) {
		t.Errorf("commands %q", ran)
	}
	if len(recap) != 2 || recap["kms1"].OK != 1 || recap["web1"].OK != 1 {
		t.Errorf("recap %v", recap)
	}
}
