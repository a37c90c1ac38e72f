package kmsim

import (
	"fmt"
	"net/http"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// apiError is an error the API returns to clients: an HTTP status and the
// message the error body carries. The canonical pairs come from kms/wire.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// wireError returns the wire form of e.
func (e *apiError) wireError() wire.Error { return wire.Error{Status: e.Status, Message: e.Message} }

// canon turns a canonical pair into an *apiError.
func canon(e wire.Error) *apiError { return &apiError{Status: e.Status, Message: e.Message} }

// fromWire is canon with detail appended as ": detail" (clients still
// match the canonical pair).
func fromWire(e wire.Error, format string, args ...any) *apiError {
	return canon(e.WithDetail(fmt.Sprintf(format, args...)))
}

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Canonical errors (kms/wire): the vendor's pairs and kmsctl's cluster pairs.
var (
	errAccessDenied      = canon(wire.ErrAccessDenied)
	errEnclaveExists     = canon(wire.ErrEnclaveExists)
	errNoEnclave         = canon(wire.ErrEnclaveNotFound)
	errKeyExists         = canon(wire.ErrKeyExists)
	errNoKey             = canon(wire.ErrKeyNotFound)
	errNoPolicy          = canon(wire.ErrPolicyNotFound)
	errNoIdentity        = canon(wire.ErrIdentityNotFound)
	errInvalidCiphertext = canon(wire.ErrDecrypt)
	errNoLeader          = canon(wire.ErrNoLeader)
	errNotFresh          = canon(wire.ErrNodeNotFresh)
	errLastNode          = canon(wire.ErrLastNode)

	// Not in the vendor's table; ours.
	errIdentityIsAdmin = &apiError{http.StatusConflict, "identity is the admin identity"}
	errDecryptVersion0 = fromWire(wire.ErrBadRequest, "KEY:DECRYPT needs the key version the ciphertext was made with; version 0 is invalid")
)

// errNotAMember refuses a request of a node that is not in the cluster
// definition (anymore).
func errNotAMember(id uint32, host string) *apiError {
	return errorf(http.StatusConflict, "node %d (%s) is not a member of this cluster: it was removed; wipe its data directory and add it again", id, host)
}

// errNoQuorum is returned when a write could not reach every node.
func errNoQuorum(detail string) *apiError { return fromWire(wire.ErrNoWriteQuorum, "%s", detail) }
