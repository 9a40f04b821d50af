package server_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
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
// of plaintext, 1 MiB + 448 bytes sealed) over real HTTPS/2 into a real
// 'sealfs serve' subprocess, from 1 and from 8 concurrent uploaders (on 1 and
// 4 connections, like remote.DefaultConnections). Every PUT has a fresh chunk
// ID, so every one is verified, sealed at rest, written durably and
// recorded. The body is random bytes with a valid transfer MAC: the server
// checks only the MAC, so the client skips AEAD sealing.
//
// server-cpu-s/GB is the server process's own CPU time (user + system, from
// /proc/PID/stat) per GB ingested; the client's work is not in it.
func BenchmarkChunkIngest(b *testing.B) {
	bin := buildSealfs(b)
	for _, uploaders := range []int{1, 8} {
		b.Run(fmt.Sprintf("uploaders=%d", uploaders), func(b *testing.B) {
			p, c := serveAccount(b, bin)
			body := crypto.RandomBytes(crypto.DefaultLayout.MaxSealedChunkSize())
			file := crypto.NewID()
			// Warm up the connection and the server's MAC cache.
			warm := sealedChunk{ref: crypto.ChunkRef{File: file, ID: crypto.NewID()}, body: body}
			warm.mac = c.a.mac.Sum(warm.ref, body)
			c.putChunk(warm).want(b, 201, nil)

			conns := []*client{c}
			for len(conns) < min(uploaders, 4) {
				d := newClient(b, c.base, p.fp, "")
				d.a, d.token = c.a, c.token
				conns = append(conns, d)
			}

			b.SetBytes(int64(len(body)))
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu0 := procCPU(b, p.cmd.Process.Pid)
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
			cpu := procCPU(b, p.cmd.Process.Pid) - cpu0
			gb := float64(b.N) * float64(len(body)) / 1e9
			b.ReportMetric(cpu.Seconds()/gb, "server-cpu-s/GB")
		})
	}
}

// procCPU is a process's user plus system CPU time so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; fields after it are
	// separated by single spaces.
	rest := string(raw[bytes.LastIndexByte(raw, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
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

// BenchmarkSmallFiles creates new files of 10 KiB in the root of a real
// 'sealfs serve' subprocess, one after the other, each with one POST
// /v1/small (entry, chunk and manifest in one request, as the client writes
// a small file): what unpacking a source tree costs the server per file.
// Sealing, names and MACs are done before the timer starts.
//
// server-cpu-ms/file is the server process's CPU time per file. When perf
// can count the server's syscall tracepoints, fsyncs/file counts fsync and
// fdatasync calls and renames/file the blob files created.
func BenchmarkSmallFiles(b *testing.B) {
	const size = 10 << 10
	p, c := serveAccount(b, buildSealfs(b))
	n := 0
	prepare := func() []byte {
		n++
		f := crypto.NewID()
		chunks, commit := c.a.seal(b, f, 1, crypto.RandomBytes(size))
		x, sealed := c.a.name(b, rootID, f, fmt.Sprintf("file-%d.c", n))
		hdr := &wire.SmallHeader{Parent: wire.HexID(rootID), File: wire.HexID(f),
			Create: &wire.CreateRequest{Index: x, SealedName: sealed,
				Inode: wire.NewInode{ID: wire.HexID(f), Type: wire.TypeFile, Attr: commit.Attr}},
			Chunk: &wire.SmallChunk{ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}, Commit: *commit}
		return smallBody(hdr, chunks[0].body)
	}
	post := func(body []byte) {
		if r := c.raw("POST", "/v1/small", body, "Content-Type", wire.ContentTypeSmall); r.err != nil || r.status != 201 {
			b.Fatalf("POST /v1/small: %v", r)
		}
	}
	post(prepare()) // warm up the connection and the server's caches
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = prepare()
	}
	counts := startSyscallCount(b, p.cmd.Process.Pid)
	cpu0 := procCPU(b, p.cmd.Process.Pid)
	b.ResetTimer()
	for _, body := range bodies {
		post(body)
	}
	b.StopTimer()
	cpu := procCPU(b, p.cmd.Process.Pid) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
	b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "server-cpu-ms/file")
	if got := counts(); got != nil {
		b.ReportMetric(float64(got["fsync"]+got["fdatasync"])/float64(b.N), "fsyncs/file")
		b.ReportMetric(float64(got["rename"]+got["renameat"]+got["renameat2"])/float64(b.N), "renames/file")
	}
}

// startSyscallCount counts some syscalls of process pid with 'perf stat'
// until the returned func is called, which returns the counts by syscall
// name, or nil if perf is missing or not permitted to count.
func startSyscallCount(b *testing.B, pid int) func() map[string]int64 {
	names := []string{"fsync", "fdatasync", "rename", "renameat", "renameat2"}
	var events []string
	for _, n := range names {
		events = append(events, "syscalls:sys_enter_"+n)
	}
	out := filepath.Join(b.TempDir(), "perf.csv")
	cmd := exec.Command("perf", "stat", "-x", ",", "-o", out, "-e", strings.Join(events, ","), "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return func() map[string]int64 { return nil }
	}
	time.Sleep(300 * time.Millisecond) // let perf attach
	return func() map[string]int64 {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		raw, err := os.ReadFile(out)
		if err != nil {
			return nil
		}
		got := map[string]int64{}
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 || !strings.HasPrefix(f[2], "syscalls:sys_enter_") {
				continue
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return nil // "<not counted>" or "<not supported>"
			}
			got[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] = v
		}
		if len(got) != len(names) {
			return nil
		}
		return got
	}
}

// serveAccount starts a 'sealfs serve' process in a new data directory and
// returns it with a client logged in to a new account on it.
func serveAccount(b *testing.B, bin string) (*serveProc, *client) {
	dir := b.TempDir()
	addr := freeAddr(b)
	p := startServe(b, bin, dir, addr)
	inv, err := exec.Command(bin, "server", "invite", "--data", dir, "bench").Output()
	if err != nil {
		b.Fatalf("sealfs server invite: %v", err)
	}
	c := newClient(b, "https://"+addr, p.fp, "")
	c.registerAndLogin(b, strings.TrimSpace(string(inv)), "bench", crypto.DefaultLayout)
	return p, c
}
