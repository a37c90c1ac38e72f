//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms"
)

// TestStatusMinkmsCluster runs `kmsctl status` against one lab of three containers running
// the Key Manager simulator as minkms.service (installed by e2e/lab/install-minkms.yml, joined
// into one cluster), shared by every case and put back in shape between them: healthy (exit
// 0); one node's env file holding another HSM key; one container killed (`docker kill`); one
// node removed (kms_remove_node) while its service was stopped and started again with its
// old data. Each degraded case exits 7 with a reason that names the right node. The wall time
// and peak memory of each run are logged (figures, not asserted).
func TestStatusMinkmsCluster(t *testing.T) {
	c := sharedCluster(t)

	// Healthy, cold: the first kmsctl run against the lab.
	r := c.status(t, "first (cold)")
	if r.code != exitOK || !strings.Contains(r.stdout, "HEALTHY: 3 nodes, leader kms") {
		t.Fatalf("healthy cluster: want exit 0\n%s", r)
	}
	d, _ := c.statusJSON(t)
	if d.Verdict != "healthy" || len(d.Nodes) != 3 || d.HSMFingerprint != c.hsmKey.Fingerprint() {
		t.Fatalf("healthy cluster, JSON: %+v", d)
	}
	ids := map[string]int{}
	for _, n := range d.Nodes {
		if !n.SSH || n.ServiceState != "active" || !n.ReadyWrite || n.View == nil || len(n.View.Members) != 3 {
			t.Fatalf("healthy cluster: node %+v", n)
		}
		ids[n.Host] = n.View.ID
	}
	c.status(t, "warm")

	t.Run("another HSM key on kms2", func(t *testing.T) {
		var s [32]byte
		if _, err := rand.Read(s[:]); err != nil {
			t.Fatal(err)
		}
		other := hsm.New(s)
		orig := c.l.MustExec("kms2", "cat /etc/default/minkms")
		c.l.MustExec("kms2", fmt.Sprintf("sed -i 's|^MINIO_KMS_HSM_KEY=.*|MINIO_KMS_HSM_KEY=%s|' /etc/default/minkms", other.Text()))
		defer c.l.CopyIn("kms2", "/etc/default/minkms", 0o600, []byte(orig))
		d := c.waitReason(t, "kms2 holds another HSM key", "hsm_key")
		want := fmt.Sprintf("HSM-key fingerprints differ: kms1 and kms3 have %s, kms2 has %s", c.hsmKey.Fingerprint(), other.Fingerprint())
		if d.Reasons[0].Text != want || strings.Join(d.Reasons[0].Nodes, ",") != "kms2" {
			t.Errorf("reasons %+v, want first %q naming kms2", d.Reasons, want)
		}
	})
	c.healthy(t)

	t.Run("kms3 killed", func(t *testing.T) {
		c.l.Kill("kms3")
		d := c.waitReason(t, "kms3 killed", "node_down")
		want := fmt.Sprintf("node %d (kms3:7373) is down as seen by kms1 and kms2; kms3 does not answer SSH either", ids["kms3"])
		if !strings.HasPrefix(d.Reasons[0].Text, want) || strings.Join(d.Reasons[0].Nodes, ",") != "kms3" {
			t.Errorf("reasons %+v, want first %q naming kms3", d.Reasons, want)
		}
		c.l.Start("kms3")
	})
	c.healthy(t)

	t.Run("kms3 removed while down, restarted with its old data", func(t *testing.T) {
		c.l.MustExec("kms3", "systemctl stop minkms")
		c.waitReason(t, "kms3 stopped", "node_down")
		pb := filepath.Join(c.l.Dir, "remove.yml")
		writeTestFile(t, pb, fmt.Sprintf("- hosts: kms1\n  tasks:\n    - kms_remove_node: {id: %d}\n    - kms_wait: {timeout: 1m}\n", ids["kms3"]))
		if r := kmsctl(t, c.l, "-i", c.inventory, "play", pb); r.code != exitOK {
			t.Fatalf("remove kms3's node ID: want exit 0\n%s", r)
		}
		c.l.MustExec("kms3", "systemctl start minkms")
		d := c.waitReason(t, "kms3 removed and restarted", "not_member")
		want := fmt.Sprintf("kms3 (node %d) is not a member in the view of kms1 and kms2 but thinks it is", ids["kms3"])
		if !strings.HasPrefix(d.Reasons[0].Text, want) || strings.Join(d.Reasons[0].Nodes, ",") != "kms3" {
			t.Errorf("reasons %+v, want first %q naming kms3", d.Reasons, want)
		}
	})
}

// minkmsCluster is a lab of three minkms.service nodes joined into one cluster (the shared
// lab: sharedCluster), an inventory for kmsctl with the lab's CA and the admin API key in a
// 0600 file, and a Key Manager client of the three through SSH tunnels.
type minkmsCluster struct {
	l         *Lab
	inventory string
	hsmKey    hsm.Key
	client    *kms.Client
}

// status runs `kmsctl status` and logs its wall time and peak memory (max RSS) as what.
func (c *minkmsCluster) status(t *testing.T, what string, args ...string) result {
	t.Helper()
	home := filepath.Join(c.l.Dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	// Through /usr/bin/time: a child forked from this test process reports this process's
	// RSS as its own peak when it is the larger.
	argv := append([]string{"-f", "kmsctl-maxrss=%M", kmsctlBin(t, c.l), "-i", c.inventory, "status"}, args...)
	cmd := exec.CommandContext(ctx, "/usr/bin/time", argv...)
	cmd.Dir = c.l.Dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"), "NO_COLOR=1"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	r := result{args: argv[3:], stdout: stdout.String(), stderr: stderr.String()}
	var rss int
	if i := strings.LastIndex(r.stderr, "kmsctl-maxrss="); i >= 0 {
		fmt.Sscanf(r.stderr[i:], "kmsctl-maxrss=%d", &rss)
		r.stderr = r.stderr[:i]
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kmsctl status: %v\n%s", err, r)
	}
	t.Logf("kmsctl status (%s): exit %d, wall %s, peak RSS %.1f MiB\n%s%s", what, r.code, wall.Round(time.Millisecond), float64(rss)/1024, r.stdout, r.stderr)
	return r
}

// statusDoc is the status event of `kmsctl status --output json`.
type statusDoc struct {
	Event          string `json:"event"`
	Verdict        string `json:"verdict"`
	HSMFingerprint string `json:"hsm_fingerprint"`
	Reasons        []struct {
		Kind  string   `json:"kind"`
		Nodes []string `json:"nodes"`
		Text  string   `json:"text"`
	} `json:"reasons"`
	Nodes []struct {
		Host         string `json:"host"`
		SSH          bool   `json:"ssh"`
		ServiceState string `json:"service_state"`
		ReadyWrite   bool   `json:"ready_write"`
		View         *struct {
			ID      int   `json:"id"`
			Members []any `json:"members"`
		} `json:"view"`
	} `json:"nodes"`
}

// statusJSON runs `kmsctl status --output json` and returns its status event.
func (c *minkmsCluster) statusJSON(t *testing.T) (statusDoc, int) {
	t.Helper()
	r := c.status(t, "json", "--output", "json")
	for _, line := range strings.Split(r.stdout, "\n") {
		var d statusDoc
		if json.Unmarshal([]byte(line), &d) == nil && d.Event == "status" {
			return d, r.code
		}
	}
	t.Fatalf("no status event in the output\n%s", r)
	return statusDoc{}, 0
}

// degraded runs status and wants exit 7 and at least one reason.
func (c *minkmsCluster) degraded(t *testing.T, what string) statusDoc {
	t.Helper()
	d, code := c.statusJSON(t)
	if code != 7 || d.Verdict != "degraded" || len(d.Reasons) == 0 {
		t.Fatalf("%s: want exit 7 and a degraded verdict, got exit %d: %+v", what, code, d)
	}
	return d
}

// waitReason runs status until it finds the cluster degraded with a first reason of kind
// (the members notice a node down after a few heartbeats), for at most a minute.
func (c *minkmsCluster) waitReason(t *testing.T, what, kind string) statusDoc {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		d := c.degraded(t, what)
		if d.Reasons[0].Kind == kind {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after a minute the first reason is still %+v, want one of kind %s", what, d.Reasons[0], kind)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// healthy waits until status finds the cluster healthy again (a restarted node rejoins).
func (c *minkmsCluster) healthy(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		d, code := c.statusJSON(t)
		if code == exitOK && d.Verdict == "healthy" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not healthy again after 90s: exit %d, %+v", code, d.Reasons)
		}
		time.Sleep(time.Second)
	}
}
