package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/pb"
)

// Error is an API error: an HTTP status and the server's message. It is
// comparable; the sentinel values below are the canonical pairs.
type Error struct {
	Status  int
	Message string
}

// Error returns the message, or the HTTP status text if the message is empty.
func (e Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if t := http.StatusText(e.Status); t != "" {
		return strings.ToLower(t)
	}
	return "http status " + strconv.Itoa(e.Status)
}

// Matches reports whether e is the canonical error target: same status and
// the same message, or a message that starts with target's message followed
// by ": " (servers may add detail after the canonical text).
func (e Error) Matches(target Error) bool {
	if e.Status != target.Status {
		return false
	}
	return e.Message == target.Message || strings.HasPrefix(e.Message, target.Message+": ")
}

// WithDetail returns e with ": detail" appended to its message; it still
// Matches e.
func (e Error) WithDetail(detail string) Error {
	if detail == "" {
		return e
	}
	return Error{Status: e.Status, Message: e.Message + ": " + detail}
}

// The vendor's canonical status/message pairs (docs/protocol.md §7.2). Servers must
// emit them verbatim; clients compare status and message.
var (
	ErrAccessDenied     = Error{http.StatusForbidden, "access denied: insufficient permissions"}
	ErrEnclaveExists    = Error{http.StatusConflict, "enclave already exists"}
	ErrEnclaveNotFound  = Error{http.StatusNotFound, "enclave does not exist"}
	ErrKeyExists        = Error{http.StatusConflict, "key already exists"}
	ErrKeyNotFound      = Error{http.StatusNotFound, "key does not exist"}
	ErrPolicyNotFound   = Error{http.StatusNotFound, "policy does not exist"}
	ErrIdentityNotFound = Error{http.StatusNotFound, "identity does not exist"}
	ErrDecrypt          = Error{http.StatusBadRequest, "invalid ciphertext"}
)

// kmsctl's own status/message pairs. The vendor's are unknown
// (docs/protocol.md §7.3), so these are our choice; the simulator emits them and the client
// maps them. Clients should rely on the HTTP status class for real servers.
var (
	// ErrNoLeader: the cluster has no leader, so no write can be committed.
	ErrNoLeader = Error{http.StatusServiceUnavailable, "cluster has no leader"}
	// ErrNoWriteQuorum: not every node of the cluster definition is reachable.
	ErrNoWriteQuorum = Error{http.StatusServiceUnavailable, "write quorum not available"}
	// ErrNotReady: a readiness probe failed (the detail says why).
	ErrNotReady = Error{http.StatusServiceUnavailable, "node is not ready"}
	// ErrNodeNotFresh: CLUSTER:ADDNODE named a node with state or a cluster of its own.
	ErrNodeNotFresh = Error{http.StatusConflict, "node is not fresh"}
	// ErrNodeAlreadyMember: CLUSTER:ADDNODE named a node already in the cluster.
	ErrNodeAlreadyMember = Error{http.StatusConflict, "node is already a cluster member"}
	// ErrNodeNotFound: CLUSTER:REMOVENODE/EDIT named a node that is not in the definition.
	ErrNodeNotFound = Error{http.StatusNotFound, "node does not exist"}
	// ErrNodeUnreachable: the node named by CLUSTER:ADDNODE did not answer.
	ErrNodeUnreachable = Error{http.StatusBadGateway, "node is unreachable"}
	// ErrHSMMismatch: a node or a backup uses a different HSM key.
	ErrHSMMismatch = Error{http.StatusConflict, "different HSM key"}
	// ErrLastNode: the request would remove the last node of the cluster.
	ErrLastNode = Error{http.StatusConflict, "cannot remove the last cluster node"}
	// ErrEditOneNode: CLUSTER:EDIT must remove exactly one node id.
	ErrEditOneNode = Error{http.StatusBadRequest, "edit must remove exactly one node"}
	// ErrRestoreNotSingle: PUT /v1/db on a node that is part of a multi-node cluster.
	ErrRestoreNotSingle = Error{http.StatusConflict, "restore requires a single-node cluster"}
	// ErrInvalidBackup: the PUT /v1/db body is not a snapshot.
	ErrInvalidBackup = Error{http.StatusBadRequest, "invalid backup"}
	// ErrBadRequest: a malformed request (frames, protobuf, parameters).
	ErrBadRequest = Error{http.StatusBadRequest, "malformed request"}
	// ErrUnknownCommand: a frame with a command id the server does not know.
	ErrUnknownCommand = Error{http.StatusBadRequest, "unknown command"}
	// ErrTooLarge: a request body or frame exceeds the server's limit.
	ErrTooLarge = Error{http.StatusRequestEntityTooLarge, "request too large"}
)

// Canonical lists every sentinel Error above (vendor pairs first); clients use
// it to map a response to its sentinel.
func Canonical() []Error {
	return []Error{
		ErrAccessDenied, ErrEnclaveExists, ErrEnclaveNotFound, ErrKeyExists, ErrKeyNotFound,
		ErrPolicyNotFound, ErrIdentityNotFound, ErrDecrypt,
		ErrNoLeader, ErrNoWriteQuorum, ErrNotReady, ErrNodeNotFresh, ErrNodeAlreadyMember,
		ErrNodeNotFound, ErrNodeUnreachable, ErrHSMMismatch, ErrLastNode, ErrEditOneNode,
		ErrRestoreNotSingle, ErrInvalidBackup, ErrBadRequest, ErrUnknownCommand, ErrTooLarge,
	}
}

// Content types of API bodies.
const (
	ContentTypeProtobuf = "application/octet-stream"
	ContentTypeJSON     = "application/json"
	ContentTypeText     = "text/plain; charset=utf-8"
)

// MaxErrorBody is the most bytes of an error body a client reads.
const MaxErrorBody = 5000

// EncodeError returns the body of e for the given content type: a protobuf
// ErrResponse for application/octet-stream, {"message":...} for
// application/json and the message as text otherwise. It also returns the
// Content-Type header value to send.
func EncodeError(contentType string, e Error) (body []byte, ctype string) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case ContentTypeProtobuf:
		b, err := proto.Marshal(&pb.ErrResponse{Message: e.Message})
		if err == nil {
			return b, ContentTypeProtobuf
		}
	case ContentTypeJSON:
		b, err := json.Marshal(struct {
			Message string `json:"message"`
		}{e.Message})
		if err == nil {
			return b, ContentTypeJSON
		}
	}
	return []byte(e.Message), ContentTypeText
}

// WriteError writes e as an HTTP error response with the given content type
// (see EncodeError), an exact Content-Length and e.Status.
func WriteError(w http.ResponseWriter, contentType string, e Error) {
	body, ctype := EncodeError(contentType, e)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Content-Encoding")
	w.WriteHeader(e.Status)
	_, _ = w.Write(body) // the client has gone if this fails; nothing to report to
}

// ReadError reads at most MaxErrorBody bytes of a non-200 response body and
// returns the status and the server's message, decoded by Content-Type. A
// body that does not decode as its content type is kept as text.
func ReadError(resp *http.Response) Error {
	limit := int64(MaxErrorBody)
	if resp.ContentLength >= 0 && resp.ContentLength < limit {
		limit = resp.ContentLength
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, limit)) // a short body still carries a message
	}
	return DecodeError(resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

// DecodeError decodes an error body of the given content type.
func DecodeError(status int, contentType string, body []byte) Error {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case ContentTypeProtobuf:
		var m pb.ErrResponse
		if err := proto.Unmarshal(body, &m); err == nil {
			return Error{Status: status, Message: m.GetMessage()}
		}
	case ContentTypeJSON:
		var m pb.ErrResponse
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &m); err == nil {
			return Error{Status: status, Message: m.GetMessage()}
		}
	}
	return Error{Status: status, Message: strings.TrimSpace(string(bytes.ToValidUTF8(body, []byte("\uFFFD"))))}
}
