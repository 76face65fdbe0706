package simulation

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSoak runs many seeds under harsher settings than the default test
// (about 100 s here). It is opt-in: WARD_SIM_SOAK=1 go test -run TestSoak.
func TestSoak(t *testing.T) {
	if os.Getenv("WARD_SIM_SOAK") == "" {
		t.Skip("set WARD_SIM_SOAK=1 to run")
	}
	variants := []struct {
		seeds uint64
		cfg   Config
	}{
		{400, Config{Ops: 250}},
		{40, Config{Ops: 2000}},
		{60, Config{Ops: 600, Clients: 1}},
		{60, Config{Ops: 1500, Clients: 32}},
		{60, Config{Ops: 600, CrashEvery: MinCrashEvery}},
		{60, Config{Ops: 600, CrashAfterCommit: 0.2}},
		{60, Config{Ops: 600, SnapshotEvery: 1}},
		{60, Config{Ops: 600, SnapshotEvery: -1}},
	}
	for _, v := range variants {
		c := v.cfg
		t.Run(fmt.Sprintf("ops=%d,clients=%d,crash-every=%s,after-commit=%v,snapshot-every=%d",
			c.Ops, c.Clients, c.CrashEvery, c.CrashAfterCommit, c.SnapshotEvery), func(t *testing.T) {
			start, crashes := time.Now(), 0
			for seed := uint64(1); seed <= v.seeds; seed++ {
				c.Seed = seed
				r := run(t, c)
				crashes += r.Crashes
				if r.Violations > 0 {
					t.Errorf("seed %d: %d violations:\n  %s", seed, r.Violations, strings.Join(r.ViolationDetails, "\n  "))
				}
			}
			t.Logf("%d seeds, %d crashes, %s", v.seeds, crashes, time.Since(start).Round(time.Millisecond))
		})
	}
}
