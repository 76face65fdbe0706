// Package leaderlookup is Ward's protoactor-go identity lookup: it activates
// each grain only on the member that leads the grain's partition
// (placement.PartitionOf, placement.Table), so that reads are local and
// writes need no forwarding (DESIGN.md §4).
//
// It replaces protoactor's disthash lookup, which places by rendezvous hash
// over the member list, poisons on every topology change without waiting for
// consensus, and so can run one identity on two members at once (upstream
// #799, #637). Here the only member that activates an identity is the one
// whose own Table says it leads the identity's partition; every other member
// refuses, and a member that loses leadership stops that partition's
// activations at once.
//
// How it works. Setup spawns a placement actor named ActorName on every
// member. Get(identity) computes the partition, reads the leader from the
// local Table, and asks the leader's placement actor for the activation with
// a protoactor ActivationRequest. The placement actor checks its own Table,
// answers with the existing activation or spawns one (as its child, so it
// hears of its end), and refuses with ActivationResponse{Failed: true} when
// it does not lead the partition. On a Table change that takes a partition
// away from its member, the placement actor stops every activation of that
// partition.
//
// Reachability. When remoting reports the connection to a member broken,
// Get sends nothing to that member's address (no activation request, and
// Placed answers false for its PIDs, so hosts drop them from their caches)
// until remoting connects to it again, which a background probe triggers.
// protoactor holds whatever is sent to an address it is reconnecting to for
// seconds; a crashed leader would otherwise cost every caller that long,
// where the retry path should wait only for the election.
//
// We reuse protoactor's ActivationRequest/ActivationResponse because they are
// registered protobuf messages that already cross remoting; their
// TopologyHash field carries the partition's epoch (the Raft term), which is
// what "topology" means for this placement.
package leaderlookup

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/wardhq/ward/cluster/placement"
)

// ActorName is the name of the placement actor on every member.
const ActorName = "ward-placement"

// DefaultActivationTimeout bounds one activation request to a leader.
const DefaultActivationTimeout = 5 * time.Second

// maxHops bounds how often one Get follows a changed leader after a refusal
// before it gives up and lets the caller's retry (with back-off) try again.
const maxHops = 3

// Option configures a Lookup.
type Option func(*Lookup)

// WithActivationTimeout bounds how long Get waits for the leader's placement
// actor. Get has no context, so this is the only bound on it; keep it below
// the request path's own budget.
func WithActivationTimeout(d time.Duration) Option {
	return func(l *Lookup) {
		if d > 0 {
			l.timeout = d
		}
	}
}

// Lookup implements protoactor's cluster.IdentityLookup. Use one per member,
// with that member's Table.
type Lookup struct {
	table   *placement.Table
	timeout time.Duration

	// Set in Setup, read-only afterwards.
	cluster  *pcluster.Cluster
	system   *actor.ActorSystem
	self     string // this member's id (ActorSystem.ID)
	selfAddr string // this member's remoting address
	local    *actor.PID

	// addrs maps member id to remoting address, from the topology events.
	// Our own copy: upstream's MemberList member set is read without its
	// lock in places, so we never read it (NOTES.md).
	mu      sync.RWMutex
	addrs   map[string]string
	topoSub *eventstream.Subscription
	// down holds the remoting addresses whose connection broke, and since
	// when, until remoting connects to them again (see unreachable).
	down    map[string]time.Time
	probing map[string]bool // addresses with a reconnecting probe in flight

	cancelTable func()
	stopOnce    sync.Once

	misses   [missCauses]atomic.Uint64
	refusals [refusalReasons]atomic.Uint64
}

// Why a Get found no activation. A short burst of misses is normal while a
// leader moves; misses that go on while every partition has a leader are an
// availability fault, and the cause says where to look.
const (
	// MissNoLeader: this member's Table knows no leader for the partition.
	MissNoLeader = iota
	// MissNotInTopology: the leader the Table names is not (yet) in
	// protoactor's topology on this member, so it has no address.
	MissNotInTopology
	// MissUnreachable: the leader's placement actor did not answer in time,
	// or remoting lost its connection to the leader and has not reconnected.
	MissUnreachable
	// MissRefused: the leader refused (its own Table says it does not lead
	// the partition, or the activation is still stopping) and this
	// member's Table names no other leader.
	MissRefused
	missCauses
)

// MissCauseNames names the Miss* causes, by index, for metrics and logs.
var MissCauseNames = [missCauses]string{"no_leader", "not_in_topology", "unreachable", "refused"}

// Misses returns how many Gets found no activation, by cause (indexed by
// the Miss* constants), since the lookup was created.
func (l *Lookup) Misses() [missCauses]uint64 {
	var out [missCauses]uint64
	for i := range l.misses {
		out[i] = l.misses[i].Load()
	}
	return out
}

// Why this member's placement actor refused an activation request.
const (
	// RefusedNotLeader: its own Table does not name it the partition's
	// leader (the asker's Table is ahead of or behind ours).
	RefusedNotLeader = iota
	// RefusedStopping: it leads the partition but the identity's previous
	// activation, stopped when leadership was lost, has not ended yet.
	RefusedStopping
	refusalReasons
)

// RefusalReasonNames names the Refused* reasons, by index.
var RefusalReasonNames = [refusalReasons]string{"not_leader", "stopping"}

// Refusals returns how many activation requests this member's placement
// actor refused, by reason (indexed by the Refused* constants).
func (l *Lookup) Refusals() [refusalReasons]uint64 {
	var out [refusalReasons]uint64
	for i := range l.refusals {
		out[i] = l.refusals[i].Load()
	}
	return out
}

func (l *Lookup) miss(cause int) *actor.PID {
	l.misses[cause].Add(1)
	return nil
}

var _ pcluster.IdentityLookup = (*Lookup)(nil)

// New returns a lookup that places by table. The table's leader values are
// protoactor member ids (ActorSystem.ID, which is also the memberlist node
// name); a value that is no known member id but contains ':' is taken as a
// remoting address (host:port).
func New(table *placement.Table, opts ...Option) *Lookup {
	l := &Lookup{table: table, timeout: DefaultActivationTimeout, addrs: make(map[string]string),
		down: make(map[string]time.Time), probing: make(map[string]bool)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Table is the leader table this lookup places by.
func (l *Lookup) Table() *placement.Table { return l.table }

// Setup is called by protoactor once remoting is up and before the cluster
// provider starts. A client (isClient) hosts no grains, so it runs no
// placement actor; its Get still routes to the leaders.
func (l *Lookup) Setup(c *pcluster.Cluster, _ []string, isClient bool) {
	l.cluster = c
	l.system = c.ActorSystem
	l.self = c.ActorSystem.ID
	l.selfAddr = c.ActorSystem.Address()

	// Subscribed before the provider starts, so no topology is missed. The
	// event is published under MemberList's mutex: only touch our own map.
	l.topoSub = c.ActorSystem.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *pcluster.ClusterTopology:
			l.onTopology(e)
		case *remote.EndpointTerminatedEvent:
			l.mu.Lock()
			l.down[e.Address] = time.Now()
			l.mu.Unlock()
		case *remote.EndpointConnectedEvent:
			l.mu.Lock()
			delete(l.down, e.Address)
			l.mu.Unlock()
		}
	})

	if isClient {
		return
	}
	props := actor.PropsFromProducer(func() actor.Actor { return newPlacementActor(l) })
	pid, err := c.ActorSystem.Root.SpawnNamed(props, ActorName)
	if err != nil {
		// protoactor's Setup cannot return an error and reports start-up
		// failures by panicking; the Host turns that panic into an error.
		panic(fmt.Errorf("leaderlookup: spawn placement actor %q: %w", ActorName, err))
	}
	l.local = pid
	root := c.ActorSystem.Root
	l.cancelTable = l.table.Subscribe(func(p int) {
		root.Send(pid, partitionChanged{partition: p})
	})
}

func (l *Lookup) onTopology(t *pcluster.ClusterTopology) {
	addrs := make(map[string]string, len(t.GetMembers()))
	for _, m := range t.GetMembers() {
		addrs[m.GetId()] = m.Address()
	}
	l.mu.Lock()
	l.addrs = addrs
	l.mu.Unlock()
}

// downFor bounds how long an address stays unreachable without news.
// protoactor's gossip sends to every member several times a second, so a
// member that is up reconnects (and clears the mark) well within it; the
// bound only covers a stray "terminated" event for a connection that was
// already replaced.
const downFor = 5 * time.Second

// unreachable reports whether remoting lost its connection to addr and has
// not connected again. Nothing is sent there meanwhile: protoactor's
// endpoint writer holds messages to an address it is reconnecting to for as
// long as its retries take (2 s each), so a request or activation sent to a
// crashed leader would wait out its whole timeout instead of retrying at the
// leader the next election picks. Called with l.mu held for reading.
func (l *Lookup) unreachable(addr string) bool {
	since, ok := l.down[addr]
	return ok && time.Since(since) < downFor
}

// isSelf reports whether a Table leader value names this member.
func (l *Lookup) isSelf(leader string) bool {
	return leader != "" && (leader == l.self || leader == l.selfAddr)
}

// placementPID is the placement actor of the member named by leader; nil
// (with the Miss cause) when that member is not (yet) in the topology or
// its address is unreachable.
func (l *Lookup) placementPID(leader string) (*actor.PID, int) {
	if l.isSelf(leader) && l.local != nil {
		return l.local, 0
	}
	addr, known, down := l.leaderAddr(leader)
	switch {
	case !known:
		return nil, MissNotInTopology
	case down:
		l.probe(addr)
		return nil, MissUnreachable
	}
	return actor.NewPID(addr, ActorName), 0
}

// leaderAddr is the remoting address of another member named by a Table
// leader value: its topology address, or the value itself when it is an
// address (see New); known is false when it is neither, down when remoting
// lost that address (see unreachable).
func (l *Lookup) leaderAddr(leader string) (addr string, known, down bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	addr, known = l.addrs[leader]
	if !known && strings.Contains(leader, ":") {
		addr, known = leader, true
	}
	return addr, known, known && l.unreachable(addr)
}

// probe asks addr's placement actor for nothing, in the background, at most
// once at a time per address: the send makes remoting connect again, and
// the connection, once up, clears the unreachable mark. Without it only
// traffic of others (protoactor's gossip) would reconnect, and remoting
// sometimes reports a connection terminated after it has already been
// replaced, which would leave a live member marked for downFor.
func (l *Lookup) probe(addr string) {
	l.mu.Lock()
	if l.probing[addr] {
		l.mu.Unlock()
		return
	}
	l.probing[addr] = true
	l.mu.Unlock()
	go func() {
		// A request without an identity is refused at once by a live
		// placement actor; the answer is not needed, the connection is.
		_, _ = l.system.Root.RequestFuture(actor.NewPID(addr, ActorName), &pcluster.ActivationRequest{}, l.timeout).Result()
		l.mu.Lock()
		delete(l.probing, addr)
		l.mu.Unlock()
	}()
}

// Placed reports whether pid is on the member that this member's Table
// names as the leader of the identity's partition, i.e. where Get would
// look for it now, and that member is reachable. Callers that cache PIDs
// check it before each use: a PID left behind on a crashed leader is never
// answered.
func (l *Lookup) Placed(kind, identity string, pid *actor.PID) bool {
	if pid == nil {
		return false
	}
	leader, _, ok := l.table.Leader(placement.PartitionOf(kind, identity, l.table.Partitions()))
	if !ok {
		return false
	}
	if l.isSelf(leader) {
		return pid.GetAddress() == l.selfAddr
	}
	addr, known, down := l.leaderAddr(leader)
	return known && !down && pid.GetAddress() == addr
}

// WatchPlacement calls fn after every change of a partition's leader in this
// member's Table, i.e. whenever Placed may answer differently, until cancel
// is called. fn runs on the goroutine that changed the Table and must not
// block.
func (l *Lookup) WatchPlacement(fn func()) (cancel func()) {
	return l.table.Subscribe(func(int) { fn() })
}

// Get returns the PID of identity's activation on its partition's leader,
// activating it there if needed. It returns nil when no leader is known,
// the leader is not reachable or not in the topology, or the leader refused
// (it does not lead the partition by its own Table, or the activation is
// stopping): the request path retries with back-off, by which time the
// Tables have caught up.
func (l *Lookup) Get(ci *pcluster.ClusterIdentity) *actor.PID {
	if l.system == nil || ci == nil {
		return nil
	}
	p := placement.PartitionOf(ci.Kind, ci.Identity, l.table.Partitions())
	for range maxHops {
		leader, epoch, ok := l.table.Leader(p)
		if !ok {
			return l.miss(MissNoLeader)
		}
		target, cause := l.placementPID(leader)
		if target == nil {
			l.system.Logger().Debug("partition leader not reachable",
				slog.Int("partition", p), slog.String("leader", leader), slog.String("cause", MissCauseNames[cause]))
			return l.miss(cause)
		}
		req := &pcluster.ActivationRequest{ClusterIdentity: ci, TopologyHash: epoch}
		res, err := l.system.Root.RequestFuture(target, req, l.timeout).Result()
		if err != nil {
			l.system.Logger().Warn("activation request failed",
				slog.String("identity", ci.AsKey()), slog.Int("partition", p),
				slog.String("leader", leader), slog.Any("error", err))
			return l.miss(MissUnreachable)
		}
		resp, ok := res.(*pcluster.ActivationResponse)
		if !ok {
			l.system.Logger().Error("unexpected activation answer",
				slog.String("identity", ci.AsKey()), slog.String("type", fmt.Sprintf("%T", res)))
			return l.miss(MissUnreachable)
		}
		if !resp.GetFailed() && resp.GetPid() != nil {
			return resp.GetPid()
		}
		// Refused. Follow a leader our Table learned in the meantime;
		// otherwise the Tables disagree and only time settles it.
		if now, nowEpoch, ok := l.table.Leader(p); !ok || (now == leader && nowEpoch == epoch) {
			return l.miss(MissRefused)
		}
	}
	return l.miss(MissRefused)
}

// RemovePid forgets a PID the caller found dead. The placement actor already
// forgets activations when they stop; only protoactor's PID cache may still
// hold it. Nothing is broadcast: upstream's BroadcastEvent reads the member
// set without its lock (a data race with topology updates), and the other
// members' caches drop a dead PID on the dead letter it earns.
func (l *Lookup) RemovePid(ci *pcluster.ClusterIdentity, pid *actor.PID) {
	if l.cluster == nil || ci == nil {
		return
	}
	l.cluster.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
}

// Shutdown stops the placement actor, and with it (its children) every
// activation it still holds. protoactor's Cluster.Shutdown calls it twice and
// after the actor system has been shut down, so it is idempotent and bounded.
func (l *Lookup) Shutdown() {
	l.stopOnce.Do(func() {
		if l.system == nil {
			return
		}
		if l.cancelTable != nil {
			l.cancelTable()
		}
		l.system.EventStream.Unsubscribe(l.topoSub)
		if l.local == nil {
			return
		}
		if err := l.system.Root.PoisonFuture(l.local).Wait(); err != nil {
			l.system.Logger().Warn("placement actor did not stop cleanly", slog.Any("error", err))
		}
	})
}
