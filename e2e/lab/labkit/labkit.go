// Package labkit is the lab side of e2e/lab/install-minkms.yml, shared by
// `make demo` (through cmd e2e/lab/kmsdemo) and e2e/minkms_test.go: it writes
// the lab's certificates and reaches the installed Key Managers with the kms
// client through SSH tunnels, to join them into one cluster and read each
// node's view of it.
package labkit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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

// NodeView is one node's own entry of its cluster status.
type NodeView struct {
	Endpoint string
	ID       uint32
	Role     string
	LeaderID int64
	Commit   uint64
	Up       int   // nodes this node sees up (itself included)
	Down     int   // nodes this node sees down
	Err      error // the node did not answer
}

func (v NodeView) String() string {
	if v.Err != nil {
		return fmt.Sprintf("%-12s error: %v", v.Endpoint, v.Err)
	}
	return fmt.Sprintf("%-12s id=%d role=%-9s leader=%d commit=%d up=%d down=%d",
		v.Endpoint, v.ID, v.Role, v.LeaderID, v.Commit, v.Up, v.Down)
}

// Views asks each node (through c) for its cluster status and returns each
// node's entry about itself, in the order of nodes.
func Views(ctx context.Context, c *kms.Client, nodes []string) []NodeView {
	out := make([]NodeView, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			ep := Endpoint(n)
			v := NodeView{Endpoint: ep}
			st, err := c.ClusterStatus(ctx, ep)
			if err != nil {
				v.Err = err
			} else {
				v.Up, v.Down = len(st.GetNodesUp()), len(st.GetNodesDown())
				v.Err = fmt.Errorf("no entry for itself among %d up nodes", v.Up)
				for _, s := range st.GetNodesUp() {
					if s.GetHost() == ep {
						v.ID, v.Role, v.LeaderID, v.Commit, v.Err = s.GetID(), s.GetRole(), s.GetLeaderID(), s.GetCommit(), nil
					}
				}
			}
			out[i] = v
		})
	}
	wg.Wait()
	return out
}

// Converged reports, with the reason if not, whether every view answered,
// sees n nodes up and none down, names the same leader (one of the views'
// IDs, with role Leader) and has the same commit.
func Converged(views []NodeView, n int) error {
	var errs []error
	ids := map[uint32]string{}
	leaders := map[int64]bool{}
	commits := map[uint64]bool{}
	for _, v := range views {
		if v.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Endpoint, v.Err))
			continue
		}
		if v.Up != n || v.Down != 0 {
			errs = append(errs, fmt.Errorf("%s sees %d up and %d down, want %d up", v.Endpoint, v.Up, v.Down, n))
		}
		ids[v.ID] = v.Role
		leaders[v.LeaderID] = true
		commits[v.Commit] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(ids) != len(views) {
		errs = append(errs, fmt.Errorf("node IDs not distinct: %v", ids))
	}
	if len(leaders) != 1 {
		errs = append(errs, fmt.Errorf("views disagree on the leader: %v", slices.Collect(maps.Keys(leaders))))
	} else {
		for l := range leaders {
			if l < 0 || !strings.EqualFold(ids[uint32(l)], "leader") {
				errs = append(errs, fmt.Errorf("leader %d is not a node reporting role Leader (roles %v)", l, ids))
			}
		}
	}
	if len(commits) != 1 {
		errs = append(errs, fmt.Errorf("commit indexes differ: %v", slices.Collect(maps.Keys(commits))))
	}
	return errors.Join(errs...)
}

// WaitConverged polls the views of nodes until Converged holds or ctx ends; it returns
// the last views and, if ctx ended first, why they had not converged.
func WaitConverged(ctx context.Context, c *kms.Client, nodes []string) ([]NodeView, error) {
	n := len(nodes)
	for {
		views := Views(ctx, c, nodes)
		err := Converged(views, n)
		if err == nil {
			return views, nil
		}
		select {
		case <-ctx.Done():
			return views, fmt.Errorf("wait for %d converged nodes: %w (last: %w)", n, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Join adds each of nodes, one at a time, to the cluster of via
// (CLUSTER:ADDNODE), waiting after each until the grown cluster converged.
func Join(ctx context.Context, c *kms.Client, via string, nodes []string) error {
	members := []string{via}
	for _, n := range nodes {
		if err := c.AddNode(ctx, Endpoint(via), Endpoint(n)); err != nil {
			return err
		}
		members = append(members, n)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := WaitConverged(wctx, c, members)
		cancel()
		if err != nil {
			return fmt.Errorf("after adding %s: %w", n, err)
		}
	}
	return nil
}
