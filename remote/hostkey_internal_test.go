package remote

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/remote/sshtest"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// TestHostKeyAlgorithmsOffered: the host key algorithms offered to a server
// are, as algorithms documents, the certificate types first when a CA is on
// record (and no key is pinned), then the types of the keys on record for
// that host or pinned, then, when only a CA is known, every plain type (so
// that a server without a certificate gets an unknown-key error naming its
// fingerprint); nil (the library's default) when nothing is known.
func TestHostKeyAlgorithmsOffered(t *testing.T) {
	ed := sshtest.GenerateKey(t).PublicKey()
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewPublicKey(&ecPriv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := sshtest.NewCA(t)
	certAlgos := []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	plainAlgos := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	authorized := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	for _, c := range []struct {
		name   string
		lines  []string // known_hosts
		pinned []ssh.PublicKey
		want   []string
	}{
		{"nothing known", nil, nil, nil},
		{"another host's key", []string{sshtest.KnownHostsLine("kms2:22", ed)}, nil, nil},
		{"recorded keys, in file order", []string{sshtest.KnownHostsLine("kms1:22", ec), sshtest.KnownHostsLine("kms1:22", ed)}, nil, []string{ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519}},
		{"only a CA", []string{"# site CA", ca.KnownHostsLine("kms1")}, nil, append(slices.Clone(certAlgos), plainAlgos...)},
		{"a CA and a recorded key", []string{ca.KnownHostsLine("kms1"), sshtest.KnownHostsLine("kms1:22", ec)}, nil, append(slices.Clone(certAlgos), ssh.KeyAlgoECDSA256)},
		{"pinned keys replace known_hosts, CA included", []string{ca.KnownHostsLine("kms1"), sshtest.KnownHostsLine("kms1:22", ed)}, []ssh.PublicKey{ec}, []string{ssh.KeyAlgoECDSA256}},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "known_hosts")
			sshtest.WriteKnownHosts(t, file, c.lines...)
			var pinned []string
			for _, k := range c.pinned {
				pinned = append(pinned, authorized(k))
			}
			v, err := newHostKeyVerifier([]string{file}, pinned, nil, "", "", false, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if got := v.algorithms("kms1:22"); !slices.Equal(got, c.want) {
				t.Errorf("algorithms = %v\nwant %v", got, c.want)
			}
		})
	}
}

// dropHost takes only the named host out of a known_hosts line: plain or hashed, alone or
// among others; marker lines and comments stay.
func TestDropHost(t *testing.T) {
	key := strings.Fields(string(ssh.MarshalAuthorizedKey(sshtest.GenerateKey(t).PublicKey())))
	k := " " + key[0] + " " + key[1] + "\n"
	hashed := strings.Fields(sshtest.HashedKnownHostsLine("[127.0.0.1]:2222", sshtest.GenerateKey(t).PublicKey()))[0]
	for _, c := range []struct{ line, want string }{
		{"[127.0.0.1]:2222" + k, ""},
		{"kms2,[127.0.0.1]:2222,10.0.0.2" + k, "kms2,10.0.0.2" + k},
		{"[127.0.0.1]:2223" + k, "[127.0.0.1]:2223" + k},
		{hashed + k, ""},
		{"@revoked [127.0.0.1]:2222" + k, "@revoked [127.0.0.1]:2222" + k},
		{"@cert-authority [127.0.0.1]:2222" + k, "@cert-authority [127.0.0.1]:2222" + k},
		{"# [127.0.0.1]:2222\n", "# [127.0.0.1]:2222\n"},
	} {
		if got := dropHost(c.line, "[127.0.0.1]:2222"); got != c.want {
			t.Errorf("dropHost(%q) = %q, want %q", c.line, got, c.want)
		}
	}
}
