package cache

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Budget bounds the memory a mount holds in plaintext for writes that are
// not on the server yet. Without it a fast writer over a slow link would
// grow the process without limit; with it, write() waits for uploads to
// free memory, which is the back-pressure an application expects from a
// disk that is busy. It is safe for concurrent use.
type Budget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	changed chan struct{} // closed and replaced on every Release
}

// NewBudget returns a budget of max bytes.
func NewBudget(max int64) *Budget {
	return &Budget{max: max, changed: make(chan struct{})}
}

// Max returns the budget's size.
func (b *Budget) Max() int64 { return b.max }

// Used returns the bytes currently held.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// TryAcquire takes n bytes if they are free now.
func (b *Budget) TryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max && b.used > 0 {
		return false
	}
	b.used += n
	return true
}

// Acquire takes n bytes, waiting until they are free. While it waits it
// calls pressure (when not nil) about every 100 ms, so the caller can start
// uploads that will release memory. It fails when ctx ends first. A request
// larger than the whole budget is granted when nothing else is held, so it
// cannot wait forever.
func (b *Budget) Acquire(ctx context.Context, n int64, pressure func()) error {
	for {
		b.mu.Lock()
		if b.used+n <= b.max || b.used == 0 {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		if pressure != nil {
			pressure()
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %d bytes of write memory (%d of %d in use by uploads not finished): %w", n, b.Used(), b.max, context.Cause(ctx))
		}
		t.Stop()
	}
}

// Release returns n bytes and wakes the waiters.
func (b *Budget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		panic("cache: budget released more than it holds")
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}
