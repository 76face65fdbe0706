// Package passwordbench measures argon2id password hashing as the edge does
// it (edge/password's Hasher with admission control) against the physical
// bound: no node can hash faster than cores / (one hash's time), so the
// issue's target — login throughput within 90% of that bound, p50 under
// 100 ms — is judged against a bound measured in the same run.
package passwordbench

import (
	"context"
	"slices"
	"time"

	"github.com/wardhq/ward/edge/password"
)

// HashBound is the largest hashes/s cores cores can sustain when one hash
// takes single on one core.
func HashBound(cores int, single time.Duration) float64 {
	if single <= 0 {
		return 0
	}
	return float64(cores) / single.Seconds()
}

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
