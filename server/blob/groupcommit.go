package blob

import "sync"

// dirSyncer makes renames into one directory durable while letting
// concurrent writers share directory fsyncs (group commit).
//
// A rename is durable once an fsync of its directory that started after the
// rename has completed. An fsync already running when a writer arrives may
// have started before that writer's rename, so the writer waits for the next
// one. At most one fsync per directory runs at a time; whoever finds none
// running starts it and every writer that arrived before it started rides
// along. Under load this turns N directory fsyncs into about one per fsync
// latency, while file fsyncs (done before the rename) still run in parallel.
type dirSyncer struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled, with mu held, when an fsync completes
	started uint64    // generations of fsyncs started so far
	done    uint64    // generation of the latest completed fsync
	running bool
	failGen uint64 // generation of the latest failed fsync, 0 if none
	failErr error
}

// sync returns once an fsync that started after the call began has
// completed. fsync performs the directory fsync; it is called by at most one
// goroutine at a time. The error is that of a failed fsync whose generation
// is at least the caller's; reporting a later failure to a writer whose own
// fsync succeeded is conservative and harmless, since Put is idempotent.
func (s *dirSyncer) sync(fsync func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond.L == nil {
		s.cond.L = &s.mu
	}
	target := s.started + 1
	for s.done < target {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		gen := s.started
		s.mu.Unlock()
		err := fsync()
		s.mu.Lock()
		s.running = false
		s.done = gen
		if err != nil {
			s.failGen, s.failErr = gen, err
		}
		s.cond.Broadcast()
	}
	if s.failGen >= target {
		return s.failErr
	}
	return nil
}
