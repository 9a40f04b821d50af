package server

import (
	"bytes"
	"container/list"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// A change whose answer was lost (a connection reset after the commit, a
// client timeout while the server was slow) is sent again by the client.
// Most changes are not idempotent: a rename applied twice moves the next
// thing under the name, an exchange swaps back under names sealed for the
// other inode (which then never open again), a create finds its own file
// and reports the name taken. So the server remembers the answers of
// recent changes by the client's Idempotency-Key and gives a repeated
// attempt the first one's answer. A repeat that arrives while the first
// attempt still runs waits for it.
//
// The memory is per server process and bounded: answers are kept for
// idemTTL, at most idemMax of them, and only small ones. That covers a
// lost answer, which the client repeats within seconds. It does not cover
// a server restart between the commit and the answer, nor another replica;
// the operations that would then do harm check what they act on instead
// (a rename names the inode it sealed the name for).
const (
	idemTTL     = 10 * time.Minute
	idemMax     = 1 << 14
	idemMaxBody = 64 << 10
)

// idemKey names one change of one account.
type idemKey struct {
	account int64
	key     crypto.ID
}

// idemEntry is a change in progress (done open) or its recorded answer.
type idemEntry struct {
	key  idemKey
	what string // method, path and body length: a key must not be reused for another request
	at   time.Time
	done chan struct{}
	keep bool // the answer is replayable (set before done closes)
	code int
	hdr  http.Header
	body []byte
	elem *list.Element // in order (and the map) while not nil
}

// idempotency is the memory of recent answers.
type idempotency struct {
	mu    sync.Mutex
	byKey map[idemKey]*idemEntry
	order *list.List // oldest first
}

func newIdempotency() *idempotency {
	return &idempotency{byKey: map[idemKey]*idemEntry{}, order: list.New()}
}

// serve runs h for a change carrying an Idempotency-Key, or answers with
// the answer h gave to an earlier attempt of the same change.
func (m *idempotency) serve(w http.ResponseWriter, r *http.Request, account int64, key crypto.ID, h http.Handler) {
	k := idemKey{account, key}
	what := r.Method + " " + r.URL.Path + " " + strconv.FormatInt(r.ContentLength, 10)
	for {
		m.mu.Lock()
		m.expire(time.Now())
		e := m.byKey[k]
		if e == nil {
			e = &idemEntry{key: k, what: what, at: time.Now(), done: make(chan struct{})}
			e.elem = m.order.PushBack(e)
			m.byKey[k] = e
			m.mu.Unlock()
			m.run(w, r, e, h)
			return
		}
		m.mu.Unlock()
		if e.what != what {
			writeJSON(w, http.StatusBadRequest, &wire.Error{Code: wire.CodeBadRequest,
				Message: "the Idempotency-Key was used for another request; send a new key with every change"})
			return
		}
		select {
		case <-e.done:
		case <-r.Context().Done():
			return
		}
		if e.keep {
			answer(w, e.hdr, e.code, e.body)
			return
		}
		// The first attempt failed in a way worth retrying (it was
		// forgotten): this one runs.
	}
}

// run executes h into a recorder, answers, and keeps or forgets the answer.
func (m *idempotency) run(w http.ResponseWriter, r *http.Request, e *idemEntry, h http.Handler) {
	rec := &recorder{hdr: http.Header{}, code: http.StatusOK}
	finished := false
	defer func() {
		m.mu.Lock()
		// Answers worth retrying for (5xx, 429) are not final, and a
		// large one is not worth the memory; a handler that panicked
		// gave no answer at all.
		e.keep = finished && rec.code < 500 && rec.code != http.StatusTooManyRequests && rec.body.Len() <= idemMaxBody
		if e.keep {
			e.code, e.hdr, e.body = rec.code, rec.hdr, rec.body.Bytes()
		} else {
			m.forget(e)
		}
		close(e.done)
		m.mu.Unlock()
	}()
	h.ServeHTTP(rec, r)
	finished = true
	answer(w, rec.hdr, rec.code, rec.body.Bytes())
}

// answer writes a recorded answer.
func answer(w http.ResponseWriter, hdr http.Header, code int, body []byte) {
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	w.Write(body)
}

// expire drops answers past their time, and the oldest ones until there is
// room for one more within the bound.
func (m *idempotency) expire(now time.Time) {
	for m.order.Len() > 0 {
		e := m.order.Front().Value.(*idemEntry)
		if now.Sub(e.at) < idemTTL && m.order.Len() < idemMax {
			return
		}
		m.forget(e)
	}
}

func (m *idempotency) forget(e *idemEntry) {
	if e.elem == nil {
		return
	}
	m.order.Remove(e.elem)
	e.elem = nil
	if m.byKey[e.key] == e {
		delete(m.byKey, e.key)
	}
}

// recorder is a ResponseWriter that keeps the answer for replaying.
type recorder struct {
	hdr   http.Header
	code  int
	wrote bool
	body  bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.hdr }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
