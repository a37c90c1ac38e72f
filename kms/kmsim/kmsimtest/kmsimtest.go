// Package kmsimtest holds helpers for tests that run simulator clusters
// (package kmsim) in process, as net/http/httptest does for HTTP servers.
package kmsimtest

import (
	"testing"
	"time"
)

// Eventually polls cond every 25ms until it returns nil; it fails the test,
// naming what and cond's last error, when cond still fails after 20s. A
// simulated cluster converges by heartbeats, so tests wait for it this way.
func Eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 20s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
