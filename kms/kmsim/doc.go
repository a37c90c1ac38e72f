// Package kmsim is a Key Manager (minkms) simulator that speaks the real
// wire protocol (see kms/wire) with the documented cluster semantics. It is
// what kmsctl's tests and labs run against, installed as /usr/local/bin/minkms.
package kmsim
