package remote

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// pinnedSource names the inventory as the source of pinned host keys.
const pinnedSource = "inventory (kms_ssh_host_keys)"

// hostKeyVerifier checks one server's host key against known_hosts files
// (via x/crypto/ssh/knownhosts) or, when keys are pinned, only against them.
type hostKeyVerifier struct {
	files     []string            // known_hosts files that exist, in order
	check     ssh.HostKeyCallback // knownhosts callback over files
	caLines   map[string]bool     // "file:line" of @cert-authority entries
	pinned    []ssh.PublicKey
	state     string // kmsctl's known_hosts file, appended to in accept-new mode
	acceptNew bool
	log       zerolog.Logger
}

// newHostKeyVerifier reads the known_hosts files that exist among files and
// parses the pinned keys.
func newHostKeyVerifier(files []string, pinned []string, state string, acceptNew bool, log zerolog.Logger) (*hostKeyVerifier, error) {
	v := &hostKeyVerifier{state: state, acceptNew: acceptNew, log: log, caLines: map[string]bool{}}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		v.files = append(v.files, f)
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			if strings.HasPrefix(strings.TrimSpace(sc.Text()), "@cert-authority") {
				v.caLines[fmt.Sprintf("%s:%d", f, n)] = true
			}
		}
	}
	cb, err := knownhosts.New(v.files...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	v.check = cb
	if v.pinned, err = parsePinned(pinned); err != nil {
		return nil, err
	}
	return v, nil
}

// CheckHostKeys parses pinned host keys (authorized_keys lines) as a connection would, so
// that a bad one is found before any host is touched.
func CheckHostKeys(pinned []string) error {
	_, err := parsePinned(pinned)
	return err
}

func parsePinned(pinned []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, p := range pinned {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("parse pinned host key %d (%q): %w", i+1, truncate(p, 40), err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// algorithms returns the host key algorithms to offer for addr, so that the
// server presents a key type we have on record: certificate types first
// when a CA is known, then the types of the recorded (or pinned) keys. It
// returns nil (the library default) when nothing is known about addr.
func (v *hostKeyVerifier) algorithms(addr string) []string {
	var keys []ssh.PublicKey
	if len(v.pinned) > 0 {
		keys = v.pinned
	} else {
		for _, k := range v.known(addr) {
			keys = append(keys, k.Key)
		}
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	if len(v.caLines) > 0 && len(v.pinned) == 0 {
		add(ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
	}
	for _, k := range keys {
		add(keyAlgorithms(k.Type())...)
	}
	if len(algos) == 0 {
		return nil
	}
	if len(keys) == 0 {
		// Only a CA is known: still accept a plain key after the certificates,
		// so that the failure names the fingerprint.
		add(ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
	}
	return algos
}

// keyAlgorithms maps a key type to the signature algorithms that use it.
func keyAlgorithms(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// known returns the known_hosts entries for addr (excluding CAs), found by
// asking the knownhosts callback about a key it cannot know.
func (v *hostKeyVerifier) known(addr string) []knownhosts.KnownKey {
	var ke *knownhosts.KeyError
	if err := v.check(addr, placeholderAddr(addr), probeKey{}); errors.As(err, &ke) {
		return v.plainEntries(ke.Want)
	}
	return nil
}

// plainEntries drops @cert-authority entries, which knownhosts reports
// among the keys on record for a host.
func (v *hostKeyVerifier) plainEntries(keys []knownhosts.KnownKey) []knownhosts.KnownKey {
	var out []knownhosts.KnownKey
	for _, k := range keys {
		if !v.caLines[fmt.Sprintf("%s:%d", k.Filename, k.Line)] {
			out = append(out, k)
		}
	}
	return out
}

// probeKey is a public key no known_hosts file contains.
type probeKey struct{}

func (probeKey) Type() string                        { return "kmsctl-probe" }
func (probeKey) Marshal() []byte                     { return []byte("kmsctl-probe-key") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// placeholderAddr returns a net.Addr for addr (knownhosts needs one).
func placeholderAddr(addr string) net.Addr {
	host, port, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if ip == nil {
		ip = net.IPv4zero
	}
	p := 0
	fmt.Sscan(port, &p)
	return &net.TCPAddr{IP: ip, Port: p}
}

// callback verifies the key a server at hostname (host:port as dialled)
// offers. It implements ssh.HostKeyCallback.
func (v *hostKeyVerifier) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	display := knownhosts.Normalize(hostname)
	err := v.check(hostname, remote, key)
	if cert, ok := key.(*ssh.Certificate); ok && err != nil {
		var re *knownhosts.RevokedError
		// knownhosts reports a revoked CA as a plain certificate error:
		// ask about the CA key itself to find the @revoked entry.
		if caErr := v.check(hostname, remote, cert.SignatureKey); errors.As(caErr, &re) {
			err = caErr
		}
		if !errors.As(err, &re) {
			// As OpenSSH does: a certificate that no known CA vouches for
			// (or that is invalid) is checked again as the plain key it certifies.
			v.log.Debug().Str("host", display).Err(err).Msg("host certificate not trusted, checking the plain key")
			key = cert.Key
			err = v.check(hostname, remote, key)
		}
	}
	plain := key
	if cert, ok := key.(*ssh.Certificate); ok {
		plain = cert.Key
	}
	fp := ssh.FingerprintSHA256(plain)
	hkErr := &HostKeyError{Host: display, Fingerprint: fp, Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(plain)))}

	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		hkErr.Kind, hkErr.File, hkErr.Line = Revoked, re.Revoked.Filename, re.Revoked.Line
		return hkErr
	}
	if len(v.pinned) > 0 {
		for _, p := range v.pinned {
			if bytes.Equal(p.Marshal(), plain.Marshal()) {
				v.log.Debug().Str("host", display).Str("fingerprint", fp).Msg("host key matches a pinned key")
				return nil
			}
		}
		hkErr.Kind, hkErr.File = Changed, pinnedSource
		hkErr.KnownFingerprint = ssh.FingerprintSHA256(v.pinned[0])
		return hkErr
	}
	if err == nil {
		v.log.Debug().Str("host", display).Str("fingerprint", fp).Msg("host key verified by known_hosts")
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return fmt.Errorf("verify host key of %s: %w", display, err)
	}
	if want := v.plainEntries(ke.Want); len(want) > 0 {
		old := want[0]
		for _, w := range want {
			if w.Key.Type() == plain.Type() {
				old = w
				break
			}
		}
		hkErr.Kind, hkErr.File, hkErr.Line = Changed, old.Filename, old.Line
		hkErr.KnownFingerprint = ssh.FingerprintSHA256(old.Key)
		return hkErr
	}
	hkErr.Kind = Unknown
	if !v.acceptNew {
		return hkErr
	}
	if v.state == "" {
		return fmt.Errorf("%w (accept-new mode has no state known_hosts file to write)", hkErr)
	}
	if err := appendKnownHost(v.state, hostname, plain); err != nil {
		return fmt.Errorf("accept new host key for %s: %w", display, err)
	}
	// A warning, as OpenSSH's "Permanently added": a trust decision the
	// user should see and can check against the host's own fingerprint.
	v.log.Warn().Str("host", display).Str("fingerprint", fp).Str("file", v.state).
		Msg("accepted a new host key (accept-new mode): check its fingerprint against the host's own")
	return nil
}

// appendKnownHost appends a known_hosts line for hostname (host:port) to
// file, creating it 0600 (and its directories 0700).
func appendKnownHost(file, hostname string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("create directory of %s: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", file, err)
	}
	return nil
}
