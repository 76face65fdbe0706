// Package passwordbench measures argon2id password hashing as the edge does
// it (edge/password's Hasher with admission control) against the physical
// bound: no node can hash faster than cores / (one hash's time) — on CPUs of
// unequal speed, the sum of each one's 1 / (one hash's time) — so the
// issue's target (login throughput within 90% of that bound, p50 under
// 100 ms) is judged against a bound measured in the same run.
package passwordbench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wardhq/ward/edge/password"
)

// MeasureSingle hashes n times in sequence on one goroutine with params p
// and returns the median time of one hash.
func MeasureSingle(p password.Params, n int) (time.Duration, error) {
	h, err := password.New(password.Config{Params: p, MaxConcurrent: 1})
	if err != nil {
		return 0, err
	}
	times := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := h.Hash(context.Background(), "tangerine-oboe-47"); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
	}
	return Percentile(times, 0.5), nil
}

// Percentile returns the q-quantile (0..1) of d by nearest rank; it sorts d.
func Percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q*float64(len(d))+0.5) - 1
	return d[max(0, min(i, len(d)-1))]
}

// PerCPUBound is the largest hashes/s CPUs with the given single-hash times
// can sustain together: the sum of each one's rate; with equal times,
// cores / (one hash's time).
func PerCPUBound(times []time.Duration) float64 {
	var sum float64
	for _, t := range times {
		if t > 0 {
			sum += 1 / t.Seconds()
		}
	}
	return sum
}

// ReportPerCPU reports the fastest and slowest CPU's single-hash time.
func ReportPerCPU(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	b.ReportMetric(float64(slices.Min(times).Microseconds())/1000, "fast-cpu-hash-ms")
	b.ReportMetric(float64(slices.Max(times).Microseconds())/1000, "slow-cpu-hash-ms")
}
