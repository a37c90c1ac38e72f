//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestSystemdBackupTimer installs examples/systemd's units unchanged on kms1 of the shared lab
// (real systemd), whose Key Manager (minkms.service, the cluster's group kms of one host in the
// inventory there) kmsctl reaches over SSH on 127.0.0.1 with the credentials of the units (the admin API key and the SSH key in 0600
// files under /etc/kmsctl, handed over by LoadCredential): the timer fires (a drop-in makes it
// fire a second after it starts instead of hourly), the backup runs quiet, its metrics file
// appears in the textfile directory, and Debian's prometheus-node-exporter serves the kmsctl
// metrics on /metrics. Then the Key Manager is stopped and the job runs again: it fails, and
// the metrics say so (success 0, exit code 3) while keeping the last good backup's time. No key
// is in the unit's command line or its journal.
func TestSystemdBackupTimer(t *testing.T) {
	c := sharedCluster(t)
	l := c.l
	const host = "kms1"
	// Put kms1 back as the shared lab had it: no kmsctl, units, keys or metrics; minkms up.
	t.Cleanup(func() {
		l.Exec(host, "systemctl stop 'kmsctl-backup@*.timer' prometheus-node-exporter.service; "+
			"rm -rf /etc/systemd/system/kmsctl-backup@.service /etc/systemd/system/kmsctl-backup@.timer /etc/systemd/system/kmsctl-backup@.timer.d "+
			"/etc/systemd/system/kmsctl-drill@.service /etc/systemd/system/kmsctl-drill@.timer "+
			"/etc/kmsctl /usr/local/bin/kmsctl /var/lib/kmsctl /var/lib/prometheus/node-exporter/kmsctl_*.prom; "+
			"systemctl reset-failed; systemctl daemon-reload; systemctl start minkms")
	})
	apiKey, err := os.ReadFile(filepath.Join(l.Dir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	sshKey, err := os.ReadFile(l.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(l.Dir, "certs", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(kmsctlBin(t, l))
	if err != nil {
		t.Fatal(err)
	}
	l.CopyIn(host, "/usr/local/bin/kmsctl", 0o755, bin)
	for _, u := range []string{"kmsctl-backup@.service", "kmsctl-backup@.timer", "kmsctl-drill@.service", "kmsctl-drill@.timer"} {
		b, err := os.ReadFile(filepath.Join(l.Root, "examples", "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		l.CopyIn(host, "/etc/systemd/system/"+u, 0o644, b)
	}
	l.CopyIn(host, "/etc/kmsctl/api.key", 0o600, apiKey)
	l.CopyIn(host, "/etc/kmsctl/ssh.key", 0o600, sshKey)
	l.CopyIn(host, "/etc/kmsctl/ca.crt", 0o644, ca)
	l.CopyIn(host, "/etc/kmsctl/inventory.yml", 0o644, []byte("all:\n  vars:\n    ansible_user: root\n"+
		"    kms_ssh_known_hosts: /etc/kmsctl/known_hosts\n    kms_api: ssh\n    kms_ca_file: /etc/kmsctl/ca.crt\n"+
		"  children:\n    kms:\n      hosts:\n        kms1:\n          ansible_host: 127.0.0.1\n          kms_endpoint: kms1:7373\n"))
	l.MustExec(host, `echo "127.0.0.1 $(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" >/etc/kmsctl/known_hosts`)
	// The test's only change to the units: fire a second after the timer starts.
	l.CopyIn(host, "/etc/systemd/system/kmsctl-backup@.timer.d/now.conf", 0o644,
		[]byte("[Timer]\nOnCalendar=\nOnActiveSec=1s\nRandomizedDelaySec=0\nAccuracySec=1s\n"))
	// The journal from here on (the lab's journal holds earlier tests' runs too).
	cur := l.MustExec(host, "journalctl -n 0 --show-cursor -q")
	since := "--after-cursor='" + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(cur), "-- cursor:")) + "'"
	l.MustExec(host, "systemctl daemon-reload && systemctl start prometheus-node-exporter.service && systemctl start kmsctl-backup@kms.timer")
	// The drill's units are only checked (the drill itself is tested in cmd/kmsctl).
	if out, err := l.Exec(host, "systemd-analyze verify kmsctl-drill@kms.service kmsctl-drill@kms.timer kmsctl-backup@kms.service kmsctl-backup@kms.timer 2>&1"); err != nil ||
		strings.Contains(out, "kmsctl-") {
		t.Errorf("systemd-analyze verify of the units: %v\n%s", err, out)
	}

	const prom = "/var/lib/prometheus/node-exporter/kmsctl_backup_kms.prom"
	svc := waitJob(t, l, host, "kmsctl-backup@kms.service", since, 1)
	if svc["Result"] != "success" || svc["ExecMainStatus"] != "0" {
		t.Fatalf("the backup job: %v\n%s", svc, l.MustExec(host, "journalctl -u kmsctl-backup@kms.service --no-pager -o cat"))
	}
	if out := invocationLog(t, l, host, "kmsctl-backup@kms.service"); strings.TrimSpace(out) != "" {
		t.Errorf("a backup that succeeds is not quiet; its journal:\n%s", out)
	}
	if out := l.MustExec(host, "ls /var/lib/kmsctl/backups/kms/"); strings.Count(out, "_kms.db.gzip\n") != 1 || strings.Count(out, ".manifest.json") != 1 {
		t.Errorf("backup directory /var/lib/kmsctl/backups/kms holds:\n%s", out)
	}
	file := parseText(t, l.MustExec(host, "cat "+prom))
	last := gauge(t, file, "kmsctl_backup_last_success_timestamp_seconds", "kms")
	if gauge(t, file, "kmsctl_backup_success", "kms") != 1 || last < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("metrics file after a good backup:\n%s", l.MustExec(host, "cat "+prom))
	}

	// The node exporter serves them (its own textfile collector read the file without error).
	served := scrape(t, l, host)
	if gauge(t, served, "kmsctl_backup_success", "kms") != 1 || gauge(t, served, "kmsctl_backup_last_success_timestamp_seconds", "kms") != last ||
		gauge(t, served, "node_textfile_scrape_error", "") != 0 {
		t.Errorf("node exporter /metrics does not serve the kmsctl metrics as written")
	}

	// A failed run: the Key Manager stopped, the job run again as the timer runs it.
	l.MustExec(host, "systemctl stop minkms")
	l.Exec(host, "systemctl start kmsctl-backup@kms.service")
	svc = waitJob(t, l, host, "kmsctl-backup@kms.service", since, 2)
	if svc["Result"] != "exit-code" || svc["ExecMainStatus"] == "0" {
		t.Errorf("the job with the Key Manager stopped: %v", svc)
	}
	served = scrape(t, l, host)
	if gauge(t, served, "kmsctl_backup_success", "kms") != 0 || gauge(t, served, "kmsctl_backup_exit_code", "kms") == 0 ||
		gauge(t, served, "kmsctl_backup_last_success_timestamp_seconds", "kms") != last {
		t.Errorf("after a failed backup, /metrics:\n%s", l.MustExec(host, "cat "+prom))
	}
	if out := invocationLog(t, l, host, "kmsctl-backup@kms.service"); !strings.Contains(out, "kmsctl: ") {
		t.Errorf("a failed backup says nothing in its journal:\n%s", out)
	}

	// No key in the unit's command line, its journal or the metrics.
	seen := l.MustExec(host, "systemctl show -p ExecStart kmsctl-backup@kms.service; journalctl "+since+" -u kmsctl-backup@kms.service --no-pager -o cat; cat "+prom)
	hsmText := c.hsmKey.Text()
	for what, secret := range map[string]string{"admin API key": strings.TrimSpace(string(apiKey)), "HSM key": hsmText[strings.LastIndexByte(hsmText, ':')+1:]} {
		if strings.Contains(seen, secret) {
			t.Errorf("the %s is in the unit's command line, journal or metrics", what)
		}
	}
}

// invocationLog is what the processes of unit's last run wrote to the journal.
func invocationLog(t *testing.T, l *Lab, host, unit string) string {
	t.Helper()
	id := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l.MustExec(host, "systemctl show -p InvocationID "+unit)), "InvocationID="))
	if id == "" {
		t.Fatalf("%s has no invocation ID", unit)
	}
	out := l.MustExec(host, "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="+id)
	return strings.TrimSpace(strings.ReplaceAll(out, "-- No entries --", ""))
}

// waitJob waits (up to 3 minutes) until unit has run n times to its end (as the journal after
// the cursor since says) and is inactive again, and returns its properties.
func waitJob(t *testing.T, l *Lab, host, unit, since string, n int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		props := map[string]string{}
		out, _ := l.Exec(host, "systemctl show -p ActiveState,Result,ExecMainStatus,ExecMainExitTimestampMonotonic,NRestarts "+unit+
			"; journalctl "+since+" -u "+unit+" --no-pager -o cat | grep -c 'Finished\\|Failed with result' || true")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, line := range lines {
			if k, v, ok := strings.Cut(line, "="); ok {
				props[k] = v
			}
		}
		runs := 0
		fmt.Sscan(lines[len(lines)-1], &runs)
		if runs >= n && props["ActiveState"] != "activating" && props["ExecMainExitTimestampMonotonic"] != "0" {
			return props
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not run %d time(s) in 3 minutes: %v\n%s", unit, n, props, l.MustExec(host, "systemctl list-timers --all --no-pager; journalctl -u "+unit+" --no-pager"))
		}
		time.Sleep(time.Second)
	}
}

// scrape fetches the node exporter's /metrics on host (port 9100, through an SSH tunnel) and
// parses it with the Prometheus text parser; it waits (up to a minute) for the exporter to
// answer.
func scrape(t *testing.T, l *Lab, host string) map[string]*dto.MetricFamily {
	t.Helper()
	client, err := l.Dial(host)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return client.Dial("tcp", "127.0.0.1:9100")
	}}}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := hc.Get("http://node-exporter/metrics")
		if err == nil {
			defer resp.Body.Close()
			p := expfmt.NewTextParser(model.UTF8Validation)
			mfs, err := p.TextToMetricFamilies(resp.Body)
			if err != nil {
				t.Fatalf("parse the node exporter's /metrics: %v", err)
			}
			return mfs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node exporter does not answer on %s:9100: %v", host, err)
		}
		time.Sleep(time.Second)
	}
}

// parseText parses a metrics file with the Prometheus text parser.
func parseText(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(strings.TrimRight(text, "\n") + "\n")) // the harness trims output
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return mfs
}

// gauge is the value of the gauge name with label cluster (any labels when cluster is ""); a
// metric that is missing fails the test.
func gauge(t *testing.T, mfs map[string]*dto.MetricFamily, name, cluster string) float64 {
	t.Helper()
	for _, m := range mfs[name].GetMetric() {
		ok := cluster == ""
		for _, lp := range m.GetLabel() {
			ok = ok || (lp.GetName() == "cluster" && lp.GetValue() == cluster)
		}
		if ok && m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s{cluster=%q}", name, cluster)
	return 0
}
