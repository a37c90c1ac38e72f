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
// kept and counted as there. The simulator takes one write per request (no
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
				err := c.CreateKey(ctx, "", name)
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
