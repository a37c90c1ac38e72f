package remote

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// keepaliveCountMax is how many liveness checks in a row may find nothing
// received from the server before the connection is closed as dead
// (OpenSSH's ServerAliveCountMax default).
const keepaliveCountMax = 3

// rxCounter counts the reads of a connection that returned bytes, that is
// every arrival of traffic from the server.
type rxCounter struct{ n atomic.Uint64 }

// count returns the number of reads that returned bytes so far.
func (r *rxCounter) count() uint64 { return r.n.Load() }

// dialer wraps dial so that the connections it makes count into r.
func (r *rxCounter) dialer(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, rx: r}, nil
	}
}

// countingConn is a net.Conn whose reads count into rx.
type countingConn struct {
	net.Conn
	rx *rxCounter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rx.n.Add(1)
	}
	return n, err
}

// keepalive checks every interval whether anything at all was received
// from the server since the previous check: command output, an SFTP reply,
// a window adjustment and a keepalive reply are all proof of life, as with
// OpenSSH's ServerAliveInterval (a reply queued behind bulk data on a
// loaded machine is late, but the data ahead of it is not). A check that
// finds nothing sends keepalive@openssh.com to draw a reply (unless one is
// still unanswered: x/crypto/ssh has one reply-wanting request in flight at
// a time), and the keepaliveCountMax-th such check in a row closes the
// connection, so a connection is dead only after keepaliveCountMax
// intervals with nothing received. Checks are counted, not wall time: a
// process that was not scheduled for a while does not hold the pause
// against the server.
func (s *sshConn) keepalive(interval time.Duration, log zerolog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	replied := make(chan error, 1) // the outcome of the keepalive request in flight
	pending := false               // a keepalive request is in flight
	seen := s.rx.count()
	silent := 0 // checks in a row that found nothing received
	for {
		select {
		case <-s.dead:
			return
		case err := <-replied:
			pending = false
			if err != nil {
				log.Debug().Err(err).Msg("keepalive failed; closing connection")
				s.client.Close()
				return
			}
			continue
		case <-t.C:
		}
		if n := s.rx.count(); n != seen {
			seen = n
			silent = 0
			continue
		}
		silent++
		if silent >= keepaliveCountMax {
			log.Info().Int("checks", silent).Dur("interval", interval).Msgf("nothing received from the server for %d keepalive intervals; closing connection", keepaliveCountMax)
			s.client.Close()
			return
		}
		log.Debug().Int("silent_checks", silent).Msg("nothing received from the server; sending keepalive")
		if !pending {
			pending = true
			go func() {
				_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
				replied <- err
			}()
		}
	}
}
