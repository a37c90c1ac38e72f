package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/exit"
	"github.com/kmsctl/kmsctl/cmd/kmsctl/internal/metrics"
	"github.com/kmsctl/kmsctl/kmsmodules"
)

// metricsFileFlag is --metrics-file FILE of the commands made for cron
// (backup, drill).
func metricsFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "metrics-file", Usage: "write this run's Prometheus metrics to `FILE` (ending in .prom, in the node exporter's textfile-collector directory), also when it fails"}
}

// checkMetricsFile is a usage error (exit 1) for a --metrics-file that
// cannot be one, before anything is done.
func checkMetricsFile(path string) error {
	if path == "" {
		return nil
	}
	if err := metrics.CheckPath(path); err != nil {
		return exit.With(exit.Usage, err)
	}
	return nil
}

// withMetricsError adds the failure to write a metrics file (merr) to a
// run's own outcome (err): a run that succeeded then fails (exit 2); a run
// that failed keeps its exit code, and the metrics error is said too.
func withMetricsError(e env, err, merr error) error {
	if merr == nil {
		return err
	}
	if err == nil {
		return exit.With(exit.HostFailed, merr)
	}
	if exit.IsSilent(err) {
		fmt.Fprintf(e.stderr, "kmsctl: %s\n", merr)
		return err
	}
	return fmt.Errorf("%w; and %w", err, merr)
}

// jobResult is the gauges every job's file has: when it ran, how long,
// whether it succeeded and its exit code.
func jobResult(s *metrics.Set, job string, labels prometheus.Labels, start, end time.Time, runErr error) error {
	ok := 0.0
	if runErr == nil {
		ok = 1
	}
	return errors.Join(
		s.Set("kmsctl_"+job+"_last_run_timestamp_seconds", "when the last "+job+" run ended (Unix time)", labels, unix(end)),
		s.Set("kmsctl_"+job+"_success", "1 when the last "+job+" run succeeded, 0 when it failed", labels, ok),
		s.Set("kmsctl_"+job+"_exit_code", "the exit code of the last "+job+" run (see kmsctl's README)", labels, float64(exit.Code(runErr))),
		s.Set("kmsctl_"+job+"_duration_seconds", "how long the last "+job+" run took", labels, end.Sub(start).Seconds()),
	)
}

// backupGauges are the gauges of a backup in a backup or drill file, their
// names starting with prefix: its size, objects and canary.
func backupGauges(s *metrics.Set, prefix string, labels prometheus.Labels, info kmsmodules.BackupInfo) error {
	canary := 0.0
	if info.Canary {
		canary = 1
	}
	errs := []error{
		s.Set(prefix+"size_bytes", "the size of the snapshot file", labels, float64(info.Size)),
		s.Set(prefix+"canary", "1 when the backup has a canary ciphertext to decrypt", labels, canary),
	}
	for kind, n := range map[string]int{"enclaves": info.Enclaves, "keys": info.Keys, "policies": info.Policies, "identities": info.Identities} {
		l := prometheus.Labels{"kind": kind}
		for k, v := range labels {
			l[k] = v
		}
		errs = append(errs, s.Set(prefix+"objects", "the objects the backup holds, by kind, as its manifest lists them", l, float64(n)))
	}
	return errors.Join(errs...)
}

// unix is t in seconds since the epoch, as Prometheus timestamps are.
func unix(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// writeBackupMetrics writes backup's metrics file: the run's result, and
// of the newest good backup of dir (written by this run or an earlier
// one) its time as the last successful backup, its size, objects and
// canary. With no good backup, the last success is 0 (the epoch), so that
// an alert on its age fires.
func writeBackupMetrics(path, group, dir string, start, end time.Time, runErr error) error {
	labels := prometheus.Labels{"cluster": group}
	s := metrics.NewSet()
	errs := []error{jobResult(s, "backup", labels, start, end, runErr)}
	last := 0.0
	if b, err := kmsmodules.NewestBackup(dir); err == nil {
		info, err := b.Info()
		if err == nil {
			last = unix(info.Created)
			errs = append(errs, backupGauges(s, "kmsctl_backup_", labels, info))
		}
	}
	errs = append(errs, s.Set("kmsctl_backup_last_success_timestamp_seconds",
		"when the newest good backup of the directory was taken (Unix time; 0: none)", labels, last))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metrics of backup: %w", err)
	}
	return s.WriteFile(path)
}
