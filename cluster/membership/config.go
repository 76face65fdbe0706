package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Timing holds memberlist's failure-detector and dissemination knobs. They are
// exposed because they trade detection speed against false positives, and a
// false positive is expensive here: protoactor block-lists a member that left
// the topology for good, so a node wrongly declared dead must restart with a
// new actor system ID. Suspicion (not probing) is what protects against that,
// so the presets keep SuspicionMult at 4 (one slow ack is never enough).
type Timing struct {
	// ProbeInterval is how often this node pings one other member.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct ping may take before indirect pings
	// through IndirectChecks other members are tried.
	ProbeTimeout   time.Duration
	IndirectChecks int
	// SuspicionMult scales how long a suspected member has to refute before
	// it is declared dead: SuspicionMult * max(1, log10(n)) * ProbeInterval.
	// SuspicionMaxTimeoutMult is the multiple of that used while no other
	// member has confirmed the suspicion.
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier bounds how far a node that misses its own acks
	// (an overloaded node) slows its probing, so that it stops accusing others.
	AwarenessMaxMultiplier int
	// GossipInterval and GossipNodes drive piggy-backed dissemination of
	// joins, suspicions and deaths; RetransmitMult * log(n+1) is how often
	// each message is retransmitted.
	GossipInterval      time.Duration
	GossipNodes         int
	RetransmitMult      int
	GossipToTheDeadTime time.Duration
	// PushPullInterval is the period of full-state TCP syncs, which repair
	// anything gossip lost (and merge partitions that healed).
	PushPullInterval time.Duration
	// TCPTimeout bounds one TCP exchange (join, push/pull, fallback ping).
	TCPTimeout time.Duration
}

// LANTiming is the default: a data-centre or office LAN with sub-millisecond
// RTTs. A silent member of a 3-node cluster is declared dead within about
// 4.5 s (FailureDetectionBound; typically 2.5–3 s), faster than memberlist's
// own LAN preset (1 s probes) because Ward's partition placement waits on this
// signal, yet with 250 ms of probe slack against GC pauses.
func LANTiming() Timing {
	return Timing{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            250 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 4,
		AwarenessMaxMultiplier:  8,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          4,
		GossipToTheDeadTime:     15 * time.Second,
		PushPullInterval:        15 * time.Second,
		TCPTimeout:              2 * time.Second,
	}
}

// LocalTiming is for nodes on one machine (loopback, tests, `ward dev`):
// everything is faster, and a silent member of a 3-node cluster is declared
// dead within about 1.9 s (FailureDetectionBound). The probe timeout stays at 100 ms (not memberlist's
// 200 ms local preset, nor lower) because tests run under the race detector
// on two cores, where a few tens of milliseconds of scheduling delay happen.
func LocalTiming() Timing {
	return Timing{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		IndirectChecks:          1,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 3,
		AwarenessMaxMultiplier:  4,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          3,
		GossipToTheDeadTime:     5 * time.Second,
		PushPullInterval:        5 * time.Second,
		TCPTimeout:              time.Second,
	}
}

// FailureDetectionBound estimates the longest a member of an n-member cluster
// that went silent (crash, kill -9, cable) stays listed as alive by the
// others: up to two probe rounds before someone pings it (memberlist probes
// one member per interval in a shuffled order), the probe timeout, the longest
// suspicion timeout (no confirmations), and a few gossip intervals to spread
// the verdict. It ignores awareness back-off, which only slows a node that is
// itself unhealthy. Tests and operators use it as the expected upper bound.
func (t Timing) FailureDetectionBound(n int) time.Duration {
	if n < 2 {
		n = 2
	}
	probing := time.Duration(2*(n-1)) * t.ProbeInterval
	// Same formulas as memberlist's suspectNode: the suspicion lasts its
	// minimum when the cluster is too small to expect SuspicionMult-2
	// confirmations, else up to the maximum (shrinking as confirmations come).
	scale := math.Max(1, math.Log10(float64(n)))
	suspicion := time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
	if k := t.SuspicionMult - 2; k > 0 && n-2 >= k {
		suspicion *= time.Duration(t.SuspicionMaxTimeoutMult)
	}
	return probing + t.ProbeTimeout + suspicion + 3*t.GossipInterval
}

func (t Timing) validate() error {
	switch {
	case t.ProbeInterval <= 0 || t.ProbeTimeout <= 0 || t.GossipInterval <= 0 ||
		t.PushPullInterval <= 0 || t.TCPTimeout <= 0 || t.GossipToTheDeadTime <= 0:
		return errors.New("all Timing durations must be positive")
	case t.ProbeTimeout >= t.ProbeInterval:
		// memberlist would start the next probe before the last one ended.
		return fmt.Errorf("ProbeTimeout %v must be below ProbeInterval %v", t.ProbeTimeout, t.ProbeInterval)
	case t.SuspicionMult < 1 || t.SuspicionMaxTimeoutMult < 1:
		return errors.New("SuspicionMult and SuspicionMaxTimeoutMult must be at least 1")
	case t.IndirectChecks < 0 || t.GossipNodes < 1 || t.RetransmitMult < 1 || t.AwarenessMaxMultiplier < 1:
		return errors.New("IndirectChecks must be >= 0; GossipNodes, RetransmitMult and AwarenessMaxMultiplier >= 1")
	}
	return nil
}

func (t Timing) apply(c *memberlist.Config) {
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.IndirectChecks = t.IndirectChecks
	c.SuspicionMult = t.SuspicionMult
	c.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	c.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	c.GossipInterval = t.GossipInterval
	c.GossipNodes = t.GossipNodes
	c.RetransmitMult = t.RetransmitMult
	c.GossipToTheDeadTime = t.GossipToTheDeadTime
	c.PushPullInterval = t.PushPullInterval
	c.TCPTimeout = t.TCPTimeout
}

// Defaults for Config.
const (
	DefaultDebounce          = 75 * time.Millisecond
	DefaultJoinRetryInterval = 2 * time.Second
	DefaultLeaveTimeout      = 2 * time.Second
	DefaultDeadRetention     = 5 * time.Minute
	// DefaultUnreachableRetention outlasts any partition an operator would
	// wait out rather than restart the cut-off nodes.
	DefaultUnreachableRetention = 24 * time.Hour
	// SecretKeySize is the only gossip key size accepted (AES-256-GCM);
	// memberlist would also take 16 or 24 bytes, Ward standardises on one.
	SecretKeySize = 32
)

// Config configures a Provider. BindAddr is required.
type Config struct {
	// NodeName is the operator-facing, stable name of the node ("ward-1").
	// It is not the member ID: that is the actor system ID, which changes
	// on every restart (see Provider).
	NodeName string
	// BindAddr is the gossip listener, host:port, TCP and UDP on the same
	// port. Port 0 picks a free port (tests); GossipAddr reports it.
	BindAddr string
	// AdvertiseAddr is the host:port others reach this node's gossip on, when
	// it differs from BindAddr (NAT, 0.0.0.0 binds). Empty: derived from the
	// bound address.
	AdvertiseAddr string
	// Seeds are gossip addresses (host:port) of existing members to join
	// through. This node's own address may be listed (one seed list for the
	// whole cluster); it is skipped. Empty: start a new cluster.
	Seeds []string
	// SecretKey, when set, encrypts and authenticates all gossip with
	// AES-GCM; it must be exactly SecretKeySize bytes and equal on every
	// node. Nodes with another key (or none) cannot join.
	SecretKey []byte
	// Label is mixed into every gossip packet; nodes with a different label
	// ignore each other. Empty: the protoactor cluster name, which keeps two
	// clusters sharing a network (or test runs sharing loopback) apart.
	Label string
	// Timing tunes failure detection. Zero value: LANTiming().
	Timing Timing

	// Advertised in the node's metadata for Ward's own use.
	HTTPAddr string
	QUICAddr string
	RaftAddr string
	Version  string
	// Incarnation and Partitions are advertised for the cluster layer (see
	// Meta).
	Incarnation string
	Partitions  int
	MasterKeyID string

	// OnMessage, when set, receives the payload of every message another
	// node sent with Provider.Send; from is the sender's member id. It runs
	// on memberlist's goroutine: it must be quick and must not call back
	// into the provider.
	OnMessage func(from string, payload []byte)

	// Debounce is how long membership must be quiet before the topology is
	// rebuilt and pushed to protoactor and subscribers, so that a burst of
	// joins (a cluster starting) costs one rebalance, not one per member.
	// A change is never delayed by more than 4×Debounce.
	Debounce time.Duration
	// JoinRetryInterval is how often a node that sees no other member
	// retries its seeds (seeds that started later, or a healed partition
	// in which everyone declared this node dead); every fifth interval a
	// node that does see others retries the addresses of members it holds
	// for dead (the other half of a healed partition). Negative disables both.
	JoinRetryInterval time.Duration
	// LeaveTimeout bounds each step of a graceful leave: telling the live
	// members, and memberlist's Leave broadcast.
	LeaveTimeout time.Duration
	// DeadRetention is how long dead and left members stay in Members()
	// before they are forgotten (restarted nodes come back with new IDs, so
	// without pruning the list would only grow).
	DeadRetention time.Duration
	// KeepUnreachable keeps a member declared dead without leaving in
	// protoactor's topology for UnreachableRetention, unless the same node
	// comes back under a new id first. protoactor block-lists, for good,
	// every member id that drops out of its topology; a member that was
	// only cut off by a network partition comes back under the same id and
	// must not find itself blocked. Set it only with an identity lookup
	// that does not place by the topology (Ward's leaderlookup follows the
	// partition leaders); protoactor's disthash would route to the dead.
	KeepUnreachable      bool
	UnreachableRetention time.Duration

	Logger *slog.Logger
}

func (c *Config) withDefaults() error {
	if c.BindAddr == "" {
		return errors.New("membership: Config.BindAddr is required")
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("membership: BindAddr: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("membership: AdvertiseAddr: %w", err)
		}
	}
	if n := len(c.SecretKey); n != 0 && n != SecretKeySize {
		return fmt.Errorf("membership: SecretKey is %d bytes, want %d", n, SecretKeySize)
	}
	if c.Timing == (Timing{}) {
		c.Timing = LANTiming()
	}
	if err := c.Timing.validate(); err != nil {
		return fmt.Errorf("membership: Timing: %w", err)
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.JoinRetryInterval == 0 {
		c.JoinRetryInterval = DefaultJoinRetryInterval
	}
	if c.LeaveTimeout <= 0 {
		c.LeaveTimeout = DefaultLeaveTimeout
	}
	if c.DeadRetention <= 0 {
		c.DeadRetention = DefaultDeadRetention
	}
	if c.UnreachableRetention <= 0 {
		c.UnreachableRetention = DefaultUnreachableRetention
	}
	c.UnreachableRetention = max(c.UnreachableRetention, c.DeadRetention)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parse %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("parse %q: bad port", addr)
	}
	return host, port, nil
}
