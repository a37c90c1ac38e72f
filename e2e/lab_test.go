//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmsctl/kmsctl/e2e/lab/labkit"
	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms"
)

// TestLabScript runs what `make lab` runs (e2e/lab.sh kms), with two nodes to stay cheap, under
// its own LAB_NAME and in a temp LAB_DIR, so a person's lab is left alone. The lab directory
// is 0700 with every file 0600 (the simulator binary 0700); the inventory names each node's endpoint as the cluster knows
// it (kmsN:7373), the SSH way to the API and the lab's CA; with only the lab's own files
// (ssh_config, ca.crt, api.key) every node lists both members and one leader through the API,
// also through an OpenSSH `ssh -L` forward to 127.0.0.1, and kmsctl pings every node. Then
// `e2e/lab.sh down` leaves no container, network or directory behind.
func TestLabScript(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	name := "kmsctl-e2e-lab-" + randHex(4)
	work := t.TempDir()
	dir := filepath.Join(work, "lab")
	lab := func(args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), imageTimeout+10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "e2e", "lab.sh"), args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "LAB_DIR="+dir, "LAB_NAME="+name, "KEEP=0")
		out, err := cmd.CombinedOutput()
		t.Logf("e2e/lab.sh %s:\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	// However the test ends, `e2e/lab.sh down` must leave nothing behind.
	t.Cleanup(func() {
		if _, err := lab("down"); err != nil {
			t.Errorf("e2e/lab.sh down: %v", err)
		}
		for _, list := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
			out, err := exec.Command("docker", append(list, "--filter", "label=kmsctl-lab="+name)...).Output()
			if err != nil {
				t.Errorf("docker %s: %v", strings.Join(list, " "), err)
			}
			if left := strings.Fields(string(out)); len(left) > 0 {
				t.Errorf("after e2e/lab.sh down, docker %s still lists %v", strings.Join(list, " "), left)
			}
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after e2e/lab.sh down, %s remains (%v)", dir, err)
		}
	})

	start := time.Now()
	if out, err := lab("kms", "2"); err != nil {
		t.Fatalf("e2e/lab.sh kms 2: %v\n%s", err, tail(out, 4000))
	}
	t.Logf("e2e/lab.sh kms 2 took %s", time.Since(start).Round(time.Second))

	// The lab directory: 0700, every file in it 0600 (minkms 0700), the promised ones present.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("lab directory %s: want mode 0700, got %v (%v)", dir, fi.Mode(), err)
	}
	var files []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, d.Name())
		want := os.FileMode(0o600)
		if d.Name() == "minkms" {
			want = 0o700 // kms_binary_src: recover node runs it here for its version
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != want {
			t.Errorf("%s: want a regular file of mode %v, got %v", p, want, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"inventory.yml", "ssh_config", "known_hosts", "ca.crt", "api.key", "hsm.key"} {
		if !slices.Contains(files, f) {
			t.Errorf("the lab directory lacks %s (has %v)", f, files)
		}
	}

	// The inventory: each node's endpoint as the cluster knows it, the API over SSH, the lab CA.
	inv, err := inventory.Load(filepath.Join(dir, "inventory.yml"))
	if err != nil {
		t.Fatalf("the lab's inventory: %v", err)
	}
	hosts := inv.Hosts()
	if !slices.Equal(hosts, []string{"kms1", "kms2"}) {
		t.Fatalf("inventory hosts %v, want [kms1 kms2]", hosts)
	}
	var endpoints []string
	for _, h := range hosts {
		n, err := inv.Node(h, nil)
		if err != nil {
			t.Fatalf("node %s: %v", h, err)
		}
		if n.APIKeyFile != filepath.Join(dir, "api.key") || n.HSMKeyFile != filepath.Join(dir, "hsm.key") {
			t.Errorf("%s: kms_api_key_file %q, kms_hsm_key_file %q; want the lab's api.key and hsm.key", h, n.APIKeyFile, n.HSMKeyFile)
		}
		if n.Endpoint != h+":7373" || n.API != inventory.APISSH || n.CAFile != filepath.Join(dir, "ca.crt") {
			t.Errorf("%s: kms_endpoint %q, kms_api %q, kms_ca_file %q; want %s:7373, ssh, %s/ca.crt",
				h, n.Endpoint, n.API, n.CAFile, h, dir)
		}
		endpoints = append(endpoints, n.Endpoint)
	}
	if t.Failed() {
		return
	}

	// The API with the lab's own files, through SSH tunnels as kmsctl reaches it.
	key, err := kms.ParseAPIKey(strings.TrimSpace(string(mustRead(t, filepath.Join(dir, "api.key")))))
	if err != nil {
		t.Fatalf("lab/api.key: %v", err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tun, err := labkit.DialTunnels(ctx, filepath.Join(dir, "ssh_config"), hosts)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	c, err := labkit.NewClient(tun, caFile, key, hosts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ep := range endpoints {
		if err := oneCluster(ctx, c, ep, endpoints); err != nil {
			t.Errorf("through an SSH tunnel: %v", err)
		}
	}

	// A person's way: `ssh -L` to kms2's API, whose certificate is valid for 127.0.0.1 and localhost.
	port := forward(t, filepath.Join(dir, "ssh_config"), "kms2")
	cas, err := kms.LoadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, local := range []string{"127.0.0.1", "localhost"} {
		ep := net.JoinHostPort(local, strconv.Itoa(port))
		direct, err := kms.New(kms.Config{Endpoints: []string{ep}, APIKey: key, RootCAs: cas})
		if err != nil {
			t.Fatal(err)
		}
		if err := oneCluster(ctx, direct, ep, endpoints); err != nil {
			t.Errorf("through ssh -L: %v", err)
		}
		direct.Close()
	}

	// The first command of the hint.
	if r := kmsctl(t, &Lab{t: t, Root: root, Dir: work}, "-i", filepath.Join(dir, "inventory.yml"), "ping"); r.code != exitOK {
		t.Errorf("kmsctl ping with the lab's inventory: exit %d, want %d", r.code, exitOK)
	}

}

// oneCluster asks ep for its cluster status and checks that it lists exactly members, all up,
// exactly one of them with role Leader, and every member naming that leader.
func oneCluster(ctx context.Context, c *kms.Client, ep string, members []string) error {
	st, err := c.ClusterStatus(ctx, ep)
	if err != nil {
		return fmt.Errorf("%s: %w", ep, err)
	}
	var hosts []string
	named := map[int64]bool{} // the leader IDs the members name
	var leaders []int64       // the IDs of the members with role Leader
	for id, s := range st.GetNodesUp() {
		hosts = append(hosts, s.GetHost())
		named[s.GetLeaderID()] = true
		if strings.EqualFold(s.GetRole(), "leader") {
			leaders = append(leaders, int64(id))
		}
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, members) || len(st.GetNodesDown()) != 0 {
		return fmt.Errorf("%s lists %v up and %v down, want %v up", ep, hosts, st.GetNodesDown(), members)
	}
	if len(leaders) != 1 || len(named) != 1 || !named[leaders[0]] {
		return fmt.Errorf("%s: members with role Leader %v, leaders named %v; want one leader, named by all", ep, leaders, named)
	}
	return nil
}

// forward starts OpenSSH's `ssh -F sshConfig -N -L PORT:127.0.0.1:7373 host`, stopped when the
// test ends, and returns PORT once it accepts connections.
func forward(t *testing.T, sshConfig, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("ssh", "-F", sshConfig, "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:7373", port), host)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ssh -L: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
		if err == nil {
			conn.Close()
			return port
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("ssh -L to %s exited: %v\n%s", host, err, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh -L to %s: port %d not open after 30s\n%s", host, port, stderr.String())
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
