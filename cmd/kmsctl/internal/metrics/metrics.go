// Package metrics writes the Prometheus metrics of kmsctl's scheduled jobs
// (backup, drill) as files for the node exporter's textfile collector: the
// gauges are gathered by the Prometheus client library's registry, encoded
// in its text format by its encoder and written atomically (temp file in
// the same directory, fsync, rename), and read back with its text parser.
package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/renameio/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Ext is the extension the textfile collector reads; a metrics file must
// have it.
const Ext = ".prom"

// Set is the gauges of one job's run, written together as one file.
type Set struct {
	reg   *prometheus.Registry
	vecs  map[string]*prometheus.GaugeVec
	names map[string][]string // gauge → its label names, sorted
}

// NewSet returns an empty set.
func NewSet() *Set {
	return &Set{reg: prometheus.NewRegistry(), vecs: map[string]*prometheus.GaugeVec{}, names: map[string][]string{}}
}

// Set sets the gauge name with labels to v. Every value of one gauge must
// have the same label names; help is the gauge's HELP line (the first
// call's is kept).
func (s *Set) Set(name, help string, labels prometheus.Labels, v float64) error {
	keys := slices.Sorted(maps.Keys(labels))
	vec, ok := s.vecs[name]
	if !ok {
		vec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, keys)
		if err := s.reg.Register(vec); err != nil {
			return fmt.Errorf("register metric %s: %w", name, err)
		}
		s.vecs[name], s.names[name] = vec, keys
	} else if !slices.Equal(keys, s.names[name]) {
		return fmt.Errorf("metric %s: labels %v, want %v", name, keys, s.names[name])
	}
	g, err := vec.GetMetricWith(labels)
	if err != nil {
		return fmt.Errorf("metric %s: %w", name, err)
	}
	g.Set(v)
	return nil
}

// CheckPath says whether path can name a metrics file: it must end in
// .prom (the textfile collector reads nothing else) and its directory must
// exist (a misspelt directory is an error, not created).
func CheckPath(path string) error {
	if filepath.Ext(path) != Ext || filepath.Base(path) == Ext {
		return fmt.Errorf("metrics file %q: want a file name ending in %s (the node exporter's textfile collector reads only those)", path, Ext)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("metrics file %q: its directory: %w (create it, or name the textfile collector's directory)", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("metrics file %q: %s is not a directory", path, dir)
	}
	return nil
}

// WriteFile writes the set to path in the text exposition format,
// atomically: a temp file beside it (named with a leading dot and no .prom
// ending, so the collector never reads it half written), fsynced, mode
// 0644 (the node exporter runs as its own user; metrics hold no secret),
// then renamed over path. prometheus.WriteToTextfile does the same without
// the fsync, so a crash could leave an empty file behind its rename.
func (s *Set) WriteFile(path string) error {
	mfs, err := s.reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	pf, err := renameio.NewPendingFile(path, renameio.WithStaticPermissions(0o644))
	if err != nil {
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	defer pf.Cleanup()
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(pf, mf); err != nil {
			return fmt.Errorf("write metrics file %s: %w", path, err)
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write metrics file %s: %w", path, err)
	}
	return nil
}

// Read parses a metrics file with the client library's text parser. A file
// that does not exist is no families and no error.
func Read(path string) (map[string]*dto.MetricFamily, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*dto.MetricFamily{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metrics file: %w", err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("parse metrics file %s: %w", path, err)
	}
	return mfs, nil
}

// Value is the value of gauge name whose labels include want, from mfs.
func Value(mfs map[string]*dto.MetricFamily, name string, want prometheus.Labels) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
	}
	return 0, false
}
