package keyring

import "time"

// SetTiming shrinks k's reload interval and staleness bound, so tests of
// the multi-process protocol run in milliseconds.
func SetTiming(k *Keyring, reload, stale time.Duration) {
	k.reloadInterval = reload
	k.maxStale = stale
}
