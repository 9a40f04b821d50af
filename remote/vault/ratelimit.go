package vault

import (
	"context"
	"sync"
	"time"
)

// RateLimit caps the bytes per second of the transfers that share it, like
// restic's --limit-upload: on a shared uplink a backup should not starve
// everything else. A nil *RateLimit does not limit.
type RateLimit struct {
	mu   sync.Mutex
	rate float64 // bytes per second
	next time.Time
}

// NewRateLimit returns a limit of bytesPerSecond, or nil (no limit) for 0
// or less.
func NewRateLimit(bytesPerSecond int64) *RateLimit {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &RateLimit{rate: float64(bytesPerSecond)}
}

// wait reserves n bytes and sleeps until the schedule allows them: the
// reservation runs ahead of the clock by at most what is in flight.
func (r *RateLimit) wait(ctx context.Context, n int) error {
	if r == nil || n <= 0 {
		return nil
	}
	r.mu.Lock()
	now := time.Now()
	if r.next.Before(now) {
		r.next = now
	}
	r.next = r.next.Add(time.Duration(float64(n) / r.rate * float64(time.Second)))
	until := r.next
	r.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
