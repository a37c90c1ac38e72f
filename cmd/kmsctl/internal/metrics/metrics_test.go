package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestWriteFileParsesBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kmsctl_backup_kms.prom")
	s := NewSet()
	must(t, s.Set("kmsctl_backup_last_success_timestamp_seconds", "when the newest good backup was taken", prometheus.Labels{"cluster": "kms"}, 1764664205))
	must(t, s.Set("kmsctl_backup_objects", "objects in the newest good backup", prometheus.Labels{"cluster": "kms", "kind": "keys"}, 10000))
	must(t, s.Set("kmsctl_backup_objects", "", prometheus.Labels{"cluster": "kms", "kind": "enclaves"}, 3))
	must(t, s.WriteFile(path))

	mfs, err := Read(path)
	must(t, err)
	for _, c := range []struct {
		name   string
		labels prometheus.Labels
		want   float64
	}{
		{"kmsctl_backup_last_success_timestamp_seconds", prometheus.Labels{"cluster": "kms"}, 1764664205},
		{"kmsctl_backup_objects", prometheus.Labels{"cluster": "kms", "kind": "keys"}, 10000},
		{"kmsctl_backup_objects", prometheus.Labels{"cluster": "kms", "kind": "enclaves"}, 3},
	} {
		got, ok := Value(mfs, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v, %v; want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := Value(mfs, "kmsctl_backup_objects", prometheus.Labels{"kind": "policies"}); ok {
		t.Errorf("a value never set was read back")
	}
	b, err := os.ReadFile(path)
	must(t, err)
	if !strings.Contains(string(b), "# HELP kmsctl_backup_objects objects in the newest good backup\n# TYPE kmsctl_backup_objects gauge\n") {
		t.Errorf("file lacks HELP and TYPE lines:\n%s", b)
	}
	st, err := os.Stat(path)
	must(t, err)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (the node exporter runs as its own user)", st.Mode().Perm())
	}
}

// TestWriteFileReplacesAtomically: a second write replaces the first whole
// and leaves nothing else in the directory (no temp file the collector
// could read, none left over).
func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kmsctl_drill_kms.prom")
	first := NewSet()
	must(t, first.Set("kmsctl_drill_objects", "h", prometheus.Labels{"kind": "keys"}, 1))
	must(t, first.Set("kmsctl_drill_old_metric", "h", nil, 1))
	must(t, first.WriteFile(path))
	second := NewSet()
	must(t, second.Set("kmsctl_drill_objects", "h", prometheus.Labels{"kind": "keys"}, 2))
	must(t, second.WriteFile(path))

	mfs, err := Read(path)
	must(t, err)
	if v, _ := Value(mfs, "kmsctl_drill_objects", prometheus.Labels{"kind": "keys"}); v != 2 {
		t.Errorf("objects = %v, want 2", v)
	}
	if _, ok := mfs["kmsctl_drill_old_metric"]; ok {
		t.Errorf("the first file's metric survived the second write")
	}
	ents, err := os.ReadDir(dir)
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		t.Errorf("directory holds %v, want only %s", ents, filepath.Base(path))
	}
}

func TestWriteFileFailsInAMissingDirectory(t *testing.T) {
	s := NewSet()
	must(t, s.Set("m", "h", nil, 1))
	if err := s.WriteFile(filepath.Join(t.TempDir(), "no", "m.prom")); err == nil {
		t.Fatal("wrote into a directory that does not exist")
	}
}

func TestSetRefusesOtherLabelNames(t *testing.T) {
	s := NewSet()
	must(t, s.Set("m", "h", prometheus.Labels{"cluster": "a"}, 1))
	if err := s.Set("m", "h", prometheus.Labels{"host": "a"}, 1); err == nil {
		t.Error("one gauge took two sets of label names")
	}
}

func TestReadMissingFileIsEmpty(t *testing.T) {
	mfs, err := Read(filepath.Join(t.TempDir(), "none.prom"))
	if err != nil || len(mfs) != 0 {
		t.Errorf("Read(missing) = %v, %v; want nothing, no error", mfs, err)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.prom")
	must(t, os.WriteFile(path, []byte("this is { not metrics\n"), 0o644))
	if _, err := Read(path); err == nil {
		t.Error("parsed garbage")
	}
}

func TestCheckPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	must(t, os.WriteFile(file, nil, 0o644))
	for path, ok := range map[string]bool{
		filepath.Join(dir, "kmsctl_backup.prom"):         true,
		filepath.Join(dir, "kmsctl_backup.txt"):          false,
		filepath.Join(dir, ".prom"):                      false,
		filepath.Join(dir, "missing", "kmsctl.prom"):     false,
		filepath.Join(file, "kmsctl.prom"):               false,
		filepath.Join(dir, "kmsctl_backup.prom.partial"): false,
	} {
		if err := CheckPath(path); (err == nil) != ok {
			t.Errorf("CheckPath(%s) = %v, want ok %v", path, err, ok)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
