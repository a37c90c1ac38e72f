package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// authenticator gathers the signers for one endpoint: keys from the agent
// and from identity files, in the order OpenSSH tries them. It never
// prompts: a key file that needs a passphrase is usable only through the
// agent, and is reported when authentication fails.
type authenticator struct {
	signers   []ssh.Signer
	encrypted []string // identity files that need a passphrase and are not in the agent
	tried     []string // descriptions of the keys offered, for the error message
	agentConn net.Conn
}

// newAuthenticator loads the identities of e. agentSock is the agent socket
// ("" for none).
func newAuthenticator(e *endpoint, agentSock string, log zerolog.Logger) (*authenticator, error) {
	a := &authenticator{}
	var agentSigners []ssh.Signer
	if agentSock != "" {
		c, err := net.Dial("unix", agentSock)
		if err != nil {
			// As ssh does: an unusable agent is not fatal; identity files may still work.
			log.Debug().Err(err).Str("socket", agentSock).Msg("ssh-agent not reachable")
		} else {
			a.agentConn = c
			s, err := agent.NewClient(c).Signers()
			if err != nil {
				log.Debug().Err(err).Msg("list ssh-agent keys")
			}
			agentSigners = s
		}
	}

	type fileKey struct {
		path   string
		pub    ssh.PublicKey // known when the file is encrypted (from the file or path.pub)
		signer ssh.Signer
	}
	var files []fileKey
	for _, p := range e.identityFiles {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			if !e.defaultIDs {
				log.Debug().Str("file", p).Msg("identity file does not exist")
			}
			continue
		}
		if err != nil {
			a.close()
			return nil, fmt.Errorf("read identity file: %w", err)
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			pub := pm.PublicKey
			if pub == nil {
				if pb, err := os.ReadFile(p + ".pub"); err == nil {
					pub, _, _, _, _ = ssh.ParseAuthorizedKey(pb)
				}
			}
			files = append(files, fileKey{path: p, pub: pub})
		case err != nil:
			a.close()
			return nil, fmt.Errorf("parse identity file %s: %w", p, err)
		default:
			files = append(files, fileKey{path: p, pub: s.PublicKey(), signer: s})
		}
	}

	inAgent := func(pub ssh.PublicKey) ssh.Signer {
		if pub == nil {
			return nil
		}
		for _, s := range agentSigners {
			if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
				return s
			}
		}
		return nil
	}
	used := map[string]bool{}
	add := func(s ssh.Signer, desc string) {
		k := string(s.PublicKey().Marshal())
		if used[k] {
			return
		}
		used[k] = true
		a.signers = append(a.signers, s)
		a.tried = append(a.tried, desc)
	}
	// Identity files first (through the agent when it holds them), then the
	// remaining agent keys unless IdentitiesOnly.
	for _, f := range files {
		if s := inAgent(f.pub); s != nil {
			add(s, f.path+" (via agent)")
			continue
		}
		if f.signer == nil {
			a.encrypted = append(a.encrypted, f.path)
			continue
		}
		add(f.signer, f.path)
	}
	if !e.identitiesOnly {
		for _, s := range agentSigners {
			add(s, "agent key "+ssh.FingerprintSHA256(s.PublicKey()))
		}
	}
	return a, nil
}

// methods returns the ssh auth methods.
func (a *authenticator) methods() []ssh.AuthMethod {
	return []ssh.AuthMethod{ssh.PublicKeys(a.signers...)}
}

// explain turns an authentication failure into a message that says what
// was tried and what to do.
func (a *authenticator) explain(user string, err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "authenticate as %q: ", user)
	if len(a.tried) == 0 {
		b.WriteString("no usable key (none in ssh-agent, no identity file found)")
	} else {
		fmt.Fprintf(&b, "server refused the keys offered (%s)", strings.Join(a.tried, ", "))
	}
	if len(a.encrypted) > 0 {
		fmt.Fprintf(&b, "; %s needs a passphrase and is not in ssh-agent: run `ssh-add %s` (kmsctl never prompts)",
			strings.Join(a.encrypted, ", "), a.encrypted[0])
	}
	return fmt.Errorf("%s: %w", b.String(), err)
}

func (a *authenticator) close() {
	if a.agentConn != nil {
		a.agentConn.Close()
	}
}
