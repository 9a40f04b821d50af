package blob_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/blob/blobtest"
)

// BenchmarkPutParallel measures durable Put throughput on the disk under
// the test's temporary directory. "spread" uses random keys, as the server
// does, so concurrent writers rarely share a fan-out directory; "onedir"
// puts every key in one directory, the case group commit is built for. The
// saved-% metric is the share of directory fsyncs group commit avoided.
func BenchmarkPutParallel(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		for _, workers := range []int{1, 8} {
			for _, layout := range []string{"spread", "onedir"} {
				name := fmt.Sprintf("size=%dKiB/goroutines=%d/%s", size>>10, workers, layout)
				b.Run(name, func(b *testing.B) { benchPut(b, size, workers, layout == "onedir") })
			}
		}
	}
}

func benchPut(b *testing.B, size, workers int, oneDir bool) {
	s, err := blob.OpenLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = blobtest.NewKey()
		if oneDir {
			keys[i] = "5a" + keys[i][2:]
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := s.Put(context.Background(), keys[i], data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.DirSyncs)/float64(st.Puts), "dirsyncs/put")
	b.ReportMetric(100*float64(st.Puts-st.DirSyncs)/float64(st.Puts), "saved-%")
}
