// Package labkit is the lab side of e2e/lab/install-minkms.yml, shared by
// `make demo` (through cmd e2e/lab/kmsdemo) and e2e/minkms_test.go: it writes
// the lab's certificates and reaches the installed Key Managers with the kms
// client through SSH tunnels. Joining them and reading each node's view of
// the cluster is package kms's (kms.Join, kms.Views, kms.WaitConverged).
package labkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/kms/kmsim"
	"github.com/kmsctl/kmsctl/remote"
)

// Port is the Key Manager port of the lab nodes (kms_port's default).
const Port = 7373

// WriteCerts writes into dir a new CA (ca.crt) and, for each node, a server
// certificate NAME.crt with its key NAME.key (mode 0600), valid for the
// node's name, its extra names or IPs, 127.0.0.1 and localhost. The CA's key
// is never written: the lab's certificates are issued once.
func WriteCerts(dir string, nodes map[string][]string) error {
	ca, err := kmsim.NewCA()
	if err != nil {
		return fmt.Errorf("write lab certificates: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write lab certificates: %w", err)
	}
	for name, extra := range nodes {
		hosts := append([]string{name, "127.0.0.1", "localhost"}, extra...)
		certPEM, keyPEM, err := ca.Issue(hosts...)
		if err != nil {
			return fmt.Errorf("issue certificate for %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
			return fmt.Errorf("write certificate of %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
			return fmt.Errorf("write key of %s: %w", name, err)
		}
	}
	return nil
}

// Tunnels holds one SSH connection per lab node.
type Tunnels struct {
	conns map[string]*remote.Client
}

// DialTunnels connects to every node by its ssh_config alias (sshConfig: the
// lab's ssh_config, which pins the host keys), without an ssh-agent.
func DialTunnels(ctx context.Context, sshConfig string, nodes []string) (*Tunnels, error) {
	t := &Tunnels{conns: map[string]*remote.Client{}}
	for _, n := range nodes {
		c, err := remote.Dial(ctx, remote.Options{Alias: n, SSHConfigFile: sshConfig, AgentSocket: "none"})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("connect to %s: %w", n, err)
		}
		t.conns[n] = c
	}
	return t, nil
}

// DialContext opens a TCP connection to "NODE:PORT" as NODE's own
// 127.0.0.1:PORT, through NODE's SSH connection; it is a kms.Config.DialContext.
func (t *Tunnels) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel to %s: %w", addr, err)
	}
	c, ok := t.conns[host]
	if !ok {
		return nil, fmt.Errorf("tunnel to %s: no SSH connection to %s", addr, host)
	}
	return c.DialTCP(ctx, net.JoinHostPort("127.0.0.1", port))
}

// Close closes every SSH connection.
func (t *Tunnels) Close() {
	for _, c := range t.conns {
		c.Close()
	}
}

// NewClient returns a kms client for the nodes ("NODE:7373") that reaches
// them through t and verifies their certificates against caFile.
func NewClient(t *Tunnels, caFile string, key kms.APIKey, nodes []string) (*kms.Client, error) {
	cas, err := kms.LoadCAFile(caFile)
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, n := range nodes {
		eps = append(eps, Endpoint(n))
	}
	return kms.New(kms.Config{Endpoints: eps, APIKey: key, RootCAs: cas, DialContext: t.DialContext})
}

// Endpoint is node's Key Manager endpoint, as it announces itself (--host).
func Endpoint(node string) string { return net.JoinHostPort(node, strconv.Itoa(Port)) }

// Endpoints are the nodes' endpoints (Endpoint of each), in order.
func Endpoints(nodes []string) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = Endpoint(n)
	}
	return out
}
