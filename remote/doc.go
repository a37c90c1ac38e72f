// Package remote is kmsctl's SSH transport: one verified, reused connection per host that runs
// commands, moves files atomically over SFTP and opens TCP tunnels. It knows nothing of the rest of
// kmsctl.
//
// Dial resolves the host like OpenSSH does (Options first, then ~/.ssh/config and
// /etc/ssh/ssh_config via github.com/kevinburke/ssh_config), follows ProxyJump hops, verifies
// every host key and authenticates with ssh-agent keys and identity files. It never prompts:
// an unknown host key, a changed or revoked one, a key file that needs a passphrase and
// "StrictHostKeyChecking no" are all errors that say what to do.
//
// Host keys of the target are accepted when, in this order:
//   - keys are pinned (Options.PinnedKeys): the offered key is one of them (known_hosts
//     files are then only consulted for @revoked entries);
//   - otherwise a known_hosts file (UserKnownHostsFile, GlobalKnownHostsFile, Options.
//     KnownHostsFiles, Options.StateKnownHosts) has it for "host" or "[host]:port", hashed
//     or not, or an @cert-authority line vouches for the host certificate it presents
//     (a certificate no CA vouches for is checked as its plain key, as OpenSSH does);
//   - otherwise, only with Options.AcceptNew, the unknown key is appended to
//     Options.StateKnownHosts and logged as a warning with its fingerprint. Changed and revoked keys are
//     never accepted. ProxyJump hops use the known_hosts files only.
//
// Every Options.KeepAlive the connection checks whether anything at all was received from the
// server since the last check (any traffic is proof of life, as with OpenSSH's
// ServerAliveCountMax); a check that finds nothing sends keepalive@openssh.com, and the third
// such check in a row closes the connection. A dead connection is re-dialled on the next call (three tries, jittered
// back-off from 200ms to 2s); whatever was in flight fails with a *LostError (errors.Is
// ErrConnectionLost) and is never re-run.
//
// Errors: *DialError, *LostError and *HostKeyError have Unreachable() == true; a command
// that ran and failed is an *ExitError (ExitStatus()); a missing remote file matches
// fs.ErrNotExist.
//
// Decorators wrap any Conn: Become (sudo -n), Redact (mask secrets in output and errors) and
// Trace (debug log of every operation). Stack them as
//
//	Trace(Redact(Become(client, "root"), redactor), log)
//
// so that traced command lines and errors are masked too (Redact directly over Trace masks
// them as well).
package remote
