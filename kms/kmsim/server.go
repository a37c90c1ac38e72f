package kmsim

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"aead.dev/mtls"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kmsctl/kmsctl/hsm"
	"github.com/kmsctl/kmsctl/kms/pb"
	"github.com/kmsctl/kmsctl/kms/wire"
)

// Defaults of Config.
const (
	DefaultAddress           = "0.0.0.0:7373"
	DefaultHeartbeatInterval = 200 * time.Millisecond
	// DefaultVersion is the version the simulator reports, in the vendor's format.
	DefaultVersion = "2026-01-01T00-00-00Z"
	// APIVersion is the API version the simulator reports.
	APIVersion = "v1"
	// DefaultBodyStallTimeout is how long a request body may send nothing.
	DefaultBodyStallTimeout = 30 * time.Second
	// DefaultMaxSnapshotSize caps a restored snapshot, raw and decompressed.
	DefaultMaxSnapshotSize = 256 << 20
)

// Request size limits.
const (
	maxKMSBody   = 4 << 20 // POST /v1/kms
	maxFrameSize = 2 << 20 // one command frame
)

// Config configures one simulator node.
type Config struct {
	// Dir is the data directory (created if missing).
	Dir string
	// HSMKey seals the root key and derives the node credential. Required.
	HSMKey hsm.Key
	// Address is the listen address; default DefaultAddress. Port 0 picks a free port.
	Address string
	// Host is the host:port this node announces to the cluster; default
	// the listen address (with the first non-loopback IPv4 address when it
	// listens on all interfaces).
	Host string
	// AdminIdentity ("h1:...") is the SysAdmin identity. If empty, the root
	// API key derived from the HSM key (RootAPIKey) is the SysAdmin.
	AdminIdentity string
	// Certificates are the server's TLS certificates. Required.
	Certificates []tls.Certificate
	// PeerCAs verifies other nodes' server certificates on inter-node
	// calls. If nil they are not verified: inter-node payloads are sealed
	// under a key derived from the HSM key, which authenticates the peer.
	PeerCAs *x509.CertPool
	// HeartbeatInterval is the period of inter-node heartbeats; default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Version and Commit are reported by /version and CLUSTER:STATUS.
	Version, Commit string
	// Log receives one line per notable event; nil discards them.
	Log io.Writer
	// BodyStallTimeout ends a request whose body sends nothing for this
	// long (408); default DefaultBodyStallTimeout.
	BodyStallTimeout time.Duration
	// MaxSnapshotSize caps a PUT /v1/db body and its decompressed
	// snapshot; default DefaultMaxSnapshotSize.
	MaxSnapshotSize int64
}

// Node is one running simulator node.
type Node struct {
	cfg          Config
	host         string
	started      time.Time
	interval     time.Duration
	downAfter    time.Duration
	store        *store
	adminID      string
	rootAPIKey   string // set only when no AdminIdentity is configured
	nodeIdentity string
	rpcKey       []byte
	backupKey    []byte
	peerClient   *http.Client
	peerTr       *http.Transport
	ln           net.Listener
	srv          *http.Server
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	kick         chan struct{}
	closeOnce    sync.Once
	logMu        sync.Mutex

	writeMu sync.Mutex // serialises writes, syncs and edits

	mu            sync.Mutex // guards the fields below
	st            *nodeState // replaced, never modified in place
	peers         map[uint32]*peer
	lastHeartbeat time.Time
}

// Start opens the data directory, listens and serves until ctx is cancelled
// or Close is called. Its errors for missing configuration are the real
// server's ("kms: no HSM provided", "kms: no TLS configuration provided").
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.HSMKey.IsZero() {
		return nil, errors.New("kms: no HSM provided")
	}
	if len(cfg.Certificates) == 0 {
		return nil, errors.New("kms: no server certificate provided")
	}
	if cfg.Dir == "" {
		return nil, errors.New("kms: no data directory provided")
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if cfg.Commit == "" {
		cfg.Commit = "kmsim"
	}
	if cfg.BodyStallTimeout <= 0 {
		cfg.BodyStallTimeout = DefaultBodyStallTimeout
	}
	if cfg.MaxSnapshotSize <= 0 {
		cfg.MaxSnapshotSize = DefaultMaxSnapshotSize
	}
	n := &Node{
		cfg:       cfg,
		started:   time.Now(),
		interval:  cfg.HeartbeatInterval,
		downAfter: max(5*cfg.HeartbeatInterval, time.Second),
		rpcKey:    deriveKey(cfg.HSMKey, labelRPCKey),
		backupKey: deriveKey(cfg.HSMKey, labelBackupKey),
		kick:      make(chan struct{}, 1),
		peers:     map[uint32]*peer{},
	}
	if cfg.AdminIdentity != "" {
		id, err := mtls.ParseIdentity(strings.TrimSpace(cfg.AdminIdentity))
		if err != nil || id.IsZero() {
			return nil, fmt.Errorf("kms: admin identity %q is not an h1: identity", cfg.AdminIdentity)
		}
		n.adminID = id.String()
	} else {
		key, id, err := RootAPIKey(cfg.HSMKey)
		if err != nil {
			return nil, err
		}
		n.rootAPIKey, n.adminID = key, id
	}
	nodeCert, nodeID, err := nodeCredential(cfg.HSMKey)
	if err != nil {
		return nil, err
	}
	n.nodeIdentity = nodeID

	store, st, err := openStore(cfg.Dir, cfg.HSMKey)
	if err != nil {
		return nil, err
	}
	n.store = store

	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		store.close()
		return nil, fmt.Errorf("kms: listen on %s: %w", cfg.Address, err)
	}
	n.ln = ln
	n.host = cfg.Host
	if n.host == "" {
		n.host = defaultHost(ln.Addr().(*net.TCPAddr))
	}
	switch {
	case st == nil:
		if st, err = newNodeState(n.host, time.Now()); err == nil {
			err = store.save(st)
		}
	case len(st.Nodes) == 1 && st.Nodes[st.NodeID] != n.host:
		st = st.clone()
		st.Nodes[st.NodeID] = n.host
		err = store.save(st)
	case st.Nodes[st.NodeID] != n.host:
		err = fmt.Errorf("kms: server not part of cluster: this node announces --host %s, but its cluster definition lists node %d as %q (%s): start it with that --host, or wipe %s to start fresh", n.host, st.NodeID, st.Nodes[st.NodeID], describeNodes(st.Nodes), cfg.Dir)
	}
	if err != nil {
		ln.Close()
		store.close()
		return nil, err
	}
	n.st = st

	n.peerTr = &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			Certificates:       []tls.Certificate{nodeCert},
			RootCAs:            cfg.PeerCAs,
			InsecureSkipVerify: cfg.PeerCAs == nil, // peers are authenticated by the sealed payloads (rpc.go)
		},
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout: 2 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	n.peerClient = &http.Client{Transport: n.peerTr}

	n.ctx, n.cancel = context.WithCancel(ctx)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", n.serveVersion)
	mux.HandleFunc("GET /v1/health/live", n.serveLive)
	mux.HandleFunc("GET /v1/health/ready", n.serveReady)
	mux.HandleFunc("POST /v1/kms", n.serveKMS)
	mux.HandleFunc("POST /v1/kms/{$}", n.serveKMS)
	mux.HandleFunc("POST /v1/kms/{enclave}", n.serveKMS)
	mux.HandleFunc("GET /v1/db", n.serveBackup)
	mux.HandleFunc("PUT /v1/db", n.serveRestore)
	mux.HandleFunc("POST /v1/rpc/{name}", n.serveRPC)
	n.srv = &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: cfg.Certificates,
			ClientAuth:   tls.RequestClientCert, // self-signed API-key certificates: identity = hash of the public key
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(httpErrorLog{n}, "", 0), // net/http prefixes its lines with "http: "
		BaseContext:       func(net.Listener) context.Context { return n.ctx },
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logf("serve: %v", err)
		}
	}()
	go n.heartbeatLoop()
	go func() { <-n.ctx.Done(); n.Close() }() // ctx ends the node like Close
	n.logf("node %d of cluster %s listening on %s as %s", st.NodeID, st.ClusterID, ln.Addr(), n.host)
	return n, nil
}

// httpErrorLog writes the http.Server's error lines to the node log,
// except TLS handshakes that ended in EOF: a client that connected and
// closed without a handshake, such as kmsctl's wait_for port check.
type httpErrorLog struct{ n *Node }

func (w httpErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if strings.HasPrefix(line, "http: TLS handshake error from ") && strings.HasSuffix(line, ": EOF") {
		return len(p), nil
	}
	w.n.logf("%s", line)
	return len(p), nil
}

// newNodeState returns the state of a fresh node: node 0 of a new one-node cluster.
func newNodeState(host string, now time.Time) (*nodeState, error) {
	id, err := newClusterID()
	if err != nil {
		return nil, err
	}
	return &nodeState{ClusterID: id, NodeID: 0, Nodes: map[uint32]string{0: host}, Data: newData(now)}, nil
}

// newClusterID returns a random UUID (version 4) text.
func newClusterID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create cluster ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// defaultHost is the host:port a node announces when --host is not given.
func defaultHost(addr *net.TCPAddr) string {
	port := strconv.Itoa(addr.Port)
	if !addr.IP.IsUnspecified() {
		return net.JoinHostPort(addr.IP.String(), port)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && ipn.IP.IsGlobalUnicast() {
				return net.JoinHostPort(ipn.IP.String(), port)
			}
		}
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// Close stops the node like a process death: no goodbye to the cluster.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.srv.Close()
		n.store.close() // handlers may still run after srv.Close; they can no longer write
		n.wg.Wait()
		n.peerTr.CloseIdleConnections()
	})
	return nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Host is the host:port the node announces to its cluster.
func (n *Node) Host() string { return n.host }

// RootAPIKey returns the generated root API key, or "" when an admin
// identity is configured.
func (n *Node) RootAPIKey() string { return n.rootAPIKey }

// ClusterID returns the node's cluster ID.
func (n *Node) ClusterID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.ClusterID
}

// NodeID returns the node's ID.
func (n *Node) NodeID() uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.NodeID
}

// Banner writes the startup banner of the real server: Version, Cluster ID,
// the nodes, the endpoint and, only when the root API key was generated
// (no admin.identity), the API key. Anything that keeps this output (a
// journal) then holds the root API key, as with the real server.
func (n *Node) Banner(w io.Writer) error {
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Version     %s commit=%s\n", n.cfg.Version, n.cfg.Commit)
	fmt.Fprintf(&b, "HSM         hsm:aes256 %s\n", n.cfg.HSMKey.Fingerprint())
	fmt.Fprintf(&b, "Cluster ID  %s\n", st.ClusterID)
	for _, line := range strings.Split(describeNodes(st.Nodes), " ") {
		id, host, _ := strings.Cut(line, "=")
		fmt.Fprintf(&b, "Node %s: %s\n", id, host)
	}
	fmt.Fprintf(&b, "Endpoint    https://%s\n", n.host)
	if n.rootAPIKey != "" {
		fmt.Fprintf(&b, "API Key     %s\n", n.rootAPIKey)
	}
	b.WriteString("Server is up and running\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (n *Node) logf(format string, args ...any) {
	if n.cfg.Log == nil {
		return
	}
	n.logMu.Lock()
	defer n.logMu.Unlock()
	fmt.Fprintf(n.cfg.Log, time.Now().UTC().Format(time.RFC3339)+" "+format+"\n", args...)
}

// identityOf returns the client's identity, or "" without a certificate.
func identityOf(r *http.Request) string {
	id, err := mtls.PeerIdentity(r.TLS)
	if err != nil {
		return ""
	}
	return id.String()
}

// errorType picks the error body format from the request's Accept header:
// protobuf if it accepts application/octet-stream, else JSON.
func errorType(r *http.Request) string {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == wire.ContentTypeProtobuf {
				return wire.ContentTypeProtobuf
			}
		}
	}
	return wire.ContentTypeJSON
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	wire.WriteError(w, errorType(r), e.wireError())
}

// writeBody answers 200 with body and an exact Content-Length.
func writeBody(w http.ResponseWriter, ctype string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (n *Node) serveVersion(w http.ResponseWriter, r *http.Request) {
	v := &pb.VersionResponse{Version: n.cfg.Version, Commit: n.cfg.Commit, APIVersion: APIVersion, Host: n.host}
	if r.Header.Get("Content-Type") == wire.ContentTypeProtobuf || r.Header.Get("Accept") == wire.ContentTypeProtobuf {
		b, err := proto.Marshal(v)
		if err != nil {
			writeError(w, r, errorf(http.StatusInternalServerError, "encode version: %v", err))
			return
		}
		writeBody(w, wire.ContentTypeProtobuf, b)
		return
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode version: %v", err))
		return
	}
	writeBody(w, wire.ContentTypeJSON, b)
}

func (n *Node) serveLive(w http.ResponseWriter, r *http.Request) {
	writeBody(w, wire.ContentTypeText, nil)
}

func (n *Node) serveReady(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("write") {
		writeBody(w, wire.ContentTypeText, nil)
		return
	}
	n.mu.Lock()
	ok, leader := n.writableLocked(), n.leaderLocked()
	var down []string
	for id, host := range n.st.Nodes {
		if !n.upLocked(id) {
			down = append(down, fmt.Sprintf("node %d (%s)", id, host))
		}
	}
	n.mu.Unlock()
	if ok {
		writeBody(w, wire.ContentTypeText, nil)
		return
	}
	detail := "no leader"
	if leader >= 0 {
		detail = "not every node is up: down: " + strings.Join(down, ", ")
	}
	writeError(w, r, fromWire(wire.ErrNotReady, "writes are not possible: %s", detail))
}

func (n *Node) serveKMS(w http.ResponseWriter, r *http.Request) {
	identity := identityOf(r)
	if identity == "" {
		writeError(w, r, errAccessDenied)
		return
	}
	body, err := io.ReadAll(n.body(w, r, maxKMSBody))
	if err != nil {
		writeError(w, r, n.bodyError(err, "body"))
		return
	}
	out, aerr := n.execute(r.Context(), identity, r.PathValue("enclave"), body, false)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	writeBody(w, wire.ContentTypeProtobuf, out)
}

// body returns the request body, at most limit bytes, reading which fails
// with os.ErrDeadlineExceeded once the client sends nothing for
// BodyStallTimeout.
func (n *Node) body(w http.ResponseWriter, r *http.Request, limit int64) io.Reader {
	return &stallReader{r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w), timeout: n.cfg.BodyStallTimeout}
}

// stallReader moves the connection's read deadline before every read.
type stallReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	if err := s.rc.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return 0, fmt.Errorf("set read deadline: %w", err)
	}
	return s.r.Read(p)
}

// bodyError is the API error for a failure to read a request body (what).
func (n *Node) bodyError(err error, what string) *apiError {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fromWire(wire.ErrTooLarge, "%s exceeds %d bytes", what, mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, "request timeout: the %s sent nothing for %s", what, n.cfg.BodyStallTimeout)
	}
	return fromWire(wire.ErrBadRequest, "read %s: %v", what, err)
}
