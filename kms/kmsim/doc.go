// Package kmsim is a Key Manager (minkms) simulator that speaks the real
// wire protocol (kms/wire, kms/pb) with the documented cluster semantics.
// kmsctl's tests and labs run against it; cmd/kmsim is its command, installed
// as /usr/local/bin/minkms on test hosts. Where docs/protocol.md §12 marks a
// behaviour unknown, the choices below are ours.
//
// # API
//
// Start(ctx, Config) runs one node (TLS listener, heartbeats) until Close or
// ctx ends; Close is a process death (no goodbye to the cluster). NewCA,
// CA.Issue/ServerCertificate, NewAPIKey, APIKeyIdentity, ClientCertificate and
// RootAPIKey help tests and labs build certificates and API keys.
// LoadConfig/FileConfig.Apply read the vendor's YAML v1 config (strict).
//
// # Authentication and privileges
//
// TLS requests (does not verify) a client certificate; the identity is "h1:" +
// base64url(SHA-256(leaf SubjectPublicKeyInfo)). /version and /v1/health/*
// are open. Everything else needs the admin identity (admin.identity, or, if
// unset, the root API key derived from the HSM key and printed in the banner,
// so a journal that keeps the banner holds it, as with the real server) or an
// identity created with IDENTITY:CREATE: SysAdmin (everything), Admin (its
// enclave), User (its enclave, as its policy allows: Allow/Deny map command
// names to path.Match patterns of key/policy/identity names; Deny wins).
// Otherwise 403 "access denied: insufficient permissions".
//
// # Enclaves
//
// Every fresh node has an empty enclave "default"; enclave-scoped commands
// sent to /v1/kms without an enclave use it.
//
// # Objects
//
// Creating a policy or an identity that exists replaces it, as on the real
// server (an identity in another enclave: 409; the admin identity: 409).
// Creating a key that exists is 409 "key already exists". Key versions are
// numbered 1, 2, ... and a number is never reused after its version is
// deleted (deleting the last version deletes the key; a key created again
// under that name starts at 1). KEY:DECRYPT needs the version the ciphertext
// was made with: version 0 is 400 "malformed request".
//
// # Cluster
//
//   - Node IDs: a fresh node is node 0 of its own one-node cluster (random
//     cluster ID). CLUSTER:ADDNODE assigns the joining node max(IDs)+1.
//   - Leader: every node heartbeats every other node of its definition every
//     HeartbeatInterval (both directions count). A peer is up if it answered
//     within max(5 intervals, 1s) as the expected node ID of the same cluster
//     ID. The leader, in each node's view, is the lowest up ID, provided a
//     majority of the definition is up; otherwise there is none (LeaderID -1,
//     role Candidate). Deterministic, no terms.
//   - Writes: run on the leader (followers forward them, /v1/rpc/forward). The
//     leader turns a write into a log entry (index commit+1, a random ID, the
//     ID of the entry before it, and the objects it puts or deletes, or the
//     new definition), sends the entry to every other node of the
//     definition, and applies it only when all of them acknowledged (n of
//     n); otherwise 503 "write quorum not available: ...". A node applies an
//     entry only if it follows its own last entry (index and ID); otherwise
//     it answers "out of sync" and the leader sends its whole state (a
//     snapshot) instead. A joining node gets the snapshot, only after every
//     member acknowledged the entry. A follower whose log differs from the
//     leader's (e.g. it applied a write that failed elsewhere) is reset to
//     the leader's state on the next heartbeat. So a write costs the same
//     whatever the number of keys. Reads are served by any node from its own
//     state (immutable, shared between versions, so reads take no lock).
//     /v1/health/ready?write is 200 only if a leader exists and every node of
//     the definition is up.
//   - CLUSTER:EDIT removes exactly one ID from the receiving node's definition
//     without quorum; its own ID is refused (400; on a one-node cluster: 409
//     "cannot remove the last cluster node"), an unknown ID is 404 "node does
//     not exist". The EditClusterRequest Host field is ignored. The definition
//     carries an epoch, bumped by every membership change; a node adopts a
//     peer's definition of the same cluster with a higher epoch if it still
//     lists the node at its own host and has the same commit, so an edit
//     reaches the other live nodes within a heartbeat. Replication with a
//     lower epoch is refused (except the leader's reset of a follower).
//   - CLUSTER:ADDNODE{Host} (needs a leader and all nodes): the new node must
//     answer over the inter-node RPC (else 502 "node is unreachable"; if it
//     refuses the node credential: 409 "different HSM key"), must be fresh
//     (one-node cluster, commit 0; else 409 "node is not fresh", also for a
//     former member that kept its data) and not already listed (409 "node is
//     already a cluster member"). It gets the ID and the full state.
//   - CLUSTER:REMOVENODE{Host} (needs all nodes, the removed one included):
//     the others drop it; the removed node becomes node 0 of a new one-node
//     cluster, wiped if DeleteClusterOnHost, else keeping its data (so it is not
//     fresh). The last node cannot be removed.
//   - The host named in CLUSTER:ADDNODE must be the new node's own --host
//     (what it announces); otherwise it refuses to join (409), where the real
//     server would only fail at its next start.
//   - A node removed by CLUSTER:EDIT while it was down that restarts with
//     its old state keeps its old definition, but does not pass as healthy:
//     a peer whose definition no longer lists it counts as down in its view
//     (heartbeats and CLUSTER:STATUS), so it has no leader, is not ready for
//     writes, and its view (old definition, the others down) disagrees with
//     the members'. It logs that it was removed. The leader refuses writes
//     forwarded by a node that is not in its definition (409 "node N (HOST)
//     is not a member of this cluster ..."). It must be wiped and added again.
//   - A wiped node that the others still list starts fresh (new cluster ID,
//     node 0); the others see it as down, never replicate to it, and it
//     ignores them.
//   - A node whose --host differs from its own entry of a multi-node
//     definition refuses to start ("kms: server not part of cluster").
//
// # Inter-node protocol
//
// POST https://HOST/v1/rpc/{heartbeat,status,replicate,forward,leave} over
// mTLS. The client certificate is a self-signed Ed25519 certificate whose
// seed is HKDF-SHA256(HSM key, "kmsim node key v1"); the server accepts
// /v1/rpc only from that identity. Bodies are JSON sealed with AES-256-GCM
// under HKDF(HSM key, "kmsim rpc key v1") with the path as associated data,
// so a node with another HSM key can neither join, nor read, nor forge
// traffic. Peer server certificates are verified against tls.ca when
// configured (Config.PeerCAs), otherwise the sealing authenticates peers.
//
// # Storage
//
// DIR/root.key holds a random 32-byte root key sealed with AES-256-GCM under
// HKDF(HSM key, "kmsim root key v1"), with the HSM key's fingerprint; a
// different HSM key fails at startup with a clear error. DIR/state.db holds
// a snapshot of the node state (cluster ID, node ID, definition, epoch,
// commit, last entry ID, enclaves, keys, policies, identities) as JSON
// sealed under the root key, replaced atomically (renameio: temp file,
// fsync, rename). DIR/log.db holds the entries committed since, appended
// and fsync-ed one by one: a 4-byte big-endian length and the entry as JSON
// sealed under the root key. At startup the node replays the entries that
// follow state.db and cuts a torn last record. Once the log outgrows the
// snapshot (and 1 MiB), the state is written to state.db and the log
// emptied; membership changes outside the log (CLUSTER:EDIT, adopting a
// newer definition, leaving) and snapshots from the leader also write
// state.db. DIR/.lock is flock-ed while a node runs, so a second process on
// the same DIR fails to start. Deleting DIR (or its contents) makes the
// node fresh.
//
// # Ciphertexts
//
// KEY:ENCRYPT and KEY:GENERATE return 0x01 || nonce || AEAD output, with
// AES-256-GCM (12-byte nonce) or ChaCha20-Poly1305 by key type, the key
// version's 32-byte secret as key and the request's associated data. Decrypt
// failures are 400 "invalid ciphertext". KEY:MAC is HMAC-SHA256.
//
// # Backup and restore
//
// GET /v1/db (SysAdmin) returns JSON {format "kmsim-backup-v1",
// hsm_fingerprint, created_at, commit, counts, sealed}, where sealed is the
// enclaves, keys, policies and identities (never membership) as JSON, sealed
// with AES-256-GCM under HKDF(HSM key, "kmsim backup key v1"). It is gzipped
// (Content-Encoding: gzip) when Accept-Encoding or Accept names gzip, always
// with Content-Length. PUT /v1/db (SysAdmin) takes the raw or gzip body
// (sniffed); it needs a one-node cluster (409 "restore requires a single-node
// cluster", before the body is read), refuses a snapshot of another HSM key
// (409 "different HSM key") or garbage (400 "invalid backup") without
// changing anything, and otherwise replaces the node's data as one commit.
// The body is streamed (and decompressed on the fly) into DIR/restore-*.tmp,
// never held in memory: more than Config.MaxSnapshotSize (256 MiB) raw or
// decompressed is 413 "request too large" as soon as the cap is passed, so a
// small gzip body that inflates past the cap costs disk up to the cap, not
// memory. The snapshot is then decoded from the file; one that does not
// start with its format field is refused at once. Leftover spool files are
// removed at startup.
//
// # Client commands
//
// cmd/kmsim (installed as minkms) also answers the client commands of the
// vendor's manual (docs/protocol.md §11) through the kms client package, so that
// the lab is a place to practise the manual procedure: ls, stat, add, rm,
// edit HOST --rm ID, backup, restore, ls-enclave, ls-key, ls-policy. The
// server is MINIO_KMS_SERVER (comma-separated; default
// https://localhost:7373; a leading https:// is optional), the API key
// MINIO_KMS_API_KEY or -a/--api-key KEY. The flag is the vendor's form and
// is accepted, but argv is visible to every user of the host (ps,
// /proc/PID/cmdline) and may land in shell history: prefer the variable.
// Server certificates are verified against the system pool and the PEM
// files (*.crt, *.pem) in $HOME/.minkms/certs/CAs; -k/--insecure skips
// verification. Our choices where the vendor's form is unknown (constants
// and the command table in cmd/kmsim/client.go, nowhere else):
//
//   - ls and stat print a table (ID, online/offline, role, uptime, host;
//     stat adds commit, leader, version, system) from one node's
//     CLUSTER:STATUS; --json prints that CLUSTER:STATUS as protojson.
//   - add: "add HOST" sends CLUSTER:ADDNODE{HOST} to the first
//     MINIO_KMS_SERVER; "add MEMBER HOST" sends it to MEMBER (the docs'
//     example puts the existing node first, the new node last).
//   - rm HOST sends CLUSTER:REMOVENODE with DeleteClusterOnHost set: the
//     removed node restarts as a fresh node that can be added again.
//   - edit HOST takes exactly one --rm ID (the vendor's rule: one failed
//     node at a time); more is a usage error (exit 2).
//   - backup [FILE] reads GET /v1/db (load-balanced) and writes FILE, by
//     default YYYYMMDD_HHMMSS_kms.db.gzip in UTC in the current directory,
//     gzip-compressed unless --compress off, atomically, mode 0600; it
//     refuses to replace an existing file and prints the file name.
//   - restore [HOST] FILE sends FILE (raw or gzip) to HOST, by default the
//     first MINIO_KMS_SERVER.
//   - ls-enclave, ls-key, ls-policy [PREFIX] print one name per line, or
//     one protojson object per line with --json; the enclave of ls-key and
//     ls-policy is -e/--enclave, else MINIO_KMS_ENCLAVE, else none (the
//     server's default enclave, "default" here).
//   - Exit codes: 0 done, 1 failed, 2 usage error.
//
// # Bad input
//
// A request body (/v1/kms, /v1/db, /v1/rpc) that sends nothing for
// Config.BodyStallTimeout (30 s) ends the request with 408 "request
// timeout: ..."; headers must arrive within 10 s. /v1/kms bodies are capped
// at 4 MiB, frames at 2 MiB and requests at 1000 frames (413 "request too
// large: ..."); truncated
// frames, trailing bytes, no frames and undecodable protobuf are 400
// "malformed request: ...", unknown ids 400 "unknown command: ...". A write
// command must be alone in its request. Errors are protobuf ErrResponse when
// the request accepts application/octet-stream, JSON otherwise.
package kmsim
