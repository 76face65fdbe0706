package simulation

import (
	"errors"
	"fmt"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
)

// Config is one simulation run. The zero value of every field but Seed
// means "the default"; a negative fault rate turns that fault off.
type Config struct {
	// Seed determines everything: schedule, delays, faults, workload choices
	// and actor entropy. The same Config gives the same Report.
	Seed uint64
	// Ops is how many client requests the workload issues (default 2000).
	Ops int
	// Clients is how many session-owning clients run concurrently (default
	// 8); one admin client (revoke and get on anyone's session) runs beside
	// them.
	Clients int
	// CrashEvery is the mean virtual time between crashes at random instants
	// (exponentially distributed; default 5s; negative: none). Values below
	// MinCrashEvery are refused: the expiry invariant allows TimerSlack for a
	// timer to fire, and a node that is down most of the time cannot meet it.
	CrashEvery time.Duration
	// CrashAfterCommit is the probability that the node crashes right after
	// a step's write is durable and before its replies leave (default 0.01;
	// negative: never). The client then sees no acknowledgement of a write
	// that happened.
	CrashAfterCommit float64
	// SnapshotEvery is how many events an actor writes between snapshots
	// (default 4, small so that snapshots are exercised in short sessions;
	// negative: never).
	SnapshotEvery int
	// Kind is the actor kind under test (default session.Kind). Tests swap in
	// deliberately broken kinds to prove the invariants can fail; the kind
	// must speak the session protocol.
	Kind actors.Kind
	// KeepTrace keeps the trace lines in the Report (for debugging; the hash
	// is always computed).
	KeepTrace bool

	// newDisk overrides the disk (tests only).
	newDisk func() disk
}

// MinCrashEvery bounds Config.CrashEvery from below.
const MinCrashEvery = time.Second

// DefaultOps, DefaultClients and friends are what zero Config fields mean.
const (
	DefaultOps              = 2000
	DefaultClients          = 8
	DefaultCrashEvery       = 5 * time.Second
	DefaultCrashAfterCommit = 0.01
	DefaultSnapshotEvery    = 4
)

func (c Config) withDefaults() (Config, error) {
	if c.Ops == 0 {
		c.Ops = DefaultOps
	}
	if c.Clients == 0 {
		c.Clients = DefaultClients
	}
	if c.CrashEvery == 0 {
		c.CrashEvery = DefaultCrashEvery
	}
	if c.CrashAfterCommit == 0 {
		c.CrashAfterCommit = DefaultCrashAfterCommit
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.Kind.New == nil {
		c.Kind = session.Kind
	}
	switch {
	case c.Ops < 0:
		return c, fmt.Errorf("ops %d is negative", c.Ops)
	case c.Clients < 0:
		return c, fmt.Errorf("clients %d is negative", c.Clients)
	case c.CrashEvery > 0 && c.CrashEvery < MinCrashEvery:
		return c, fmt.Errorf("crash-every %s is below the minimum %s", c.CrashEvery, MinCrashEvery)
	case c.CrashAfterCommit > 1:
		return c, fmt.Errorf("crash-after-commit probability %v exceeds 1", c.CrashAfterCommit)
	case c.Kind.Name == "":
		return c, errors.New("actor kind has no name")
	}
	return c, nil
}

// Report is the outcome of one run. Two runs of the same Config produce
// equal Reports (and equal TraceHash).
type Report struct {
	Seed       uint64 `json:"seed"`
	Ops        int    `json:"ops"`
	Crashes    int    `json:"crashes"`
	Violations int    `json:"violations"`
	// ViolationDetails describes each violation in one line (the first
	// maxViolationDetails of them).
	ViolationDetails []string `json:"violation_details"`
	// TraceHash is the hex SHA-256 of the canonical trace.
	TraceHash  string `json:"trace_hash"`
	TraceLines int    `json:"trace_lines"`
	// VirtualTime is how much virtual time the run took (a Go duration
	// string); VirtualNanos is the same in nanoseconds.
	VirtualTime  string        `json:"virtual_time"`
	VirtualNanos int64         `json:"virtual_time_ns"`
	Workload     WorkloadStats `json:"workload"`
	Host         HostStats     `json:"host"`
	// Trace holds the canonical trace lines when Config.KeepTrace is set.
	Trace []string `json:"trace,omitempty"`
}

// OpStats counts one kind of client request by outcome.
type OpStats struct {
	Sent int `json:"sent"`
	// OK is a success reply, Refused a domain error reply, NoReply a request
	// whose outcome the client never learned (lost to a crash).
	OK      int `json:"ok"`
	Refused int `json:"refused"`
	NoReply int `json:"no_reply"`
}

// WorkloadStats counts client requests per kind. RotateStale presents a
// superseded secret and RotateForged a random one; both must be refused.
type WorkloadStats struct {
	Create       OpStats `json:"create"`
	Rotate       OpStats `json:"rotate"`
	RotateStale  OpStats `json:"rotate_stale"`
	RotateForged OpStats `json:"rotate_forged"`
	Touch        OpStats `json:"touch"`
	Get          OpStats `json:"get"`
	Revoke       OpStats `json:"revoke"`
	// Probe is the final get of every session after the drain; it is not
	// part of Ops.
	Probe OpStats `json:"probe"`
	// Sessions is how many distinct sessions the clients tried to create.
	Sessions int `json:"sessions"`
}

// HostStats counts what the simulated host did.
type HostStats struct {
	Steps       int `json:"steps"`
	Commits     int `json:"commits"`
	Snapshots   int `json:"snapshots"`
	Activations int `json:"activations"`
	// Passivations counts idle passivations, ForcedPassivations the ones
	// injected at random to compare in-memory state with the store.
	Passivations       int `json:"passivations"`
	ForcedPassivations int `json:"forced_passivations"`
	TimersFired        int `json:"timers_fired"`
	// Expiries counts committed SessionExpired events.
	Expiries     int `json:"expiries"`
	Publications int `json:"publications"`
	// CrashesAfterCommit counts crashes between a durable commit and its
	// replies; DroppedMessages counts messages that reached a down node or
	// died in a crashed node's mailbox.
	CrashesAfterCommit int `json:"crashes_after_commit"`
	DroppedMessages    int `json:"dropped_messages"`
}

// maxViolationDetails bounds Report.ViolationDetails: a broken actor can
// violate on every step, and the count says enough beyond this.
const maxViolationDetails = 100
