package partition

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit3Replicas64Actors measures commits through one partition
// leader with 3 in-process replicas (in-memory transport, a pebble store per
// replica on disk in a temp dir) and 64 actors committing concurrently, each
// one event per commit in a closed loop. Reports commits/s, p50/p99 commit
// latency and writes per log entry.
func BenchmarkCommit3Replicas64Actors(b *testing.B) {
	for _, inflight := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) { benchCommit(b, inflight) })
	}
}

func benchCommit(b *testing.B, inflight int) {
	const actors = 64
	c := newClusterInflight(b, 3, LANConfig, inflight)
	l := c.leader(10 * time.Second)
	st0, _ := l.p.Stats()
	var next atomic.Int64
	lat := make([][]time.Duration, actors)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := actor(i)
			for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
				t0 := time.Now()
				if err := l.p.Commit(bg, write(a, seq, seq)); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	st, _ := l.p.Stats()
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	if e := st.Entries - st0.Entries; e > 0 {
		b.ReportMetric(float64(st.Writes-st0.Writes)/float64(e), "writes/entry")
	}
}
