package wire

import (
	"fmt"
	"strings"
)

// Command is the id of a Key Manager API command, the first two bytes of a
// frame (docs/protocol.md §5).
type Command uint16

// The command ids of the Key Manager API.
const (
	ClusterAddNode    Command = 1 // CLUSTER:ADDNODE
	ClusterRemoveNode Command = 2 // CLUSTER:REMOVENODE
	ClusterStatus     Command = 3 // CLUSTER:STATUS
	ClusterEdit       Command = 4 // CLUSTER:EDIT
	ClusterAddHSM     Command = 5 // CLUSTER:ADDHSM
	ClusterRemoveHSM  Command = 6 // CLUSTER:REMOVEHSM

	EnclaveCreate Command = 101 // ENCLAVE:CREATE
	EnclaveDelete Command = 102 // ENCLAVE:DELETE
	EnclaveStatus Command = 103 // ENCLAVE:STATUS
	EnclaveList   Command = 104 // ENCLAVE:LIST

	KeyCreate       Command = 201 // KEY:CREATE
	KeyDelete       Command = 202 // KEY:DELETE
	KeyImport       Command = 203 // KEY:IMPORT (the name is ours: the vendor tables have none)
	KeyStatus       Command = 204 // KEY:STATUS
	KeyEncrypt      Command = 205 // KEY:ENCRYPT
	KeyDecrypt      Command = 206 // KEY:DECRYPT
	KeyGenerate     Command = 207 // KEY:GENERATE
	KeyList         Command = 208 // KEY:LIST
	KeyListVersions Command = 209 // KEY:LISTVERSIONS (messages unknown)
	KeyMAC          Command = 210 // KEY:MAC

	PolicyCreate Command = 301 // POLICY:CREATE
	PolicyDelete Command = 302 // POLICY:DELETE
	PolicyAssign Command = 303 // POLICY:ASSIGN
	PolicyGet    Command = 304 // POLICY:GET
	PolicyStatus Command = 305 // POLICY:STATUS
	PolicyList   Command = 306 // POLICY:LIST

	IdentityCreate Command = 401 // IDENTITY:CREATE
	IdentityDelete Command = 402 // IDENTITY:DELETE
	IdentityStatus Command = 403 // IDENTITY:STATUS
	IdentityList   Command = 404 // IDENTITY:LIST
)

// commandInfo describes one known command.
type commandInfo struct {
	name    string
	write   bool
	cluster bool
}

// commands is the immutable command table of docs/protocol.md §5.
var commands = map[Command]commandInfo{
	ClusterAddNode:    {"CLUSTER:ADDNODE", true, true},
	ClusterRemoveNode: {"CLUSTER:REMOVENODE", true, true},
	ClusterStatus:     {"CLUSTER:STATUS", false, true},
	ClusterEdit:       {"CLUSTER:EDIT", true, true},
	ClusterAddHSM:     {"CLUSTER:ADDHSM", true, true},
	ClusterRemoveHSM:  {"CLUSTER:REMOVEHSM", true, true},

	EnclaveCreate: {"ENCLAVE:CREATE", true, true},
	EnclaveDelete: {"ENCLAVE:DELETE", true, true},
	EnclaveStatus: {"ENCLAVE:STATUS", false, true},
	EnclaveList:   {"ENCLAVE:LIST", false, true},

	KeyCreate:       {"KEY:CREATE", true, false},
	KeyDelete:       {"KEY:DELETE", true, false},
	KeyImport:       {"KEY:IMPORT", true, false},
	KeyStatus:       {"KEY:STATUS", false, false},
	KeyEncrypt:      {"KEY:ENCRYPT", false, false},
	KeyDecrypt:      {"KEY:DECRYPT", false, false},
	KeyGenerate:     {"KEY:GENERATE", false, false},
	KeyList:         {"KEY:LIST", false, false},
	KeyListVersions: {"KEY:LISTVERSIONS", false, false},
	KeyMAC:          {"KEY:MAC", false, false},

	PolicyCreate: {"POLICY:CREATE", true, false},
	PolicyDelete: {"POLICY:DELETE", true, false},
	PolicyAssign: {"POLICY:ASSIGN", true, false},
	PolicyGet:    {"POLICY:GET", false, false},
	PolicyStatus: {"POLICY:STATUS", false, false},
	PolicyList:   {"POLICY:LIST", false, false},

	IdentityCreate: {"IDENTITY:CREATE", true, false},
	IdentityDelete: {"IDENTITY:DELETE", true, false},
	IdentityStatus: {"IDENTITY:STATUS", false, false},
	IdentityList:   {"IDENTITY:LIST", false, false},
}

// Known reports whether c is a command of the Key Manager API.
func (c Command) Known() bool {
	_, ok := commands[c]
	return ok
}

// Name returns the command's text name, e.g. "CLUSTER:STATUS", or "" if c is
// not a known command.
func (c Command) Name() string { return commands[c].name }

// String returns the command's name, or "command 0xNNNN" for unknown ids.
func (c Command) String() string {
	if info, ok := commands[c]; ok {
		return info.name
	}
	return fmt.Sprintf("command 0x%04x", uint16(c))
}

// IsWrite reports whether c changes state (needs write quorum, except
// CLUSTER:EDIT which is a write that needs no quorum).
func (c Command) IsWrite() bool { return commands[c].write }

// IsCluster reports whether c is a cluster-level command (CLUSTER:* and
// ENCLAVE:*): it is sent to /v1/kms without an enclave and needs SysAdmin.
func (c Command) IsCluster() bool { return commands[c].cluster }

// ParseName returns the command with the text name s, compared
// case-insensitively after trimming spaces.
func ParseName(s string) (Command, error) {
	t := strings.TrimSpace(s)
	for c, info := range commands {
		if strings.EqualFold(info.name, t) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("parse command name %q: unknown command", s)
}
