package netbatch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/tlscert"
)

// counting counts the writes that reach the socket.
type counting struct {
	net.Conn
	writes *atomic.Int64
}

func (c counting) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return counting{c, l.writes}, nil
}

// testCert is the server's certificate: the self-signed kind `sealfs
// serve` makes for itself.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	certFile, keyFile, _, err := tlscert.EnsureSelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// clientTo dials a TLS echo-less sink on loopback that hands everything it
// reads to got; it returns the client's socket write count.
func clientTo(t *testing.T, batched bool) (io.Writer, func() []byte, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cert := testCert(t)
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}))
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	cfg := &tls.Config{InsecureSkipVerify: true}
	var w io.WriteCloser
	if batched {
		tc, err := Client(context.Background(), counting{raw, writes}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		w = tc
	} else {
		tc := tls.Client(counting{raw, writes}, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		w = tc
	}
	t.Cleanup(func() { w.Close() })
	writes.Store(0)
	return w, func() []byte { w.Close(); return <-got }, writes
}

// TestTLSConnBatchesRecords checks that a 1 MiB write crosses in a few
// socket writes, intact, where plain TLS takes one per record.
func TestTLSConnBatchesRecords(t *testing.T) {
	data := random(t, 1<<20)
	for _, batched := range []bool{false, true} {
		w, done, writes := clientTo(t, batched)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		n := writes.Load()
		if got := done(); !bytes.Equal(got, data) {
			t.Fatalf("batched=%v: peer got %d bytes, not the %d sent", batched, len(got), len(data))
		}
		t.Logf("batched=%v: %d socket writes for 1 MiB", batched, n)
		switch {
		case batched && n > int64(len(data)/BufferSize)+1:
			t.Errorf("batched: %d socket writes for 1 MiB, want at most %d", n, len(data)/BufferSize+1)
		case !batched && n < 64:
			t.Errorf("plain TLS took %d socket writes for 1 MiB; the comparison assumes one per 16 KiB record", n)
		}
	}
}

// TestTLSConnReadFrom checks the path net/http takes for a request body:
// io.Copy from a reader that hides WriterTo.
func TestTLSConnReadFrom(t *testing.T) {
	data := random(t, 3<<20+12345)
	w, done, writes := clientTo(t, true)
	n, err := io.Copy(w, io.LimitReader(bytes.NewReader(data), int64(len(data))))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("copied %d, %v", n, err)
	}
	sent := writes.Load()
	if got := done(); !bytes.Equal(got, data) {
		t.Fatalf("peer got %d bytes, not the %d sent", len(got), len(data))
	}
	if want := int64(len(data)/BufferSize) + 2; sent > want {
		t.Errorf("%d socket writes for %d bytes, want at most %d", sent, len(data), want)
	}
}

// TestServerAnswerBatched runs an HTTPS server as cmd/sealfs does, with a
// handler that batches its answer, and checks the answer and its writes.
func TestServerAnswerBatched(t *testing.T) {
	data := random(t, 1<<20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	var sent atomic.Int64 // socket writes of the answer
	var sawConn atomic.Bool
	hs := &http.Server{
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{testCert(t)}},
		ConnContext: ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b := FromContext(r.Context())
			sawConn.Store(b != nil)
			if b == nil {
				http.Error(w, "no batch conn", 500)
				return
			}
			b.Begin()
			defer func() {
				if err := b.End(); err != nil {
					t.Error(err)
				}
				sent.Store(writes.Load())
			}()
			writes.Store(0)
			w.Write(data)
			http.NewResponseController(w).Flush()
		}),
	}
	go hs.ServeTLS(Listener(countingListener{ln, writes}), "", "")
	t.Cleanup(func() { hs.Close() })
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !sawConn.Load() {
		t.Fatal("the handler found no Conn in its context")
	}
	if !bytes.Equal(body, data) {
		t.Fatalf("got %d bytes, not the %d sent", len(body), len(data))
	}
	// One more than the payload needs: the server's background read of
	// the connection may send what the batch holds when it starts.
	if n, want := sent.Load(), int64(len(data)/BufferSize)+2; n > want {
		t.Errorf("%d socket writes for a 1 MiB answer, want at most %d", n, want)
	}
}

// TestNestedBatchSendsAtOutermostEnd checks that only the outermost End
// sends, and that nothing is held outside a batch.
func TestNestedBatchSendsAtOutermostEnd(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	writes := new(atomic.Int64)
	c := New(counting{a, writes})
	got := make(chan []byte, 1)
	go func() { p, _ := io.ReadAll(b); got <- p }()

	c.Begin()
	c.Begin()
	c.Write([]byte("one "))
	if err := c.End(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("two "))
	if n := writes.Load(); n != 0 {
		t.Fatalf("%d writes reached the socket inside a batch", n)
	}
	if err := c.End(); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load(); n != 1 {
		t.Fatalf("the outermost End made %d socket writes, want 1", n)
	}
	c.Write([]byte("three"))
	if n := writes.Load(); n != 2 {
		t.Fatalf("a write outside a batch was held (%d socket writes, want 2)", n)
	}
	c.Close()
	if p := <-got; string(p) != "one two three" {
		t.Fatalf("peer got %q", p)
	}
}

// TestReadSendsHeldBytes checks that a read does not wait for an answer to
// bytes the batch still holds.
func TestReadSendsHeldBytes(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		p := make([]byte, 4)
		if _, err := io.ReadFull(b, p); err == nil && string(p) == "ping" {
			b.Write([]byte("pong"))
		}
	}()
	c := New(a)
	c.Begin()
	defer c.End()
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p := make([]byte, 4)
	if _, err := io.ReadFull(c, p); err != nil || string(p) != "pong" {
		t.Fatalf("read %q, %v: the held ping was not sent", p, err)
	}
}

// failing accepts n writes and then fails.
type failing struct {
	net.Conn
	n int
}

var errBroken = errors.New("broken pipe")

func (f *failing) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errBroken
	}
	f.n--
	return len(p), nil
}

// TestFailedSendReportedByEnd checks that bytes a batch accepted and then
// failed to send make End fail, and that the failure sticks until then.
func TestFailedSendReportedByEnd(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(&failing{Conn: a, n: 1})
	c.Begin()
	big := make([]byte, BufferSize)
	if _, err := c.Write(big); err != nil {
		t.Fatalf("a gathered write failed: %v", err)
	}
	if _, err := c.Write(big); err != nil { // sends the first: accepted
		t.Fatalf("first send: %v", err)
	}
	if err := c.End(); !errors.Is(err, errBroken) {
		t.Fatalf("End = %v, want the failed send's error", err)
	}

	c = New(&failing{Conn: a, n: 0})
	c.Begin()
	c.Write([]byte("x"))
	if _, err := c.Write(make([]byte, 2*BufferSize)); !errors.Is(err, errBroken) {
		t.Fatalf("write that had to send = %v, want the failure", err)
	}
	if _, err := c.Write([]byte("y")); !errors.Is(err, errBroken) {
		t.Fatalf("write after a failure = %v, want the failure again", err)
	}
	if err := c.End(); !errors.Is(err, errBroken) {
		t.Fatalf("End = %v, want the failure", err)
	}
}
