package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmsctl/kmsctl/kms"
)

// seedKeys makes the default enclave hold the keys prefix00001 ..
// prefixNNNNN (count of them, numbered from 1, at least five digits):
// workers KEY:CREATE at once, each key once; a key that already exists is
// kept and counted as there. A write the cluster could not take for the
// moment (no write quorum or no leader while a loaded node lags, HTTP 503)
// is tried again, up to five times. The simulator takes one write per request (no
// batches, docs/protocol.md §4.2), so parallel writers are the fastest way.
// It prints how many keys it created, how many were there, and the rate.
func seedKeys(ctx context.Context, c *kms.Client, prefix string, count, workers int, out io.Writer) error {
	start := time.Now()
	names := make(chan string)
	var created, existed atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range min(workers, count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				err := createKey(ctx, c, name)
				switch {
				case err == nil:
					created.Add(1)
				case errors.Is(err, kms.ErrKeyExists):
					existed.Add(1)
				default:
					cancel(fmt.Errorf("create key %s: %w", name, err))
					return
				}
			}
		}()
	}
feed:
	for i := 1; i <= count; i++ {
		select {
		case names <- fmt.Sprintf("%s%05d", prefix, i):
		case <-ctx.Done():
			break feed
		}
	}
	close(names)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(out, "keys %s00001..%s%05d: %d created, %d already there, in %.1fs (%.0f writes/s, %d at once)\n",
		prefix, prefix, count, created.Load(), existed.Load(), took.Seconds(), float64(created.Load())/took.Seconds(), workers)
	return nil
}

// createKey creates the key name in the default enclave, trying again
// (after 1, 2, 4, 8 s) while the cluster answers that writes are
// unavailable; a retried create that had landed reports ErrKeyExists.
func createKey(ctx context.Context, c *kms.Client, name string) error {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		err := c.CreateKey(ctx, "", name)
		if err == nil || !transient(err) || attempt == 5 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait *= 2
	}
}

// transient reports whether err says the cluster cannot take a write for
// the moment.
func transient(err error) bool {
	return errors.Is(err, kms.ErrNoWriteQuorum) || errors.Is(err, kms.ErrNoLeader) || errors.Is(err, kms.ErrNotReady)
}
