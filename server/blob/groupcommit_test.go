package blob

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirSyncerGuarantee checks the group-commit rule on a fake fsync: every
// caller returns only after an fsync that started after it arrived has
// completed, and concurrent callers share fsyncs.
func TestDirSyncerGuarantee(t *testing.T) {
	var (
		s       dirSyncer
		clock   atomic.Int64
		active  atomic.Int32
		mu      sync.Mutex
		records [][2]int64 // start, end of each fsync
	)
	fsync := func() error {
		if active.Add(1) != 1 {
			t.Error("two fsyncs of one directory ran at once")
		}
		start := clock.Add(1)
		time.Sleep(2 * time.Millisecond)
		end := clock.Add(1)
		active.Add(-1)
		mu.Lock()
		records = append(records, [2]int64{start, end})
		mu.Unlock()
		return nil
	}

	const callers = 64
	spans := make([][2]int64, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			time.Sleep(time.Duration(i%8) * time.Millisecond)
			enter := clock.Add(1)
			if err := s.sync(fsync); err != nil {
				t.Error(err)
			}
			spans[i] = [2]int64{enter, clock.Add(1)}
		})
	}
	wg.Wait()

	for i, sp := range spans {
		covered := false
		for _, r := range records {
			if r[0] > sp[0] && r[1] < sp[1] {
				covered = true
				break
			}
		}
		if !covered {
			t.Errorf("caller %d (entered at %d, left at %d) saw no fsync that started after it arrived", i, sp[0], sp[1])
		}
	}
	if len(records) >= callers/2 {
		t.Errorf("%d callers caused %d fsyncs; group commit should share them", callers, len(records))
	}
	t.Logf("%d callers, %d directory fsyncs", callers, len(records))
}

// TestDirSyncerError checks that a failed fsync reaches the callers that
// depended on it and not the ones served by an earlier success.
func TestDirSyncerError(t *testing.T) {
	var s dirSyncer
	if err := s.sync(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("EIO")
	if err := s.sync(func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("sync with a failing fsync = %v", err)
	}
	if err := s.sync(func() error { return nil }); err != nil {
		t.Fatalf("a later successful fsync still reported %v", err)
	}
}
