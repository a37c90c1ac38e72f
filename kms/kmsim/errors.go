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

// fromWire turns a canonical pair into an *apiError, with optional detail
// appended as ": detail" (clients still match the canonical pair).
func fromWire(e wire.Error, detailf ...any) *apiError {
	if len(detailf) > 0 {
		e = e.WithDetail(fmt.Sprintf(detailf[0].(string), detailf[1:]...))
	}
	return &apiError{Status: e.Status, Message: e.Message}
}

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// Canonical errors (kms/wire): the vendor's pairs and kmsctl's cluster pairs.
var (
	errAccessDenied      = fromWire(wire.ErrAccessDenied)
	errEnclaveExists     = fromWire(wire.ErrEnclaveExists)
	errNoEnclave         = fromWire(wire.ErrEnclaveNotFound)
	errKeyExists         = fromWire(wire.ErrKeyExists)
	errNoKey             = fromWire(wire.ErrKeyNotFound)
	errNoPolicy          = fromWire(wire.ErrPolicyNotFound)
	errNoIdentity        = fromWire(wire.ErrIdentityNotFound)
	errInvalidCiphertext = fromWire(wire.ErrDecrypt)
	errNoLeader          = fromWire(wire.ErrNoLeader)
	errNotFresh          = fromWire(wire.ErrNodeNotFresh)
	errAlreadyMember     = fromWire(wire.ErrNodeAlreadyMember)
	errLastNode          = fromWire(wire.ErrLastNode)
	errRestoreSingle     = fromWire(wire.ErrRestoreNotSingle)

	// Not in the vendor's table; ours.
	errPolicyExists   = &apiError{http.StatusConflict, "policy already exists"}
	errIdentityExists = &apiError{http.StatusConflict, "identity already exists"}
)

// errNoQuorum is returned when a write could not reach every node.
func errNoQuorum(detail string) *apiError { return fromWire(wire.ErrNoWriteQuorum, "%s", detail) }
