package persistence

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// BenchmarkCommitParallel64: 64 actors, each committing one event per Commit
// in a closed loop, on a real temporary directory with a synced WAL. b.N is
// the total number of commits.
//
//	go test -run x -bench CommitParallel -benchtime 3s ./persistence/
func BenchmarkCommitParallel64(b *testing.B) {
	benchCommitParallel(b, 64, Options{})
}

func BenchmarkCommitParallel64NoWindow(b *testing.B) {
	benchCommitParallel(b, 64, Options{GroupCommitWindow: -1})
}

func BenchmarkCommitSerial(b *testing.B) {
	benchCommitParallel(b, 1, Options{})
}

func benchCommitParallel(b *testing.B, actors int, opts Options) {
	dir := b.TempDir()
	if d := os.Getenv("WARD_BENCH_DIR"); d != "" {
		dir = d + "/" + b.Name()
		defer os.RemoveAll(dir)
	}
	s, err := Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	var next atomic.Int64
	lats := make([][]time.Duration, actors)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range actors {
		wg.Go(func() {
			a := ActorKey{Kind: "bench", ID: fmt.Sprint(g)}
			var mine []time.Duration
			for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
				t0 := time.Now()
				if err := s.Commit(context.Background(), events(a, seq, seq)); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			lats[g] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(lats...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(float64(len(all)-1)*p)].Microseconds()) }
	st := s.Stats()
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(st.Writes)/float64(max(st.Batches, 1)), "writes/batch")
	var m dto.Metric
	if err := s.metrics.syncLat.Write(&m); err == nil && m.GetHistogram().GetSampleCount() > 0 {
		h := m.GetHistogram()
		b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount())*1e6, "sync-µs")
	}
	b.ReportMetric(0, "ns/op")
}
