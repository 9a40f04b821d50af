package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// TestIdempotencyBounds checks what the memory of answers keeps: final
// answers, at most idemMax of them; not 5xx answers, which a repeat must
// run again, nor anything of a handler that panicked.
func TestIdempotencyBounds(t *testing.T) {
	m := newIdempotency()
	req := httptest.NewRequest(http.MethodPost, "/v1/rename", nil)
	runs := 0
	serve := func(key crypto.ID, code int) int {
		w := httptest.NewRecorder()
		m.serve(w, req, 1, key, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			runs++
			w.WriteHeader(code)
		}))
		return w.Code
	}
	for range idemMax + 100 {
		serve(crypto.NewID(), http.StatusOK)
	}
	if m.order.Len() > idemMax || len(m.byKey) != m.order.Len() {
		t.Fatalf("%d answers listed, %d keyed; the bound is %d", m.order.Len(), len(m.byKey), idemMax)
	}

	k := crypto.NewID()
	runs = 0
	serve(k, http.StatusServiceUnavailable)
	if code := serve(k, http.StatusOK); code != http.StatusOK || runs != 2 {
		t.Fatalf("a repeat after a 503 answered %d after %d runs, want a second run", code, runs)
	}
	if code := serve(k, http.StatusTeapot); code != http.StatusOK || runs != 2 {
		t.Fatalf("a repeat after a 200 answered %d after %d runs, want the 200 replayed", code, runs)
	}

	k = crypto.NewID()
	func() {
		defer func() { recover() }()
		m.serve(httptest.NewRecorder(), req, 1, k, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("handler bug") }))
	}()
	runs = 0
	if code := serve(k, http.StatusCreated); code != http.StatusCreated || runs != 1 {
		t.Fatalf("a repeat after a panic answered %d after %d runs, want a run of its own", code, runs)
	}
}
