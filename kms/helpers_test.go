package kms

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// fakeKMS is an httptest TLS server that requests client certificates and
// answers /v1/kms frames through per-command handlers.
type fakeKMS struct {
	*httptest.Server
	t        *testing.T
	mu       sync.Mutex
	commands map[wire.Command]func(enclave string, payload []byte) (proto.Message, error)
	other    http.HandlerFunc // non-/v1/kms requests
	hits     atomic.Int64
	lastReq  *http.Request
	lastBody []byte
	identity string // identity of the last client certificate seen
	proto    int    // ProtoMajor of the last request
}

func newFakeKMS(t *testing.T) *fakeKMS {
	t.Helper()
	f := &fakeKMS{t: t, commands: map[wire.Command]func(string, []byte) (proto.Message, error){}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.EnableHTTP2 = true
	f.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

// host returns the server's host:port.
func (f *fakeKMS) host() string { return f.Listener.Addr().String() }

// pool returns a cert pool trusting the servers.
func pool(servers ...*fakeKMS) *x509.CertPool {
	p := x509.NewCertPool()
	for _, s := range servers {
		p.AddCert(s.Certificate())
	}
	return p
}

// handle registers a handler for a command.
func (f *fakeKMS) handle(id wire.Command, h func(enclave string, payload []byte) (proto.Message, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands[id] = h
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.lastReq, f.lastBody, f.proto = r, body, r.ProtoMajor
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		f.identity = CertificateIdentity(r.TLS.PeerCertificates[0])
	}
	other := f.other
	f.mu.Unlock()
	enclave, isKMS := "", false
	switch {
	case r.URL.Path == wire.PathKMS:
		isKMS = true
	case len(r.URL.Path) > len(wire.PathKMS)+1 && r.URL.Path[:len(wire.PathKMS)+1] == wire.PathKMS+"/":
		isKMS, enclave = true, r.URL.Path[len(wire.PathKMS)+1:]
	}
	if !isKMS || r.Method != http.MethodPost {
		if other == nil {
			wire.WriteError(w, wire.ContentTypeJSON, wire.Error{Status: 404, Message: "no such path"})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		other(w, r)
		return
	}
	d := wire.NewDecoder(bytes.NewReader(body), 0)
	var out []byte
	for {
		fr, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			wire.WriteError(w, wire.ContentTypeJSON, wire.ErrBadRequest.WithDetail(err.Error()))
			return
		}
		f.mu.Lock()
		h := f.commands[fr.Command]
		f.mu.Unlock()
		if h == nil {
			wire.WriteError(w, wire.ContentTypeJSON, wire.ErrUnknownCommand)
			return
		}
		resp, err := h(enclave, fr.Payload)
		var we wire.Error
		if errors.As(err, &we) {
			wire.WriteError(w, wire.ContentTypeProtobuf, we)
			return
		}
		if err != nil {
			wire.WriteError(w, "", wire.Error{Status: 500, Message: err.Error()})
			return
		}
		if out, err = wire.AppendFrame(out, fr.Command, resp); err != nil {
			f.t.Errorf("encode response: %v", err)
		}
	}
	w.Header().Set("Content-Type", wire.ContentTypeProtobuf)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
}

// last returns the last request and its body.
func (f *fakeKMS) last() (*http.Request, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq, f.lastBody
}

// newTestClient returns a client for the given servers with a fresh API key.
func newTestClient(t *testing.T, key APIKey, servers ...*fakeKMS) *Client {
	t.Helper()
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.host())
	}
	c, err := New(Config{Endpoints: eps, APIKey: key, RootCAs: pool(servers...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func testKey(t *testing.T) APIKey {
	t.Helper()
	k, err := GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// deadAddr returns a 127.0.0.1 address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// countingDialer counts dials per address.
type countingDialer struct {
	mu    sync.Mutex
	dials map[string]int
	remap map[string]string // dial this address instead
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	if d.dials == nil {
		d.dials = map[string]int{}
	}
	d.dials[addr]++
	target := addr
	if t, ok := d.remap[addr]; ok {
		target = t
	}
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, target)
}

func (d *countingDialer) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[addr]
}
