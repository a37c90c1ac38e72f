//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo`'s script (e2e/demo.sh) whole, under its own LAB_NAME and in a temp
// LAB_DIR so that a person's lab is left alone, because the demo is the README's first command
// and must not rot. The story must hold at each step: the cluster comes up through provision
// (the second run changing nothing) and scale add; after recover node, and again after recover
// cluster onto replaced containers, every node lists every key and decrypts the ciphertexts made
// before any failure (kmsdemo check asks each node on its own through the API); the changed host
// keys are refused until named; the drill passes and writes its metrics; the recap times every
// step; nothing of the lab is left behind.
func TestDemo(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	name := "kmsctl-e2e-demo-" + randHex(4)
	dir := filepath.Join(t.TempDir(), "lab")
	ctx, cancel := context.WithTimeout(context.Background(), imageTimeout+20*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "e2e", "demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "LAB_DIR="+dir, "LAB_NAME="+name, "KEEP=0")
	out, err := cmd.CombinedOutput()
	t.Logf("e2e/demo.sh took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("e2e/demo.sh: %v\n%s", err, tail(string(out), 20000))
	}
	s := string(out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^PROVISIONED kms1, kms2 and kms3`),
		regexp.MustCompile(`(?m)^kms3 : ok=\d+ changed=0 `), // the second provision
		regexp.MustCompile(`(?m)^ADDED kms2 `),
		regexp.MustCompile(`(?m)^ADDED kms3 `),
		regexp.MustCompile(`(?m)^created enclave demo, 20 keys`),
	} {
		if !want.MatchString(s) {
			t.Errorf("the demo's output does not match %q", want)
		}
	}
	// kmsdemo check ran twice (after recover node, after recover cluster): each time every node
	// listed all 40 keys and decrypted both old ciphertexts.
	for _, n := range []string{"kms1", "kms2", "kms3"} {
		line := regexp.MustCompile(`(?m)^  ` + n + `: all 40 keys listed, 2 old ciphertexts decrypt to their plaintexts$`)
		if got := len(line.FindAllString(s, -1)); got != 2 {
			t.Errorf("%s: the demo's API check passed %d times, want 2 (after recover node and after recover cluster)", n, got)
		}
	}
	if strings.Contains(s, "FAILED") {
		t.Errorf("the demo's output reports a failure:\n%s", tail(s, 8000))
	}
	if !strings.Contains(s, "--expect-host-key") || !strings.Contains(s, "refused, as it should") {
		t.Errorf("the demo does not show the replaced hosts' new keys refused until named")
	}
	for _, step := range []string{"provision", "scale add kms2", "recover node kms2", "backup", "recover cluster", "drill"} {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(step) + ` +\d+\.\d s$`).MatchString(s) {
			t.Errorf("the recap has no time for %s", step)
		}
	}
	if !regexp.MustCompile(`(?m)^kmsctl_drill_\S+`).MatchString(s) {
		t.Errorf("the demo printed no drill metrics")
	}
	if t.Failed() {
		t.Logf("the demo's output:\n%s", tail(s, 20000))
	}
	for _, list := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
		left, err := exec.Command("docker", append(list, "--filter", "label=kmsctl-lab="+name)...).Output()
		if err != nil {
			t.Errorf("docker %s: %v", strings.Join(list, " "), err)
		}
		if ids := strings.Fields(string(left)); len(ids) > 0 {
			t.Errorf("after the demo, docker %s still lists %v", strings.Join(list, " "), ids)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after the demo, %s remains (%v)", dir, err)
	}
}
