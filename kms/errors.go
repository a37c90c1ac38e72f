package kms

import (
	"errors"
	"fmt"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// Error is an error response of a Key Manager: the HTTP status, the server's
// message and the host that answered. errors.Is matches it against the
// sentinel errors below by status and message.
type Error struct {
	Status  int    // HTTP status code
	Message string // the server's message, decoded by Content-Type
	Host    string // host:port that answered
}

// Error returns "kms HOST: MESSAGE (HTTP STATUS)".
func (e *Error) Error() string {
	return fmt.Sprintf("kms %s: %s (HTTP %d)", e.Host, wire.Error{Status: e.Status, Message: e.Message}.Error(), e.Status)
}

// Is reports whether e matches target: a sentinel (wire.Error) with the same
// status and message (the message may carry ": detail" after the sentinel's),
// or an *Error with the same status and message.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case wire.Error:
		return wire.Error{Status: e.Status, Message: e.Message}.Matches(t)
	case *Error:
		return t != nil && e.Status == t.Status && e.Message == t.Message
	}
	return false
}

// Sentinel errors, matched with errors.Is. The first group is the vendor's
// canonical status/message pairs; the second is kmsctl's own choice for
// cluster failures (the vendor's are unknown), emitted by the simulator. See
// package wire for the exact values.
var (
	ErrAccessDenied     = wire.ErrAccessDenied     // 403 access denied: insufficient permissions
	ErrEnclaveExists    = wire.ErrEnclaveExists    // 409 enclave already exists
	ErrEnclaveNotFound  = wire.ErrEnclaveNotFound  // 404 enclave does not exist
	ErrKeyExists        = wire.ErrKeyExists        // 409 key already exists
	ErrKeyNotFound      = wire.ErrKeyNotFound      // 404 key does not exist
	ErrPolicyNotFound   = wire.ErrPolicyNotFound   // 404 policy does not exist
	ErrIdentityNotFound = wire.ErrIdentityNotFound // 404 identity does not exist
	ErrDecrypt          = wire.ErrDecrypt          // 400 invalid ciphertext

	ErrNoLeader          = wire.ErrNoLeader          // 503 cluster has no leader
	ErrNoWriteQuorum     = wire.ErrNoWriteQuorum     // 503 write quorum not available
	ErrNotReady          = wire.ErrNotReady          // 503 node is not ready
	ErrNodeNotFresh      = wire.ErrNodeNotFresh      // 409 node is not fresh
	ErrNodeAlreadyMember = wire.ErrNodeAlreadyMember // 409 node is already a cluster member
	ErrNodeNotFound      = wire.ErrNodeNotFound      // 404 node does not exist
	ErrNodeUnreachable   = wire.ErrNodeUnreachable   // 502 node is unreachable
	ErrHSMMismatch       = wire.ErrHSMMismatch       // 409 different HSM key
	ErrLastNode          = wire.ErrLastNode          // 409 cannot remove the last cluster node
)

// Client-side errors.
var (
	// ErrUnreachable: a request got no HTTP response (dial, TLS or I/O
	// failure). The wrapped error says which.
	ErrUnreachable = errors.New("unreachable")
	// ErrProtocol: a response broke the wire protocol (no Content-Length,
	// wrong command id, truncated frames, trailing bytes, bad protobuf).
	ErrProtocol = errors.New("protocol violation")
	// ErrNoHost: an operation that must go to one named host got none.
	ErrNoHost = errors.New("no host named")
)
