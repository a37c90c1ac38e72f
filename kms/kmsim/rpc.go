package kmsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"aead.dev/mtls"
)

// Inter-node RPC: POST https://HOST/v1/rpc/NAME over mTLS with the node
// certificate derived from the HSM key. Request and response bodies are JSON
// sealed with AES-256-GCM under another key derived from the HSM key (the
// path is the associated data), so a node with a different HSM key can
// neither authenticate, nor read, nor forge a message.
const (
	rpcHeartbeat = "heartbeat"
	rpcStatus    = "status"
	rpcReplicate = "replicate"
	rpcForward   = "forward"
	rpcLeave     = "leave"
)

const maxRPCBody = 64 << 20

// heartbeat is what nodes exchange every HeartbeatInterval, both ways.
type heartbeat struct {
	ClusterID string            `json:"cluster_id"`
	NodeID    uint32            `json:"node_id"`
	Epoch     uint64            `json:"epoch"`
	Nodes     map[uint32]string `json:"nodes"`
	Commit    uint64            `json:"commit"`
	Head      string            `json:"head,omitempty"`
}

// heartbeat returns the heartbeat of a node in state s.
func (s *nodeState) heartbeat() *heartbeat {
	return &heartbeat{ClusterID: s.ClusterID, NodeID: s.NodeID, Epoch: s.Epoch, Nodes: s.Nodes, Commit: s.Commit, Head: s.Head}
}

// peerStatus answers the status RPC.
type peerStatus struct {
	heartbeat
	Fresh  bool   `json:"fresh"`
	Status []byte `json:"status"` // protobuf ServerStatusResponse
}

// replicateRequest carries a write from the leader to one node: its log
// entry (with the leader's definition), or the leader's whole state (a
// joining node, or one whose log does not match).
type replicateRequest struct {
	From      uint32            `json:"from"`
	To        uint32            `json:"to"` // the receiver's node ID
	ClusterID string            `json:"cluster_id,omitempty"`
	Epoch     uint64            `json:"epoch,omitempty"` // the leader's definition, with Entry
	Nodes     map[uint32]string `json:"nodes,omitempty"`
	Entry     *entry            `json:"entry,omitempty"`
	Join      bool              `json:"join"` // the receiver is a fresh node joining the cluster
	Sync      bool              `json:"sync"` // the leader resets a follower whose log differs
	State     *nodeState        `json:"state,omitempty"`
}

// forwardRequest carries a client's write request from a follower to the leader.
type forwardRequest struct {
	ClusterID string `json:"cluster_id"` // the sender's cluster, node ID and host:
	From      uint32 `json:"from"`       // the leader runs the write only for a member
	Host      string `json:"host"`
	Identity  string `json:"identity"`
	Enclave   string `json:"enclave"`
	Body      []byte `json:"body"`
}

// forwardResponse is the leader's answer to a forwardRequest.
type forwardResponse struct {
	Status  int    `json:"status"`
	Message string `json:"message,omitempty"`
	Body    []byte `json:"body,omitempty"`
}

// leaveRequest tells a node that REMOVENODE removed it.
type leaveRequest struct {
	ClusterID string `json:"cluster_id"`
	NodeID    uint32 `json:"node_id"`
	Wipe      bool   `json:"wipe"`
}

// call sends one RPC to host and decodes the answer into resp. An error
// answer of the peer is returned as *apiError.
func (n *Node) call(ctx context.Context, host, name string, req, resp any) error {
	plain, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", name, err)
	}
	path := "/v1/rpc/" + name
	body, err := seal(n.rpcKey, plain, []byte(path))
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("create %s request to %s: %w", name, host, err)
	}
	r.Header.Set("Content-Type", "application/octet-stream")
	// Every RPC is safe to repeat; this lets the transport retry on a
	// kept-alive connection that the peer closed (e.g. after a restart).
	r.Header.Set("Idempotency-Key", name)
	res, err := n.peerClient.Do(r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, host, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxRPCBody))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", name, host, err)
	}
	if res.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return &apiError{Status: res.StatusCode, Message: msg}
	}
	plain, err = open(n.rpcKey, b, []byte(path+" response"))
	if err != nil {
		return fmt.Errorf("%s %s: response does not authenticate (different HSM key?): %w", name, host, errOpen)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(plain, resp); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", name, host, err)
	}
	return nil
}

// serveRPC authenticates a peer node and dispatches one RPC.
func (n *Node) serveRPC(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	id, err := mtls.PeerIdentity(r.TLS)
	if err != nil || id.String() != n.nodeIdentity {
		writeText(w, http.StatusForbidden, "access denied: not a node of this cluster (different HSM key?)")
		return
	}
	path := "/v1/rpc/" + name
	sealed, err := io.ReadAll(n.body(w, r, maxRPCBody))
	if err != nil {
		ae := n.bodyError(err, "request body")
		writeText(w, ae.Status, ae.Message)
		return
	}
	plain, err := open(n.rpcKey, sealed, []byte(path))
	if err != nil {
		writeText(w, http.StatusForbidden, "access denied: request does not authenticate")
		return
	}
	var resp any
	switch name {
	case rpcHeartbeat:
		var req heartbeat
		if err = json.Unmarshal(plain, &req); err == nil {
			resp = n.onHeartbeat(&req)
		}
	case rpcStatus:
		resp = n.peerStatus()
	case rpcReplicate:
		var req replicateRequest
		if err = json.Unmarshal(plain, &req); err == nil {
			err = n.onReplicate(&req)
			resp = struct{}{}
		}
	case rpcForward:
		var req forwardRequest
		if err = json.Unmarshal(plain, &req); err == nil {
			resp = n.onForward(r.Context(), &req)
		}
	case rpcLeave:
		var req leaveRequest
		if err = json.Unmarshal(plain, &req); err == nil {
			err = n.onLeave(&req)
			resp = struct{}{}
		}
	default:
		writeText(w, http.StatusNotFound, "unknown RPC "+strconv.Quote(name))
		return
	}
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			writeText(w, ae.Status, ae.Message)
		} else {
			writeText(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	out, err := json.Marshal(resp)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	body, err := seal(n.rpcKey, out, []byte(path+" response"))
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// writeText writes a plain-text error answer.
func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(status)
	io.WriteString(w, msg)
}
