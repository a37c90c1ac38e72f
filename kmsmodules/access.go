package kmsmodules

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kmsctl/kmsctl/inventory"
	"github.com/kmsctl/kmsctl/kms"
	"github.com/kmsctl/kmsctl/tasks"
)

// askTimeout bounds one question to one node (a status, a health check), so
// that a node that hangs costs this once.
const askTimeout = 10 * time.Second

// access is the task host's way to its own Key Manager API and to its peers.
//
// The node's own endpoint (kms_endpoint, as the cluster knows it) is reached
// with kms_api ssh through a tunnel over the host's SSH connection to its
// 127.0.0.1:kms_port, with kms_api direct at kms_api_address (default
// kms_endpoint). A peer's endpoint, as this node's cluster definition names
// it, is reached the way this node reaches it: with ssh through the host's
// SSH connection (from the node, where the cluster's names resolve), with
// direct from this machine. TLS runs end to end in every case and verifies
// the server certificate for the endpoint's host name against kms_ca_file
// or the system pool; no module offers to skip that.
type access struct {
	host    string // inventory host name
	self    string // the node's own endpoint, normalized
	envFile string // the node's env file (kms_env_file)
	client  *kms.Client
}

// open builds the task host's access from its resolved inventory entry
// (env.Host.Target) and the admin API key.
func (m *mods) open(ctx context.Context, env *tasks.Env) (*access, error) {
	ih, ok := env.Host.Target.(inventory.Host)
	if !ok {
		return nil, fmt.Errorf("host %s is not an inventory host: the Key Manager modules need its kms_* variables", env.Host.Name)
	}
	n := ih.KMS
	self, err := kms.ParseEndpoint(n.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("host %s: kms_endpoint: %w", ih.Name, err)
	}
	key, err := m.apiKey(ctx, env, n)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", ih.Name, err)
	}
	cfg := kms.Config{Endpoints: []string{self}, APIKey: key}
	if n.CAFile != "" {
		if cfg.RootCAs, err = kms.LoadCAFile(n.CAFile); err != nil {
			return nil, fmt.Errorf("host %s: kms_ca_file: %w", ih.Name, err)
		}
	}
	var d net.Dialer
	switch n.API {
	case inventory.APISSH:
		if env.Conn == nil {
			return nil, fmt.Errorf("host %s: kms_api ssh needs the host's SSH connection", ih.Name)
		}
		local := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port))
		cfg.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			if addr == self {
				addr = local
			}
			c, err := env.Conn.DialTCP(ctx, addr)
			if err != nil {
				return nil, fmt.Errorf("tunnel through %s's SSH connection to %s: %w", ih.Name, addr, err)
			}
			return c, nil
		}
	default:
		direct := self
		if n.APIAddress != "" {
			direct = n.APIAddress
		}
		cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == self {
				addr = direct
			}
			return d.DialContext(ctx, network, addr)
		}
	}
	c, err := kms.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", ih.Name, err)
	}
	return &access{host: ih.Name, self: self, envFile: n.EnvFile, client: c}, nil
}

// close releases the client's connections.
func (a *access) close() { a.client.Close() }

// view asks the node at endpoint for its own view, within askTimeout.
func (a *access) view(ctx context.Context, endpoint string) kms.NodeView {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	return kms.View(ctx, a.client, endpoint)
}

// views asks each endpoint for its own view, in parallel, each within
// askTimeout.
func (a *access) views(ctx context.Context, endpoints []string) []kms.NodeView {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	return kms.Views(ctx, a.client, endpoints)
}

// selfView is the task host's node's own view; an error when it does not
// answer.
func (a *access) selfView(ctx context.Context) (kms.NodeView, error) {
	v := a.view(ctx, a.self)
	if v.Err != nil {
		return v, fmt.Errorf("cluster status of %s (%s): %w", a.host, a.self, v.Err)
	}
	return v, nil
}
