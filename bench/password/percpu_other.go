//go:build !linux

package passwordbench

import (
	"runtime"
	"time"

	"github.com/wardhq/ward/edge/password"
)

// MeasurePerCPU cannot pin threads here: it reports one unpinned
// measurement for every CPU.
func MeasurePerCPU(p password.Params, n int) ([]time.Duration, error) {
	t, err := MeasureSingle(p, n)
	if err != nil {
		return nil, err
	}
	times := make([]time.Duration, runtime.NumCPU())
	for i := range times {
		times[i] = t
	}
	return times, nil
}
