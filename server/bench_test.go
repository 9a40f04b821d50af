package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/server"
)

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChunkIngest PUTs full sealed chunks of the default layout (1 MiB
// of plaintext, 1 MiB + 448 bytes sealed) over real HTTPS/2 into the real
// stores, from 1 and from 8 concurrent uploaders (on 1 and 4 connections). Every PUT has a fresh
// chunk ID, so every one is verified, sealed at rest, written durably and
// recorded. The body is random bytes with a valid transfer MAC: the server
// checks only the MAC, so the client skips AEAD sealing and its CPU use is
// TLS and one HMAC per chunk.
//
// cpu-s/GB is the whole process's CPU time (user + system, from getrusage)
// per GB ingested. Client and server share the process, so it is an upper
// bound on the server's cost.
func BenchmarkChunkIngest(b *testing.B) {
	for _, uploaders := range []int{1, 8} {
		b.Run(fmt.Sprintf("uploaders=%d", uploaders), func(b *testing.B) {
			e := newEnv(b, server.Config{UploadsPerAccount: 64})
			c := e.registerWith("bench", 0, crypto.DefaultLayout)
			body := crypto.RandomBytes(crypto.DefaultLayout.MaxSealedChunkSize())
			file := crypto.NewID()
			// Warm up the connection and the server's MAC cache.
			warm := sealedChunk{ref: crypto.ChunkRef{File: file, ID: crypto.NewID()}, body: body}
			warm.mac = c.a.mac.Sum(warm.ref, body)
			c.putChunk(warm).want(b, 201, nil)

			// Like the real client (remote.DefaultConnections), spread
			// the uploaders over up to four HTTPS connections.
			conns := []*client{c}
			for len(conns) < min(uploaders, 4) {
				d := newClient(b, c.base, e.fp, "")
				d.a, d.token = c.a, c.token
				conns = append(conns, d)
			}

			b.SetBytes(int64(len(body)))
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for w := range uploaders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := conns[w%len(conns)]
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						ch := sealedChunk{ref: crypto.ChunkRef{File: file, Index: uint64(i), ID: crypto.NewID()}, body: body}
						ch.mac = c.a.mac.Sum(ch.ref, body)
						if r := c.putChunk(ch); r.err != nil || r.status != 201 {
							b.Errorf("uploader %d: PUT: %v", w, r)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			cpu := cpuTime(b) - cpu0
			gb := float64(b.N) * float64(len(body)) / 1e9
			b.ReportMetric(cpu.Seconds()/gb, "cpu-s/GB")
		})
	}
}

// BenchmarkRawDiskWrite writes and fsyncs 1 MiB files on the file system of
// the test's temporary directories, with 1 and 8 writers: what the disk
// gives without TLS, MAC, at-rest sealing, directory syncs or the database,
// and what the kernel's write path alone costs in CPU.
func BenchmarkRawDiskWrite(b *testing.B) {
	data := crypto.RandomBytes(1 << 20)
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(data)))
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
						if err == nil {
							_, err = f.Write(data)
							if err == nil {
								err = f.Sync()
							}
							if cerr := f.Close(); err == nil {
								err = cerr
							}
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric((cpuTime(b)-cpu0).Seconds()/(float64(b.N)*float64(len(data))/1e9), "cpu-s/GB")
		})
	}
}
