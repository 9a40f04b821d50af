package server

import "time"

// SetThrottleClock replaces the login throttle's clock, so that tests can
// hold time still inside a delay, or step past one, instead of sleeping.
func SetThrottleClock(s *Server, now func() time.Time) {
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	s.limits.now = now
}
