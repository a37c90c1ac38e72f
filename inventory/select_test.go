package inventory

import (
	"reflect"
	"strings"
	"testing"
)

const selectInv = `
all:
  hosts:
    bastion:
  children:
    kms:
      children:
        kms_east:
          hosts:
            kms1:
            kms2:
        kms_west:
          hosts:
            kms3:
    db:
      hosts:
        db1:
        db2:
        kms2:
        "2001:db8::1":
`

func TestSelect(t *testing.T) {
	inv := mustParse(t, selectInv)
	all := []string{"bastion", "kms1", "kms2", "kms3", "db1", "db2", "2001:db8::1"}
	tests := []struct {
		pattern string
		want    []string
		err     string
	}{
		{pattern: "all", want: all},
		{pattern: "*", want: all},
		{pattern: "kms2", want: []string{"kms2"}},
		{pattern: "kms", want: []string{"kms1", "kms2", "kms3"}},
		{pattern: "kms_west", want: []string{"kms3"}},
		{pattern: "kms3,db1", want: []string{"kms3", "db1"}},
		{pattern: "db1:kms3", want: []string{"kms3", "db1"}}, // inventory order
		{pattern: "kms:db", want: []string{"kms1", "kms2", "kms3", "db1", "db2", "2001:db8::1"}},
		{pattern: "kms:kms2:kms", want: []string{"kms1", "kms2", "kms3"}}, // de-duplicated
		{pattern: "kms:!kms2", want: []string{"kms1", "kms3"}},
		{pattern: "!kms2:kms", want: []string{"kms1", "kms3"}}, // exclusions apply last
		{pattern: "kms:&db", want: []string{"kms2"}},
		{pattern: "&db", want: []string{"kms2", "db1", "db2", "2001:db8::1"}},
		{pattern: "!kms", want: []string{"bastion", "db1", "db2", "2001:db8::1"}},
		{pattern: "kms*", want: []string{"kms1", "kms2", "kms3"}},
		{pattern: "kms_*", want: []string{"kms1", "kms2", "kms3"}},
		{pattern: "db?", want: []string{"db1", "db2"}},
		{pattern: "kms[13]", want: []string{"kms1", "kms3"}},  // not a valid subscript: a glob
		{pattern: "kms[1-3]", want: []string{"kms2", "kms3"}}, // a valid subscript wins, as in Ansible
		{pattern: "kms[0]", want: []string{"kms1"}},
		{pattern: "kms[-1]", want: []string{"kms3"}},
		{pattern: "kms[1:2]", want: []string{"kms2", "kms3"}},
		{pattern: "kms[1:]", want: []string{"kms2", "kms3"}},
		{pattern: "~kms[12]$", want: []string{"kms1", "kms2"}},
		{pattern: "~db", want: []string{"kms2", "db1", "db2", "2001:db8::1"}}, // group db and hosts db1, db2
		{pattern: " kms1 , kms3 ", want: []string{"kms1", "kms3"}},
		{pattern: "2001:db8::1", want: []string{"2001:db8::1"}},
		{pattern: "all:!db:!bastion", want: []string{"kms1", "kms3"}},
		{pattern: "nosuch", err: `"nosuch" matches no host or group`},
		{pattern: "kms:!nosuch", err: `"nosuch" matches no host`},
		{pattern: "web*", err: `"web*" matches no host`},
		{pattern: "kms[9]", err: "out of range"},
		{pattern: "~(", err: "invalid regular expression"},
		{pattern: "", err: "empty host pattern"},
		{pattern: ",", err: "empty host pattern"},
	}
	for _, tt := range tests {
		got, err := inv.Select(tt.pattern)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Select(%q) err = %v, want containing %q", tt.pattern, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%q): %v", tt.pattern, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Select(%q) = %v, want %v", tt.pattern, got, tt.want)
		}
	}
}
