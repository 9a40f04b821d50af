package crypto

import (
	"math"
	"testing"
	"time"
)

// TestAttrTime checks that times beyond int64 nanoseconds are clamped, not
// wrapped around: touch -d 2300-01-01 gave 1715-06-13 before.
func TestAttrTime(t *testing.T) {
	for _, c := range []struct {
		in   time.Time
		want int64
	}{
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
		{time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), math.MinInt64},
		{time.Unix(0, math.MaxInt64), math.MaxInt64},
		{time.Unix(0, math.MinInt64), math.MinInt64},
		{time.Unix(-1, 5), -999999995},
		{time.Unix(1787934006, 123456789), 1787934006123456789},
	} {
		if got := AttrTime(c.in); got != c.want {
			t.Errorf("AttrTime(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestTouchCtime checks that a change never lowers ctime, whatever the
// writer's clock says: a reader takes a lower one for a rollback.
func TestTouchCtime(t *testing.T) {
	for _, c := range []struct{ before, now, want int64 }{
		{100, 200, 200},                   // the clock is ahead: it wins
		{200, 100, 201},                   // the clock is behind the last writer's
		{200, 200, 201},                   // the same nanosecond
		{0, 5, 5},                         // a new inode
		{math.MaxInt64, 1, math.MaxInt64}, // the end of time stays there
		{math.MinInt64, math.MinInt64, math.MinInt64 + 1},
	} {
		a := Attr{Ctime: c.before}
		a.TouchCtime(c.now)
		if a.Ctime != c.want {
			t.Errorf("ctime %d touched at %d = %d, want %d", c.before, c.now, a.Ctime, c.want)
		}
	}
}
