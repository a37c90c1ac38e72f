package remote

import (
	"errors"
	"fmt"
	"strings"
)

// ErrConnectionLost is wrapped by errors of operations that were in flight,
// or could not start, because the SSH connection to the host died. An
// operation that fails with it is never repeated by this package: its
// outcome on the host is unknown.
var ErrConnectionLost = errors.New("ssh connection lost")

// DialError reports that a host could not be reached or authenticated
// (TCP connect, ProxyJump, handshake, host key or authentication failure).
type DialError struct {
	Host string // the host as the inventory names it
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.Host, e.Err) }

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// Unreachable reports true: the host was not reached.
func (e *DialError) Unreachable() bool { return true }

// LostError reports that the connection to a host died while an operation
// was in flight (or just before it started). errors.Is(err,
// ErrConnectionLost) is true. The operation is not retried.
type LostError struct {
	Host string // the host as the inventory names it
	Op   string // what was in flight, e.g. "run command", "upload /etc/x"
	Err  error  // the transport error, may be nil
}

func (e *LostError) Error() string {
	msg := fmt.Sprintf("%s on %s: %v", e.Op, e.Host, ErrConnectionLost)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + " (the operation may or may not have completed on the host; it was not retried)"
}

// Unwrap returns ErrConnectionLost and the transport error.
func (e *LostError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrConnectionLost}
	}
	return []error{ErrConnectionLost, e.Err}
}

// Unreachable reports true: the host was lost.
func (e *LostError) Unreachable() bool { return true }

// ExitError reports that a remote command ran and exited with a non-zero
// status (or was killed by a signal, then Status is -1 and Signal is set).
type ExitError struct {
	Host   string // the host as the inventory names it
	Cmd    string // the command line as sent
	Status int    // exit status, -1 when killed by a signal
	Signal string // signal name without "SIG", when killed by one
	Stderr string // the last few KiB of the command's standard error
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "command on %s ", e.Host)
	if e.Signal != "" {
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, "exited with status %d", e.Status)
	}
	cmd, _, multi := strings.Cut(e.Cmd, "\n")
	if multi || len(cmd) > 200 {
		cmd = truncate(cmd, 200) + " ..."
	}
	fmt.Fprintf(&b, ": %s", cmd)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	return b.String()
}

// ExitStatus returns the remote exit status (-1 when killed by a signal).
func (e *ExitError) ExitStatus() int { return e.Status }

// HostKeyKind classifies a host key verification failure.
type HostKeyKind int

const (
	// Unknown means no known_hosts file or pinned key knows the host.
	Unknown HostKeyKind = iota + 1
	// Changed means the host offers a key other than the one on record.
	Changed
	// Revoked means the offered key (or its CA) is marked @revoked.
	Revoked
	// Unexpected means a planned key change named other fingerprints
	// (Options.ExpectedKeys) than the key the host offers.
	Unexpected
)

func (k HostKeyKind) String() string {
	switch k {
	case Unknown:
		return "unknown"
	case Changed:
		return "changed"
	case Revoked:
		return "revoked"
	case Unexpected:
		return "unexpected"
	}
	return fmt.Sprintf("HostKeyKind(%d)", int(k))
}

// HostKeyError reports a host key that failed verification. It is always
// wrapped in a *DialError.
type HostKeyError struct {
	Kind        HostKeyKind
	Host        string // the address as written in known_hosts: "name" or "[name]:port"
	Alias       string // the host as the user names it (inventory name); "" = Host
	Fingerprint string // SHA256 fingerprint of the key the server offered
	Key         string // the offered key in authorized_keys format (for pinning)
	// File and Line locate the entry on record (Changed, Revoked); File is
	// "inventory (kms_ssh_host_keys)" for pinned keys, with Line 0.
	File string
	Line int
	// KnownFingerprint is the SHA256 fingerprint of the key on record (Changed).
	KnownFingerprint string
	// Expected are the fingerprints the planned key change named (Unexpected).
	Expected []string
}

// expectForm is the flag that accepts the offered key as a planned change.
func (e *HostKeyError) expectForm() string {
	name := e.Alias
	if name == "" {
		name = e.Host
	}
	return fmt.Sprintf("--expect-host-key %s=%s", name, e.Fingerprint)
}

func (e *HostKeyError) Error() string {
	switch e.Kind {
	case Unknown:
		return fmt.Sprintf("unknown host key for %s (%s): verify it out of band, then pin it in the inventory (kms_ssh_host_keys) or add it to a known_hosts file, or run with --accept-new-host-keys for a host you are provisioning", e.Host, e.Fingerprint)
	case Changed:
		where := e.File
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.File, e.Line)
		}
		if e.Line == 0 {
			return fmt.Sprintf("host key for %s changed: server offers %s but %s has %s; this is either a replaced host or a man-in-the-middle: verify the new key out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then re-pin the host in the inventory (kms_ssh_host_keys), or run again with %s", e.Host, e.Fingerprint, where, e.KnownFingerprint, e.expectForm())
		}
		return fmt.Sprintf("host key for %s changed: server offers %s but %s has %s; this is either a replaced host or a man-in-the-middle: verify the new key out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run again with %s (kmsctl records it in its own known_hosts; your files are not changed), or pin the new key in the inventory (kms_ssh_host_keys), or remove the old entry yourself (ssh-keygen -R '%s' -f %s)", e.Host, e.Fingerprint, where, e.KnownFingerprint, e.expectForm(), e.Host, e.File)
	case Revoked:
		return fmt.Sprintf("host key for %s (%s) is revoked by %s:%d: refusing to connect; the host must get a new key", e.Host, e.Fingerprint, e.File, e.Line)
	case Unexpected:
		return fmt.Sprintf("host key for %s is %s, not the expected %s (--expect-host-key): refusing to connect, nothing recorded; check the fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); if %s is the right one, run again with %s", e.Host, e.Fingerprint, strings.Join(e.Expected, " or "), e.Fingerprint, e.expectForm())
	}
	return fmt.Sprintf("host key for %s (%s) rejected", e.Host, e.Fingerprint)
}

// Unreachable reports true: a host with a bad key is not reached.
func (e *HostKeyError) Unreachable() bool { return true }

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }
