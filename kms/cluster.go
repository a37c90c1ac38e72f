package kms

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// Version returns GET /version of host ("" = load-balanced). The server
// answers JSON, or protobuf if its Content-Type is application/octet-stream.
func (c *Client) Version(ctx context.Context, host string) (*pb.VersionResponse, error) {
	resp, ep, err := c.get(ctx, host, wire.PathVersion, "", http.Header{"Accept": {"application/*"}})
	if err != nil {
		return nil, fmt.Errorf("get version: %w", err)
	}
	b, err := readBody(resp, ep)
	if err != nil {
		return nil, fmt.Errorf("get version: %w", err)
	}
	v := &pb.VersionResponse{}
	if resp.Header.Get("Content-Type") == wire.ContentTypeProtobuf {
		err = proto.Unmarshal(b, v)
	} else {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, v)
	}
	if err != nil {
		return nil, fmt.Errorf("get version: kms %s: %w: %w", ep, ErrProtocol, err)
	}
	return v, nil
}

// Live checks GET /v1/health/live of host ("" = load-balanced): nil means the
// process answers.
func (c *Client) Live(ctx context.Context, host string) error {
	resp, _, err := c.get(ctx, host, wire.PathLive, "", http.Header{"Accept": {"application/*"}})
	if err != nil {
		return fmt.Errorf("check liveness: %w", err)
	}
	drain(resp)
	return nil
}

// LiveCertificate checks GET /v1/health/live of host ("" = load-balanced)
// like Live and returns the server certificate the node presented (the
// leaf, verified like every connection of the client).
func (c *Client) LiveCertificate(ctx context.Context, host string) (*x509.Certificate, error) {
	resp, ep, err := c.get(ctx, host, wire.PathLive, "", http.Header{"Accept": {"application/*"}})
	if err != nil {
		return nil, fmt.Errorf("check liveness: %w", err)
	}
	drain(resp)
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return nil, fmt.Errorf("check liveness: kms %s: %w: no server certificate", ep, ErrProtocol)
	}
	return resp.TLS.PeerCertificates[0], nil
}

// Ready checks GET /v1/health/ready of host ("" = load-balanced): nil means
// the node can serve reads, or with write also writes (/v1/health/ready?write).
func (c *Client) Ready(ctx context.Context, host string, write bool) error {
	query, what := "", "read"
	if write {
		query, what = "write", "write"
	}
	resp, _, err := c.get(ctx, host, wire.PathReady, query, http.Header{"Accept": {"application/*"}})
	if err != nil {
		return fmt.Errorf("check %s readiness: %w", what, err)
	}
	drain(resp)
	return nil
}

// drain discards a small response body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // best effort: only connection reuse depends on it
	_ = resp.Body.Close()
}

// ClusterStatus returns host's view of the cluster (CLUSTER:STATUS; host ""
// = load-balanced). Node ids and LeaderID 0 are real ids; LeaderID < 0 means
// no leader.
func (c *Client) ClusterStatus(ctx context.Context, host string) (*pb.ClusterStatusResponse, error) {
	status := &pb.ClusterStatusResponse{}
	if err := c.send1(ctx, host, "", wire.ClusterStatus, &pb.ClusterStatusRequest{}, status); err != nil {
		return nil, fmt.Errorf("get cluster status: %w", err)
	}
	return status, nil
}

// HostStatus is one endpoint's answer to ClusterStatusEach.
type HostStatus struct {
	Host   string
	Status *pb.ClusterStatusResponse // nil if Err is set
	Err    error
}

// ClusterStatusEach asks every configured endpoint for its own view,
// concurrently, and returns the answers in endpoint order. Views differ
// during partitions; compare them.
func (c *Client) ClusterStatusEach(ctx context.Context) []HostStatus {
	out := make([]HostStatus, len(c.endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.endpoints {
		wg.Go(func() {
			s, err := c.ClusterStatus(ctx, ep)
			out[i] = HostStatus{Host: ep, Status: s, Err: err}
		})
	}
	wg.Wait()
	return out
}

// EditCluster removes the node removeID from host's own cluster definition
// (CLUSTER:EDIT), without write quorum. It is the forced-removal primitive
// for dead nodes: one node id per call, sent to exactly host, never retried.
func (c *Client) EditCluster(ctx context.Context, host string, removeID uint32) error {
	if host == "" {
		return fmt.Errorf("edit cluster (remove node %d): %w", removeID, ErrNoHost)
	}
	ep, err := ParseEndpoint(host)
	if err != nil {
		return fmt.Errorf("edit cluster (remove node %d): %w", removeID, err)
	}
	req := &pb.EditClusterRequest{Host: ep, RemoveIDs: []uint32{removeID}}
	if err := c.send1(ctx, ep, "", wire.ClusterEdit, req, nil); err != nil {
		return fmt.Errorf("edit cluster on %s (remove node %d): %w", ep, removeID, err)
	}
	return nil
}

// AddNode asks the member viaHost to join newHost ("host:port" as the new
// node announces itself with --host) to the cluster (CLUSTER:ADDNODE). The
// new node must be running, fresh and use the same HSM key. Never retried.
func (c *Client) AddNode(ctx context.Context, viaHost, newHost string) error {
	if viaHost == "" || newHost == "" {
		return fmt.Errorf("add node %q via %q: %w", newHost, viaHost, ErrNoHost)
	}
	nh, err := ParseEndpoint(newHost)
	if err != nil {
		return fmt.Errorf("add node: %w", err)
	}
	if err := c.send1(ctx, viaHost, "", wire.ClusterAddNode, &pb.AddClusterNodeRequest{Host: nh}, nil); err != nil {
		return fmt.Errorf("add node %s via %s: %w", nh, viaHost, err)
	}
	return nil
}

// RemoveNode asks the member viaHost to remove host from the cluster
// (CLUSTER:REMOVENODE, needs write quorum). With deleteState the removed node
// wipes its cluster information and restarts as a new single-node cluster.
// Never retried.
func (c *Client) RemoveNode(ctx context.Context, viaHost, host string, deleteState bool) error {
	if viaHost == "" || host == "" {
		return fmt.Errorf("remove node %q via %q: %w", host, viaHost, ErrNoHost)
	}
	h, err := ParseEndpoint(host)
	if err != nil {
		return fmt.Errorf("remove node: %w", err)
	}
	req := &pb.RemoveClusterNodeRequest{Host: h, DeleteClusterOnHost: deleteState}
	if err := c.send1(ctx, viaHost, "", wire.ClusterRemoveNode, req, nil); err != nil {
		return fmt.Errorf("remove node %s via %s: %w", h, viaHost, err)
	}
	return nil
}
