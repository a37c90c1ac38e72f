package inventory

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestExpandHostRange(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "kms1", want: []string{"kms1"}},
		{in: "kms[1:3]", want: []string{"kms1", "kms2", "kms3"}},
		{in: "kms[08:10].dc", want: []string{"kms08.dc", "kms09.dc", "kms10.dc"}},
		{in: "n[0:6:3]", want: []string{"n0", "n3", "n6"}},
		{in: "db-[a:c]", want: []string{"db-a", "db-b", "db-c"}},
		{in: "r[1:2]-[a:b]", want: []string{"r1-a", "r1-b", "r2-a", "r2-b"}},
		{in: "x[:2]", want: []string{"x0", "x1", "x2"}},
		{in: "kms[3:1]", err: "invalid numeric range"},
		{in: "kms[1:]", err: "missing end"},
		{in: "kms[01:100]", err: "same width"},
		{in: "kms[a:C]", err: "invalid letter range"},
		{in: "kms[1:a]", err: "numbers or single letters"},
		{in: "kms[1:3:0]", err: "positive"},
		{in: "kms[1:100000]", err: "more than"},
		{in: "k[1:200][1:200]", err: "more than"},
	}
	for _, tt := range tests {
		got, err := expandHostRange(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expandHostRange(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("expandHostRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestCheckHostName(t *testing.T) {
	for _, ok := range []string{"kms1", "kms-1.example.com", "10.0.0.1", "2001:db8::1", "fe80::1%eth0", "_x"} {
		if p := checkHostName(ok); p != "" {
			t.Errorf("%q rejected: %s", ok, p)
		}
	}
	for _, bad := range []string{"", "a b", "-oProxyCommand=x", "a;b", "a/b", "user@h", "h:22", "1.2.3.4:22", "a$b", strings.Repeat("a", 254)} {
		if checkHostName(bad) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestGraphPlain checks the exact ansible-inventory --graph shape.
func TestGraphPlain(t *testing.T) {
	inv := mustParse(t, `
all:
  hosts:
    lonely:
  children:
    kms:
      children:
        west:
          hosts:
            kms3:
        east:
          hosts:
            kms2:
            kms1:
    backup:
      hosts:
        kms1:
`)
	var buf bytes.Buffer
	if err := inv.Graph(&buf, false); err != nil {
		t.Fatal(err)
	}
	want := `@all:
  |--@backup:
  |  |--kms1
  |--@kms:
  |  |--@east:
  |  |  |--kms1
  |  |  |--kms2
  |  |--@west:
  |  |  |--kms3
  |--@ungrouped:
  |  |--lonely
`
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}
