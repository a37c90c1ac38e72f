package tasks

import (
	"io/fs"
	"slices"
	"testing"
	"time"
)

func TestArgsConversions(t *testing.T) {
	a := Args{"m1": 0o640, "m2": "0640", "m3": "4755", "b": "yes", "n": "12", "d": 90, "d2": "1m", "l": "one"}
	if m, _, err := a.Mode("m1"); err != nil || m != 0o640 {
		t.Errorf("m1 %o %v", m, err)
	}
	if m, _, err := a.Mode("m2"); err != nil || m != 0o640 {
		t.Errorf("m2 %o %v", m, err)
	}
	if m, _, err := a.Mode("m3"); err != nil || m != 0o755|fs.ModeSetuid {
		t.Errorf("m3 %v %v", m, err)
	}
	if b, err := a.Bool("b", false); err != nil || !b {
		t.Errorf("b %v %v", b, err)
	}
	if n, err := a.Int("n", 0); err != nil || n != 12 {
		t.Errorf("n %v %v", n, err)
	}
	if d, err := a.Duration("d", 0); err != nil || d != 90*time.Second {
		t.Errorf("d %v %v", d, err)
	}
	if d, err := a.Duration("d2", 0); err != nil || d != time.Minute {
		t.Errorf("d2 %v %v", d, err)
	}
	if l, err := a.List("l"); err != nil || !slices.Equal(l, []string{"one"}) {
		t.Errorf("l %v %v", l, err)
	}
	for _, bad := range []any{600, "0999", "rw", -1} {
		if _, err := toMode(bad); err == nil {
			t.Errorf("mode %v accepted", bad)
		}
	}
}
