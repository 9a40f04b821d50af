package fusefs

import (
	"context"
	"errors"
	"time"

	"github.com/sealfs/sealfs/remote"
)

// unreachableWait is how long an operation waits for the server while
// another has just given up on it (see ctx).
const unreachableWait = 2 * time.Second

// ctx returns the context of one operation on the server. It ignores the
// caller's interrupts on purpose: a commit that close(2) waits for must
// not be abandoned half-way because the process got a signal, and
// interrupted reads would only be retried by the kernel.
//
// An operation waits --timeout for an answer, except within --timeout of
// another that got none: then it waits unreachableWait. The kernel runs
// some operations one after another (every creation in a directory holds
// the directory's lock across its lookup), so during an outage the n-th
// of them failed only after n × --timeout; now after --timeout plus
// (n-1) × unreachableWait. A server that is back answers well within
// that, and the change feed's next answer, within a second, restores the
// full wait.
func (f *FS) ctx() (context.Context, context.CancelFunc) {
	d := f.timeout
	if at := f.unreachable.Load(); at != 0 && time.Since(time.Unix(0, at)) < f.timeout {
		d = min(d, unreachableWait)
	}
	return context.WithTimeout(context.Background(), d)
}

// noteUnreachable records err when it says the server did not answer: the
// connection failed, or the time ran out.
func (f *FS) noteUnreachable(err error) {
	var ne *remote.NetError
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		f.unreachable.Store(time.Now().UnixNano())
	}
}

// reachable records that the server answered.
func (f *FS) reachable() { f.unreachable.Store(0) }
