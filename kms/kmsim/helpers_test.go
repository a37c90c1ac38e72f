package kmsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// testHeartbeat keeps convergence quick; tests poll with deadlines, so a
// slow machine only makes them slower, not flaky.
const testHeartbeat = 50 * time.Millisecond

// env is a test world: one CA, one HSM key, one admin API key.
type env struct {
	t        testing.TB
	ca       *CA
	hsmKey   hsm.Key
	adminKey string
	adminID  string
	admin    *http.Client
}

func testHSMKey(b byte) hsm.Key {
	var s [32]byte
	for i := range s {
		s[i] = b + byte(i)
	}
	return hsm.New(s)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	key, id, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ca: ca, hsmKey: testHSMKey(1), adminKey: key, adminID: id}
	e.admin = e.client(key)
	return e
}

// client returns an HTTP client that authenticates with apiKey ("" = no
// certificate) and trusts the test CA.
func (e *env) client(apiKey string) *http.Client {
	e.t.Helper()
	cfg := &tls.Config{RootCAs: e.ca.Pool()}
	if apiKey != "" {
		cert, err := ClientCertificate(apiKey)
		if err != nil {
			e.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// start starts a node on addr ("" = a free port) with dir and key.
func (e *env) startWith(dir, addr string, key hsm.Key) *Node {
	e.t.Helper()
	n, err := e.tryStart(dir, addr, key)
	if err != nil {
		e.t.Fatalf("start node in %s: %v", dir, err)
	}
	return n
}

func (e *env) tryStart(dir, addr string, key hsm.Key) (*Node, error) {
	e.t.Helper()
	return e.tryStartConfig(dir, addr, key, nil)
}

// startConfig starts a node on a free port with dir, e's HSM key and the
// configuration changed by mod.
func (e *env) startConfig(dir string, mod func(*Config)) *Node {
	e.t.Helper()
	n, err := e.tryStartConfig(dir, "", e.hsmKey, mod)
	if err != nil {
		e.t.Fatalf("start node in %s: %v", dir, err)
	}
	return n
}

func (e *env) tryStartConfig(dir, addr string, key hsm.Key, mod func(*Config)) (*Node, error) {
	e.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cert, err := e.ca.ServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		e.t.Fatal(err)
	}
	var log io.Writer
	if testing.Verbose() {
		log = os.Stderr
	}
	cfg := Config{
		Dir: dir, HSMKey: key, Address: addr, AdminIdentity: e.adminID,
		Certificates: []tls.Certificate{cert}, PeerCAs: e.ca.Pool(), HeartbeatInterval: testHeartbeat, Log: log,
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := Start(context.Background(), cfg)
	if err == nil {
		e.t.Cleanup(func() { n.Close() })
	}
	return n, err
}

func (e *env) start(dir string) *Node { return e.startWith(dir, "", e.hsmKey) }

// send posts one command frame to node at addr and decodes the single
// response frame into resp (may be nil). Non-200 answers are wire.Error.
func send(c *http.Client, addr, enclave string, cmd wire.Command, req, resp proto.Message) error {
	body, err := wire.AppendFrame(nil, cmd, req)
	if err != nil {
		return err
	}
	status, ctype, out, err := post(c, addr, enclave, body, "application/json")
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return wire.DecodeError(status, ctype, out)
	}
	dec := wire.NewDecoder(bytes.NewReader(out), 0)
	if err := dec.Decode(cmd, resp); err != nil {
		return err
	}
	return dec.End()
}

// post sends a raw body to /v1/kms[/enclave].
func post(c *http.Client, addr, enclave string, body []byte, accept string) (status int, ctype string, out []byte, err error) {
	url := "https://" + addr + wire.PathKMS
	if enclave != "" {
		url += "/" + enclave
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", wire.ContentTypeProtobuf)
	req.Header.Set("Accept", accept)
	res, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	out, err = io.ReadAll(res.Body)
	if err == nil && res.StatusCode == http.StatusOK && res.ContentLength != int64(len(out)) {
		err = errors.New("response without exact Content-Length")
	}
	return res.StatusCode, res.Header.Get("Content-Type"), out, err
}

// get fetches path and returns status and body.
func get(c *http.Client, addr, path string) (int, []byte, http.Header, error) {
	res, err := c.Get("https://" + addr + path)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header, err
}

// isErr reports whether err is the canonical API error want.
func isErr(err error, want wire.Error) bool {
	var we wire.Error
	return errors.As(err, &we) && we.Matches(want)
}

func mustIs(t *testing.T, err error, want wire.Error) {
	t.Helper()
	if !isErr(err, want) {
		t.Fatalf("got error %v, want %d %q", err, want.Status, want.Message)
	}
}

func status(c *http.Client, addr string) (*pb.ClusterStatusResponse, error) {
	var resp pb.ClusterStatusResponse
	err := send(c, addr, "", wire.ClusterStatus, &pb.ClusterStatusRequest{}, &resp)
	return &resp, err
}

func ready(c *http.Client, addr string, write bool) int {
	path := wire.PathReady
	if write {
		path += "?write"
	}
	code, _, _, err := get(c, addr, path)
	if err != nil {
		return 0
	}
	return code
}

func errorsJoin(msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}
