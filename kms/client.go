package kms

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/kms/wire"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the Key Manager nodes, "host" or "host:port" (default
	// port 7373; a leading http:// or https:// is ignored, HTTPS is always
	// used). Load-balanced requests go to these.
	Endpoints []string

	// APIKey authenticates the client (mTLS with a certificate derived from
	// the key). The zero APIKey makes anonymous requests, enough for
	// Version, Live and Ready.
	APIKey APIKey

	// RootCAs verifies server certificates; nil means the system pool.
	// LoadCAFile reads a PEM file into a pool.
	RootCAs *x509.CertPool

	// InsecureSkipVerify disables server certificate verification. For labs
	// only: anyone on the path can then read and change every request.
	// Recovery commands must refuse it unless the operator asked for it by
	// name (see Client.Insecure).
	InsecureSkipVerify bool

	// DialContext, if set, opens every TCP connection (for example through an
	// SSH connection to the node). addr is the endpoint's "host:port"; TLS
	// still runs end to end over the returned connection and verifies the
	// certificate for that host. Nil dials directly.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// LoadCAFile reads PEM CA certificates from path into a new pool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("read CA file %s: no PEM certificate found", path)
	}
	return pool, nil
}

// ParseEndpoint normalizes an endpoint to "host:port": it trims spaces and a
// leading http:// or https:// and a trailing slash, and adds port 7373 if
// none is given.
func ParseEndpoint(s string) (string, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "https://")
	t = strings.TrimPrefix(t, "http://")
	t = strings.TrimSuffix(t, "/")
	if t == "" {
		return "", fmt.Errorf("parse endpoint %q: empty", s)
	}
	if strings.ContainsAny(t, "/?#@ ") {
		return "", fmt.Errorf("parse endpoint %q: want host or host:port", s)
	}
	if host, port, err := net.SplitHostPort(t); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("parse endpoint %q: want host or host:port", s)
		}
		return t, nil
	}
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") { // bracketed IPv6 without port
		return t + ":" + wire.DefaultPort, nil
	}
	if ip := net.ParseIP(t); ip != nil && strings.Contains(t, ":") { // bare IPv6
		return net.JoinHostPort(t, wire.DefaultPort), nil
	}
	if strings.Contains(t, ":") {
		return "", fmt.Errorf("parse endpoint %q: want host or host:port", s)
	}
	return net.JoinHostPort(t, wire.DefaultPort), nil
}

// failedFor is how long a host that failed with a transport error is tried
// last by load-balanced requests.
const failedFor = 30 * time.Second

// maxResponse is the largest /v1/kms or /version response body accepted.
const maxResponse = 32 << 20

// Client calls Key Manager APIs. It is safe for concurrent use.
//
// Methods that take a host send to exactly that host and never retry. An
// empty host (where allowed) load-balances over Config.Endpoints: it starts
// at a random endpoint, prefers endpoints without a transport failure in the
// last 30 seconds, and retries transport errors (never HTTP errors, never
// after ctx is done) on the next endpoint.
type Client struct {
	endpoints []string
	insecure  bool
	identity  string
	http      *http.Client

	mu     sync.Mutex
	failed map[string]time.Time // endpoint -> time of its last transport error
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	c := &Client{insecure: cfg.InsecureSkipVerify, identity: cfg.APIKey.Identity(), failed: map[string]time.Time{}}
	for _, e := range cfg.Endpoints {
		ep, err := ParseEndpoint(e)
		if err != nil {
			return nil, fmt.Errorf("configure KMS client: %w", err)
		}
		c.endpoints = append(c.endpoints, ep)
	}
	tlsConf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            cfg.RootCAs,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // lab switch, see Config
	}
	if !cfg.APIKey.IsZero() {
		certs := &certSource{key: cfg.APIKey}
		if _, err := certs.get(); err != nil {
			return nil, fmt.Errorf("configure KMS client: %w", err)
		}
		tlsConf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return certs.get()
		}
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsConf,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   50,
		// Compression is handled by Backup itself: transparent gunzip would
		// hide Content-Length, which command responses must carry.
		DisableCompression: true,
	}
	if cfg.DialContext != nil {
		tr.DialContext = cfg.DialContext
		tr.Proxy = nil // the custom dialer decides the path
	}
	c.http = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a Key Manager never redirects; surface it as an error
		},
	}
	return c, nil
}

// Endpoints returns the normalized endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Insecure reports whether server certificates are not verified.
func (c *Client) Insecure() bool { return c.insecure }

// Identity returns the client's "h1:" identity ("" without an API key).
func (c *Client) Identity() string { return c.identity }

// String describes the client without secrets.
func (c *Client) String() string {
	return fmt.Sprintf("kms.Client{endpoints: %v, identity: %q, insecure: %v}", c.endpoints, c.identity, c.insecure)
}

// GoString is String.
func (c *Client) GoString() string { return c.String() }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// certSource caches the client certificate and renews it a day before expiry.
type certSource struct {
	key  APIKey
	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *certSource) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && time.Until(s.cert.Leaf.NotAfter) > 24*time.Hour {
		return s.cert, nil
	}
	cert, err := s.key.Certificate()
	if err != nil {
		return nil, err
	}
	s.cert = &cert
	return s.cert, nil
}

// request is one HTTP request, rebuilt for every attempt.
type request struct {
	method  string
	path    string // escaped path, e.g. /v1/kms/my-enclave
	query   string
	body    []byte // nil: no body (unless stream is set)
	stream  io.Reader
	length  int64 // for stream: Content-Length, -1 for chunked
	headers http.Header
}

func (r *request) build(ctx context.Context, host string) (*http.Request, error) {
	u := &url.URL{Scheme: "https", Host: host, RawQuery: r.query}
	u = u.JoinPath(r.path)
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	} else if r.stream != nil {
		body = r.stream
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if r.stream != nil {
		req.ContentLength = r.length
		if r.length == 0 {
			req.Body = http.NoBody
		}
	}
	for k, vs := range r.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req, nil
}

// do sends r to host, or load-balanced if host is "". It returns the response
// (status not checked) and the host that answered.
func (c *Client) do(ctx context.Context, host string, r *request) (*http.Response, string, error) {
	if host != "" {
		ep, err := ParseEndpoint(host)
		if err != nil {
			return nil, host, err
		}
		resp, err := c.send(ctx, ep, r)
		return resp, ep, err
	}
	order := c.order()
	if len(order) == 0 {
		return nil, "", errors.New("kms: no endpoints configured: name a host or configure endpoints")
	}
	var errs []error
	for _, ep := range order {
		resp, err := c.send(ctx, ep, r)
		if err == nil {
			return resp, ep, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, ErrUnreachable) || ctx.Err() != nil || r.stream != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// order returns the endpoints for a load-balanced request: ring order from a
// random start, endpoints that failed in the last 30s moved to the end.
func (c *Client) order() []string {
	n := len(c.endpoints)
	if n == 0 {
		return nil
	}
	start := rand.IntN(n)
	c.mu.Lock()
	defer c.mu.Unlock()
	var good, bad []string
	for i := range n {
		ep := c.endpoints[(start+i)%n]
		if t, ok := c.failed[ep]; ok && time.Since(t) < failedFor {
			bad = append(bad, ep)
		} else {
			good = append(good, ep)
		}
	}
	return append(good, bad...)
}

// send makes one attempt against ep. Transport errors wrap ErrUnreachable and
// mark ep as failed, unless ctx is done.
func (c *Client) send(ctx context.Context, ep string, r *request) (*http.Response, error) {
	req, err := r.build(ctx, ep)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() == nil { // a cancelled request says nothing about ep
			c.mu.Lock()
			c.failed[ep] = time.Now()
			c.mu.Unlock()
		}
		return nil, fmt.Errorf("kms %s: %w: %w", ep, ErrUnreachable, err)
	}
	c.mu.Lock()
	delete(c.failed, ep)
	c.mu.Unlock()
	return resp, nil
}

// errorFrom turns a non-200 response into an *Error and closes its body.
func errorFrom(resp *http.Response, host string) error {
	defer resp.Body.Close()
	e := wire.ReadError(resp)
	return &Error{Status: e.Status, Message: e.Message, Host: host}
}

// readBody reads a 200 response body that must carry a Content-Length.
func readBody(resp *http.Response, host string) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength < 0 {
		return nil, fmt.Errorf("kms %s: %w: response without Content-Length", host, ErrProtocol)
	}
	if resp.ContentLength > maxResponse {
		return nil, fmt.Errorf("kms %s: %w: response of %d bytes exceeds %d", host, ErrProtocol, resp.ContentLength, maxResponse)
	}
	b := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		return nil, fmt.Errorf("kms %s: read response: %w: %w", host, ErrUnreachable, err)
	}
	return b, nil
}

// command is one command of a /v1/kms request and where to put its response
// (nil to ignore the response frame's payload).
type command struct {
	id       wire.Command
	req      proto.Message
	response proto.Message
}

// send1 runs one command; see run.
func (c *Client) send1(ctx context.Context, host, enclave string, id wire.Command, req, resp proto.Message) error {
	return c.run(ctx, host, enclave, []command{{id: id, req: req, response: resp}})
}

// run sends cmds in one POST /v1/kms[/enclave] request and decodes one
// response frame per command with the same id. The 200 body of a request of
// write commands only is not decoded (the vendor SDK ignores it).
func (c *Client) run(ctx context.Context, host, enclave string, cmds []command) error {
	var body []byte
	for _, cmd := range cmds {
		var err error
		if body, err = wire.AppendFrame(body, cmd.id, cmd.req); err != nil {
			return err
		}
	}
	if body == nil {
		body = []byte{}
	}
	path := wire.PathKMS
	if enclave != "" {
		path += "/" + url.PathEscape(enclave)
	}
	r := &request{method: http.MethodPost, path: path, body: body, headers: http.Header{
		"Content-Type": {wire.ContentTypeProtobuf},
		"Accept":       {"application/*"},
	}}
	resp, ep, err := c.do(ctx, host, r)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errorFrom(resp, ep)
	}
	b, err := readBody(resp, ep)
	if err != nil {
		return err
	}
	if allWrites(cmds) {
		// The vendor SDK ignores the body of a 200 to write commands and
		// what the real server puts there is unknown (docs/protocol.md §4.3).
		return nil
	}
	d := wire.NewDecoder(bytes.NewReader(b), maxResponse)
	for _, cmd := range cmds {
		if err := d.Decode(cmd.id, cmd.response); err != nil {
			return fmt.Errorf("kms %s: %w: %w", ep, ErrProtocol, err)
		}
	}
	if err := d.End(); err != nil {
		return fmt.Errorf("kms %s: %w: %w", ep, ErrProtocol, err)
	}
	return nil
}

func allWrites(cmds []command) bool {
	for _, cmd := range cmds {
		if !cmd.id.IsWrite() || cmd.response != nil {
			return false
		}
	}
	return true
}

// get sends a GET without body to host (or load-balanced) and returns the
// 200 response, or the error response as *Error.
func (c *Client) get(ctx context.Context, host, path, query string, headers http.Header) (*http.Response, string, error) {
	resp, ep, err := c.do(ctx, host, &request{method: http.MethodGet, path: path, query: query, headers: headers})
	if err != nil {
		return nil, ep, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, ep, errorFrom(resp, ep)
	}
	return resp, ep, nil
}
