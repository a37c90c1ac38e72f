package remote

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
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
	files   []string            // known_hosts files that exist, in order
	check   ssh.HostKeyCallback // knownhosts callback over files
	caLines map[string]bool     // "file:line" of @cert-authority entries
	pinned  []ssh.PublicKey
	// expected are the SHA256 fingerprints of a planned key change: when
	// set, only a key with one of them is accepted (see Options.ExpectedKeys).
	expected []string
	alias    string // the host as the user names it, for --expect-host-key in messages
	state    string // kmsctl's known_hosts file, appended to in accept-new mode
	// stateCheck is a knownhosts callback over state alone (nil when it
	// does not exist): a key kmsctl recorded there is accepted even if
	// another file still has the host's old key.
	stateCheck ssh.HostKeyCallback
	acceptNew  bool
	log        zerolog.Logger
}

// newHostKeyVerifier reads the known_hosts files that exist among files and
// parses the pinned keys. expected and alias are for the target of a
// planned key change (nil and "" for a ProxyJump hop).
func newHostKeyVerifier(files []string, pinned, expected []string, alias, state string, acceptNew bool, log zerolog.Logger) (*hostKeyVerifier, error) {
	v := &hostKeyVerifier{state: state, acceptNew: acceptNew, log: log, caLines: map[string]bool{}, alias: alias}
	for _, fp := range expected {
		norm, err := ParseFingerprint(fp)
		if err != nil {
			return nil, err
		}
		v.expected = append(v.expected, norm)
	}
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
	if state != "" && slices.Contains(v.files, state) {
		if v.stateCheck, err = knownhosts.New(state); err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
	}
	if v.pinned, err = parsePinned(pinned); err != nil {
		return nil, err
	}
	return v, nil
}

// ParseFingerprint checks that fp is a SHA256 host key fingerprint as
// ssh-keygen -l and kmsctl print it ("SHA256:" and 43 characters of
// unpadded base64) and returns it without base64 padding.
func ParseFingerprint(fp string) (string, error) {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok {
		return "", fmt.Errorf("host key fingerprint %q: want SHA256:... as ssh-keygen -lf prints it", fp)
	}
	b64 = strings.TrimRight(b64, "=")
	sum, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha256.Size {
		return "", fmt.Errorf("host key fingerprint %q: want SHA256: and the 43 characters of a SHA-256 hash in base64, as ssh-keygen -lf prints it", fp)
	}
	return "SHA256:" + b64, nil
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
	if len(v.expected) > 0 {
		return nil // a planned key change: the new key's type is not on record
	}
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
	hkErr := &HostKeyError{Host: display, Alias: v.alias, Fingerprint: fp, Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(plain)))}

	var re *knownhosts.RevokedError
	if errors.As(err, &re) {
		hkErr.Kind, hkErr.File, hkErr.Line = Revoked, re.Revoked.Filename, re.Revoked.Line
		return hkErr
	}
	var ke *knownhosts.KeyError
	if len(v.expected) > 0 {
		if !slices.Contains(v.expected, fp) {
			hkErr.Kind, hkErr.Expected = Unexpected, v.expected
			return hkErr
		}
		if err == nil || (v.stateCheck != nil && v.stateCheck(hostname, remote, plain) == nil) {
			v.log.Debug().Str("host", display).Str("fingerprint", fp).Msg("expected host key already verified by known_hosts")
			return nil
		}
		if !errors.As(err, &ke) {
			return fmt.Errorf("verify host key of %s: %w", display, err)
		}
		return v.replace(hostname, plain, "--expect-host-key", v.plainEntries(ke.Want))
	}
	if len(v.pinned) > 0 {
		for _, p := range v.pinned {
			if bytes.Equal(p.Marshal(), plain.Marshal()) {
				v.log.Debug().Str("host", display).Str("fingerprint", fp).Msg("host key matches a pinned key")
				// A known_hosts entry with the host's old key is replaced in
				// kmsctl's own file, so that it does not outlive the pin.
				if errors.As(err, &ke) && v.state != "" {
					if old := v.plainEntries(ke.Want); len(old) > 0 {
						return v.replace(hostname, plain, "kms_ssh_host_keys", old)
					}
				}
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
	if !errors.As(err, &ke) {
		return fmt.Errorf("verify host key of %s: %w", display, err)
	}
	if v.stateCheck != nil && v.stateCheck(hostname, remote, plain) == nil {
		// Recorded by kmsctl after a planned key change: another file
		// still has the host's old key.
		v.log.Debug().Str("host", display).Str("fingerprint", fp).Str("file", v.state).Msg("host key verified by kmsctl's known_hosts")
		return nil
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

// replace records key as hostname's only key in kmsctl's known_hosts file
// (a planned key change, accepted by what), dropping the host's entries
// there; old are the entries on record, for the warning. Other known_hosts
// files are never edited.
func (v *hostKeyVerifier) replace(hostname string, key ssh.PublicKey, what string, old []knownhosts.KnownKey) error {
	display := knownhosts.Normalize(hostname)
	if v.state == "" {
		return fmt.Errorf("record the new host key of %s (%s): no kmsctl known_hosts file to write", display, what)
	}
	if err := replaceKnownHost(v.state, hostname, key); err != nil {
		return fmt.Errorf("record the new host key of %s: %w", display, err)
	}
	var was []string
	for _, k := range old {
		was = append(was, fmt.Sprintf("%s (%s:%d)", ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
	}
	v.log.Warn().Str("host", display).Str("fingerprint", ssh.FingerprintSHA256(key)).Str("file", v.state).
		Strs("replaced", was).Str("by", what).
		Msg("planned host key change: recorded the new key in kmsctl's known_hosts (other known_hosts files are not changed)")
	return nil
}

// replaceKnownHost rewrites file (kmsctl's own known_hosts) atomically with
// hostname's plain entries dropped (the host's name taken out of a line
// that names other hosts too; @cert-authority and @revoked lines kept) and
// one line for key appended; mode 0600, directories 0700.
func replaceKnownHost(file, hostname string, key ssh.PublicKey) error {
	host := knownhosts.Normalize(hostname)
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		out.WriteString(dropHost(line, host))
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	out.WriteString(knownhosts.Line([]string{host}, key) + "\n")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("create directory of %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".known_hosts-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("replace %s: %w", file, err)
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// dropHost returns a known_hosts line without host (normalized) among its
// host patterns: unchanged when it does not name it, "" when it names only
// it. Marker lines (@cert-authority, @revoked) and comments are kept.
func dropHost(line, host string) string {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "@") {
		return line
	}
	i := strings.IndexAny(trimmed, " \t")
	if i < 0 {
		return line
	}
	var keep []string
	dropped := false
	for _, p := range strings.Split(trimmed[:i], ",") {
		if p == host || hashedMatch(p, host) {
			dropped = true
			continue
		}
		keep = append(keep, p)
	}
	switch {
	case !dropped:
		return line
	case len(keep) == 0:
		return ""
	}
	return strings.Join(keep, ",") + trimmed[i:] + "\n"
}

// hashedMatch reports whether pattern is a hashed known_hosts entry
// (|1|salt|hash, HMAC-SHA1 of the host keyed by the salt) for host.
func hashedMatch(pattern, host string) bool {
	parts := strings.Split(pattern, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	want, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return hmac.Equal(mac.Sum(nil), want)
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
