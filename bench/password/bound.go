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

// MeasureParallel hashes n times on `workers` goroutines at once through one
// Hasher (MaxConcurrent = workers) and returns hashes per second: what the
// machine sustains when every core hashes, as opposed to the sum of single
// hashes measured alone (PerCPUBound). The two differ when concurrent
// hashes share something, e.g. a last-level cache too small for two 64 MiB
// working sets; their ratio says how much of a load's gap to the bound the
// machine itself accounts for.
func MeasureParallel(p password.Params, workers, n int) (float64, error) {
	h, err := password.New(password.Config{Params: p, MaxConcurrent: workers, MaxQueue: n, QueueTimeout: time.Hour})
	if err != nil {
		return 0, err
	}
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		go func() {
			for range jobs {
				if _, err := h.Hash(context.Background(), "tangerine-oboe-47"); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
