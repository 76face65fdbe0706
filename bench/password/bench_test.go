//go:build unix

package passwordbench

import (
	"context"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardhq/ward/edge/password"
)

// Run: go test ./bench/password -run '^$' -bench . -benchtime 20x
//
// BenchmarkHashSingle: one goroutine, the single-hash time.
// BenchmarkHashParallel: NumCPU goroutines through one Hasher with
// MaxConcurrent = NumCPU, reporting hashes/s, p50/p99 latency (queueing
// included), the bound measured just before (the sum over CPUs of 1 / that
// CPU's single-hash time; cores / single-hash time on equal CPUs), and the
// fraction of it reached.

func BenchmarkHashSingle(b *testing.B) {
	h, err := password.New(password.Config{Params: password.DefaultParams(), MaxConcurrent: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := h.Hash(context.Background(), "tangerine-oboe-47"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "hashes/s")
	reportRSS(b)
}

func BenchmarkHashParallel(b *testing.B) {
	cores := runtime.NumCPU()
	perCPU, err := MeasurePerCPU(password.DefaultParams(), 3)
	if err != nil {
		b.Fatal(err)
	}
	bound := PerCPUBound(perCPU)

	h, err := password.New(password.Config{
		Params:        password.DefaultParams(),
		MaxConcurrent: cores,
		MaxQueue:      1 << 16,
		QueueTimeout:  time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	b.SetParallelism(1) // GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if _, err := h.Hash(context.Background(), "tangerine-oboe-47"); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()

	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "hashes/s")
	b.ReportMetric(bound, "bound-hashes/s")
	b.ReportMetric(100*rate/bound, "%-of-bound")
	ReportPerCPU(b, perCPU)
	b.ReportMetric(float64(Percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(Percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cores), "cores")
	reportRSS(b)
}

// reportRSS reports the process's peak resident set size, the figure
// admission control bounds (about MaxConcurrent × m plus the runtime).
func reportRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB") // Maxrss is in KiB on Linux
	}
}
