package server

import (
	"sync"
	"time"
)

// throttle slows password guessing. Failed logins are counted per (account,
// source address) pair, per source address and per account; once a counter
// passes its free allowance, every further attempt it covers must wait a
// delay that doubles with each failure, and attempts inside the delay are
// refused with 429 before any password check. A success clears the pair's
// and the account's counters.
//
// The per-account counter has a higher allowance and a short cap, because it
// also blocks the legitimate user: it bounds a distributed guesser to about
// one guess per minute per account, while a single guessing address is
// pushed back by up to 15 minutes without locking out the owner elsewhere.
type throttle struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	failures int
	last     time.Time
}

type limit struct {
	free     int
	base     time.Duration
	cap      time.Duration
	forgetIn time.Duration
}

var (
	limitPair    = limit{free: 3, base: time.Second, cap: 15 * time.Minute, forgetIn: time.Hour}
	limitAddr    = limit{free: 20, base: time.Second, cap: 15 * time.Minute, forgetIn: time.Hour}
	limitAccount = limit{free: 10, base: time.Second, cap: time.Minute, forgetIn: time.Hour}
)

// limitRegister bounds invite guessing per source address. It has a larger
// allowance than logins because a typo in a pasted code is common, and no
// per-account counterpart: a global one would let anyone block sign-ups.
var limitRegister = limit{free: 10, base: time.Second, cap: 15 * time.Minute, forgetIn: time.Hour}

type keyLimit struct {
	key string
	lim limit
}

func newThrottle() *throttle {
	return &throttle{now: time.Now, buckets: map[string]*bucket{}}
}

func (t *throttle) keys(account, addr string) []keyLimit {
	return []keyLimit{
		{"p\x00" + account + "\x00" + addr, limitPair},
		{"a\x00" + addr, limitAddr},
		{"u\x00" + account, limitAccount},
	}
}

// wait returns how long the caller must still wait before an attempt for
// account from addr is allowed, or 0.
func (t *throttle) wait(account, addr string) time.Duration {
	return t.waitKeys(t.keys(account, addr))
}

// registerKeys are the counters of registrations from addr.
func registerKeys(addr string) []keyLimit {
	return []keyLimit{{"r\x00" + addr, limitRegister}}
}

func (t *throttle) waitKeys(keys []keyLimit) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var longest time.Duration
	for _, k := range keys {
		b := t.buckets[k.key]
		if b == nil {
			continue
		}
		if now.Sub(b.last) > k.lim.forgetIn {
			delete(t.buckets, k.key)
			continue
		}
		if b.failures < k.lim.free {
			continue
		}
		d := k.lim.base << min(b.failures-k.lim.free, 20)
		if d > k.lim.cap || d <= 0 {
			d = k.lim.cap
		}
		if left := b.last.Add(d).Sub(now); left > longest {
			longest = left
		}
	}
	return longest
}

// fail records a failed attempt.
func (t *throttle) fail(account, addr string) { t.failKeys(t.keys(account, addr)) }

func (t *throttle) failKeys(keys []keyLimit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		b := t.buckets[k.key]
		if b == nil {
			b = &bucket{}
			t.buckets[k.key] = b
		}
		b.failures++
		b.last = now
	}
	if len(t.buckets) > 100000 {
		t.gcLocked(now)
	}
}

// succeed clears the counters a correct password should clear.
func (t *throttle) succeed(account, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ks := t.keys(account, addr)
	delete(t.buckets, ks[0].key)
	delete(t.buckets, ks[2].key)
}

func (t *throttle) gcLocked(now time.Time) {
	for k, b := range t.buckets {
		if now.Sub(b.last) > time.Hour {
			delete(t.buckets, k)
		}
	}
}
