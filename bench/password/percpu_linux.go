package passwordbench

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wardhq/ward/edge/password"
)

// MeasurePerCPU measures the median single-hash time (n hashes) on each CPU
// the process may run on, one CPU at a time, by pinning every thread of the
// process to it (x/crypto's argon2 hashes its lane on a goroutine of its
// own, so pinning the calling thread would not do). The vCPUs of a virtual
// machine need not be equally fast (on the machine of bench/RESULTS.md one
// hashes 1.5× slower than the other), and then cores / (one unpinned
// measurement) over- or understates the bound depending on where that
// measurement ran.
func MeasurePerCPU(p password.Params, n int) ([]time.Duration, error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	defer pinProcess(&all)
	var times []time.Duration
	for cpu := range 1024 {
		if !all.IsSet(cpu) {
			continue
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := pinProcess(&one); err != nil {
			return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
		t, err := MeasureSingle(p, n)
		if err != nil {
			return nil, err
		}
		times = append(times, t)
	}
	return times, nil
}

// pinProcess sets the affinity of every thread of the process.
func pinProcess(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may exit between the listing and the call.
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}
