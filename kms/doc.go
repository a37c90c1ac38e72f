// Package kms is a client for the MinIO AIStor Key Manager (minkms) API: mTLS
// from API keys, command frames on /v1/kms, health, version and /v1/db backup
// and restore. The protocol it speaks is described in docs/protocol.md; the
// vendor SDK (AGPL) is neither imported nor copied.
//
// Authentication: ParseAPIKey reads a "k1:" (Ed25519) or "k2:" (ECDSA) API
// key; the client presents a self-signed certificate derived from it when the
// server asks, and the server knows the client by its "h1:" identity
// (APIKey.Identity). API keys never appear in String, GoString or errors.
//
// Transport: New(Config) builds a Client for a list of endpoints. Server
// certificates are verified against Config.RootCAs (LoadCAFile) or the system
// pool; Config.InsecureSkipVerify is a lab-only switch that Client.Insecure
// reports so that recovery commands can refuse it. Config.DialContext routes
// connections elsewhere, e.g. through an SSH connection to the node.
//
// Routing: methods that take a host talk to exactly that host and never
// retry (EditCluster, AddNode, RemoveNode and Restore require one). An empty
// host load-balances over the endpoints and retries transport errors, and
// only those, on the next endpoint.
//
// Errors: a non-200 answer is an *Error (status, server message, host) that
// errors.Is matches against the sentinels (ErrKeyNotFound, ErrNoLeader, ...);
// transport failures wrap ErrUnreachable; responses that break the protocol
// (no Content-Length, wrong command id, trailing bytes) wrap ErrProtocol.
//
// The subpackages are shared with the simulator (kms/kmsim): kms/pb holds the
// protobuf messages, kms/wire the framing, command ids and error bodies.
package kms
