package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkStatus runs the built kmsctl binary's `status` against simulator
// clusters of 3, 9 and 25 nodes on 127.0.0.1, each node an SSH host (an
// in-process SSH server in this test process, so the binary's own memory is
// measured alone), and once more with one node whose `systemctl show` takes
// 300 ms: the time should follow the slowest node, not the number of
// nodes. It reports the wall time per run (ns/op) and the binary's peak RSS
// (peak-RSS-MiB, the largest of the runs), its CPU time per run
// (cpu-ms/op, user and system) and how many runs found the
// cluster degraded (exit 7; any other failure stops it). Figures only;
// nothing is asserted about them.
//
// It needs /usr/bin/time (GNU time) for the peak RSS.
//
//	go test -run XXX -bench BenchmarkStatus -benchtime 5x ./cmd/kmsctl/
func BenchmarkStatus(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "kmsctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, n := range []int{3, 9, 25} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			l := newStatusLab(b, n)
			b.Run("all_fast", func(b *testing.B) { benchStatus(b, bin, l) })
			l.setSlow("kms2", 300*time.Millisecond)
			b.Run("one_slow_300ms", func(b *testing.B) { benchStatus(b, bin, l) })
		})
	}
}

func benchStatus(b *testing.B, bin string, l *statusLab) {
	state := b.TempDir()
	var peak int
	var cpu float64
	degraded := 0
	for b.Loop() {
		// Through /usr/bin/time: a child forked from this big test process
		// would report this process's RSS as its own peak.
		cmd := exec.Command("/usr/bin/time", "-f", "cpu=%U+%S maxrss=%M", bin, "status", "-i", l.inventory, "--ssh-config", "none")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state, "HOME="+state, "SSH_AUTH_SOCK=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() == 7:
			// A verdict too: the in-process nodes, starved of CPU, may
			// briefly see each other down.
			degraded++
			if i := strings.Index(stdout.String(), "DEGRADED"); i >= 0 {
				b.Logf("%s", strings.SplitN(stdout.String()[i:], "\n", 2)[0])
			}
		case err != nil:
			b.Fatalf("kmsctl status: %v\n%s%s", err, &stdout, &stderr)
		}
		u, rss := timeFigures(b, stderr.String())
		cpu += u
		peak = max(peak, rss)
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
	b.ReportMetric(cpu*1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(degraded), "degraded-runs")
}

// timeFigures reads the CPU seconds (user+system) and the peak RSS (KiB)
// from the "cpu=U+S maxrss=N" line /usr/bin/time printed last.
func timeFigures(b *testing.B, stderr string) (float64, int) {
	i := strings.LastIndex(stderr, "cpu=")
	var u, s float64
	var rss int
	if i < 0 {
		b.Fatalf("no figures from /usr/bin/time in\n%s", stderr)
	}
	if _, err := fmt.Sscanf(stderr[i:], "cpu=%f+%f maxrss=%d", &u, &s, &rss); err != nil {
		b.Fatalf("figures from /usr/bin/time %q: %v", stderr[i:], err)
	}
	return u + s, rss
}
