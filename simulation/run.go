package simulation

import "fmt"

// Run executes one simulation and reports what happened. An error means the
// run itself broke (bad Config, a store that fails to open); broken
// properties are Report.Violations, not errors.
func Run(cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, fmt.Errorf("simulation config: %w", err)
	}
	newDisk := cfg.newDisk
	if newDisk == nil {
		newDisk = newPebbleDisk
	}
	w := newWorld(cfg)
	w.host = newHost(w, newDisk())
	w.load = newWorkload(w)
	if err := w.host.start(); err != nil {
		return Report{}, fmt.Errorf("simulation seed %d: %w", cfg.Seed, err)
	}
	defer w.host.close()
	w.load.start()
	if err := w.run(); err != nil {
		return Report{}, fmt.Errorf("simulation seed %d at %s: %w", cfg.Seed, w.now.Sub(Epoch), err)
	}
	r := w.report
	r.Ops = w.load.issued
	r.Workload.Sessions = len(w.load.sessions)
	r.TraceHash = w.trace.sum()
	r.TraceLines = w.trace.lines
	d := w.now.Sub(Epoch)
	r.VirtualTime, r.VirtualNanos = d.String(), d.Nanoseconds()
	if cfg.KeepTrace {
		r.Trace = w.trace.kept
	}
	return r, nil
}
