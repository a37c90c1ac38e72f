// Package wire is the Key Manager (minkms) wire format shared by the kms
// client and the kmsim simulator: command ids and names, the command frames
// [u16 BE id][u32 BE length][protobuf] of POST /v1/kms, error bodies
// (protobuf, JSON or text by Content-Type) with the canonical status/message
// pairs, and the HTTP paths, as docs/protocol.md §3 to §7 describe them.
// Where the vendor's values are unknown (cluster errors), the values here are
// kmsctl's own and documented as such.
package wire

// HTTP paths of the Key Manager API (docs/protocol.md §3.1).
const (
	PathVersion = "/version"
	PathLive    = "/v1/health/live"
	PathReady   = "/v1/health/ready" // "?write" asks for write readiness
	PathKMS     = "/v1/kms"          // cluster and enclave commands; "/v1/kms/{enclave}" for enclave-scoped ones
	PathDB      = "/v1/db"           // GET backup, PUT restore
)

// DefaultPort is the Key Manager's default TCP port.
const DefaultPort = "7373"
