package kmsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsctl/kmsctl/kms/kmsim/kmsimtest"
)

// A port check (connect, close) is not logged; other TLS handshake errors
// are, with net/http's "http: " prefix once.
func TestHTTPErrorLog(t *testing.T) {
	e := newEnv(t)
	cert, err := e.ca.ServerCertificate("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	n, err := Start(context.Background(), Config{
		Dir: filepath.Join(t.TempDir(), "n"), HSMKey: e.hsmKey, Address: "127.0.0.1:0", AdminIdentity: e.adminID,
		Certificates: []tls.Certificate{cert}, PeerCAs: e.ca.Pool(), HeartbeatInterval: testHeartbeat, Log: &logBuf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	logged := func() string {
		n.logMu.Lock()
		defer n.logMu.Unlock()
		return logBuf.String()
	}

	// What net/http writes for a port check; the line must be dropped.
	before := logged()
	fmt.Fprintf(httpErrorLog{n}, "http: TLS handshake error from %s: EOF\n", "127.0.0.1:40000")
	if after := logged(); after != before {
		t.Errorf("port check logged: %q", strings.TrimPrefix(after, before))
	}

	for _, data := range []string{"", "hello, not TLS\r\n\r\n"} {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(data))
		c.Close()
	}
	kmsimtest.Eventually(t, "handshake error logged", func() error {
		if !strings.Contains(logged(), "does not look like a TLS handshake") {
			return fmt.Errorf("log %q", logged())
		}
		return nil
	})
	s := logged()
	if !strings.Contains(s, " http: TLS handshake error from 127.0.0.1:") || strings.Contains(s, "http: http:") {
		t.Errorf("log %q: want one http: prefix", s)
	}
}
