package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardhq/ward/simulation"
)

func init() { subcommands = append(subcommands, newSimCommand()) }

func newSimCommand() *cobra.Command {
	var (
		cfg    simulation.Config
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the deterministic simulation for one seed and check its invariants",
		Long: `sim runs the session actor and the real storage engine under a seeded scheduler
on virtual time, with crashes and message delays, and checks what clients were
acknowledged against a reference model. The same seed always produces the same
trace_hash. The exit status is non-zero when any invariant was violated.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := simulation.Run(cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				if err := enc.Encode(r); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			} else if err := summarize(out, r); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			if r.Violations > 0 {
				return fmt.Errorf("seed %d: %d invariant violations", r.Seed, r.Violations)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed that determines the whole run")
	f.IntVar(&cfg.Ops, "ops", simulation.DefaultOps, "client requests to issue")
	f.IntVar(&cfg.Clients, "clients", simulation.DefaultClients, "concurrent session-owning clients")
	f.DurationVar(&cfg.CrashEvery, "crash-every", simulation.DefaultCrashEvery, "mean virtual time between random crashes (negative: none)")
	f.Float64Var(&cfg.CrashAfterCommit, "crash-after-commit", simulation.DefaultCrashAfterCommit, "probability of a crash between a durable commit and its replies (negative: never)")
	f.BoolVar(&cfg.KeepTrace, "trace", false, "include the canonical trace lines in the report")
	f.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	return cmd
}

// summarize prints the report for a person.
func summarize(w io.Writer, r simulation.Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d ops, %d crashes, %d violations, %s virtual time\n",
		r.Seed, r.Ops, r.Crashes, r.Violations, time.Duration(r.VirtualNanos))
	fmt.Fprintf(&b, "trace %s (%d lines)\n", r.TraceHash, r.TraceLines)
	ops := []struct {
		name string
		s    simulation.OpStats
	}{
		{"create", r.Workload.Create}, {"rotate", r.Workload.Rotate},
		{"rotate (stale secret)", r.Workload.RotateStale}, {"rotate (forged secret)", r.Workload.RotateForged},
		{"touch", r.Workload.Touch}, {"get", r.Workload.Get}, {"revoke", r.Workload.Revoke},
		{"final probe", r.Workload.Probe},
	}
	for _, o := range ops {
		fmt.Fprintf(&b, "  %-23s sent %5d  ok %5d  refused %5d  no reply %4d\n", o.name, o.s.Sent, o.s.OK, o.s.Refused, o.s.NoReply)
	}
	h := r.Host
	fmt.Fprintf(&b, "host: %d steps, %d commits, %d snapshots, %d activations, %d+%d passivations (idle+forced)\n",
		h.Steps, h.Commits, h.Snapshots, h.Activations, h.Passivations, h.ForcedPassivations)
	fmt.Fprintf(&b, "      %d timers fired, %d expiries, %d crashes between commit and reply, %d messages lost\n",
		h.TimersFired, h.Expiries, h.CrashesAfterCommit, h.DroppedMessages)
	for _, d := range r.ViolationDetails {
		fmt.Fprintf(&b, "VIOLATION %s\n", d)
	}
	if n := r.Violations - len(r.ViolationDetails); n > 0 {
		fmt.Fprintf(&b, "... and %d more violations\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
