package leaderlookup

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/cluster/placement"
)

const (
	probeKind  = "probe"
	partitions = 9
)

// registry counts probe activations across all members of a test cluster.
type registry struct {
	mu      sync.Mutex
	live    map[string]map[string]int // identity -> member id -> live activations
	started map[string]int            // identity -> activations ever started
	maxLive map[string]int            // identity -> most live at once, all members
}

func newRegistry() *registry {
	return &registry{live: map[string]map[string]int{}, started: map[string]int{}, maxLive: map[string]int{}}
}

func (r *registry) up(id, member string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[id] == nil {
		r.live[id] = map[string]int{}
	}
	r.live[id][member]++
	r.started[id]++
	total := 0
	for _, n := range r.live[id] {
		total += n
	}
	r.maxLive[id] = max(r.maxLive[id], total)
}

func (r *registry) down(id, member string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[id][member]--
}

// where returns the members with a live activation of id.
func (r *registry) where(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for m, n := range r.live[id] {
		for range n {
			out = append(out, m)
		}
	}
	return out
}

func (r *registry) counts(id string) (started, maxLive int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[id], r.maxLive[id]
}

// probe is the test grain: it answers any StringValue with the id of the
// member it runs on, and reports its life to the registry.
type probe struct {
	reg    *registry
	member string
	id     string
}

func (p *probe) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		p.id = msg.Identity.Identity
		p.reg.up(p.id, p.member)
	case *actor.Stopped:
		if p.id != "" {
			p.reg.down(p.id, p.member)
		}
	case *wrapperspb.StringValue:
		ctx.Respond(wrapperspb.String(p.member))
	}
}

type member struct {
	system   *actor.ActorSystem
	cluster  *pcluster.Cluster
	lookup   *Lookup
	table    *placement.Table
	provider *test.Provider
}

func (m *member) id() string { return m.system.ID }

// startCluster starts n members in this process, each with its own actor
// system, remoting on 127.0.0.1:0, Table and lookup, sharing one in-memory
// membership agent.
//
// Two upstream data races shape this (both only exist with several members
// in one process, never with one member per process as in production):
//   - remote.Start sets grpc's package-global logger (grpclog.SetLoggerV2),
//     so members start one after the other, not in parallel, although
//     StartMember sleeps a second each, and syncWithServer orders each
//     member's gRPC server goroutine before the next member's start.
//   - every member's gossip actor shuffles with one package-global,
//     unsynchronised math/rand.Rand (cluster/informer.go, rnd), as soon as
//     a member sees two others. Gossip is only sent on its ticker, so the
//     interval is set beyond any test's length. Placement does not use
//     gossip: topology comes from the provider, leadership from the Table.
func startCluster(t *testing.T, n int, reg *registry) (_ []*member, stop func()) {
	t.Helper()
	agent := test.NewInMemAgent()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	members := make([]*member, n)
	for i := range members {
		system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
		self := system.ID
		kind := pcluster.NewKind(probeKind, actor.PropsFromProducer(func() actor.Actor {
			return &probe{reg: reg, member: self}
		}))
		table := placement.NewTable(partitions)
		lookup := New(table, WithActivationTimeout(2*time.Second))
		provider := test.NewTestProvider(agent)
		cfg := pcluster.Configure("placement-test", provider, lookup,
			remote.Configure("127.0.0.1", 0), pcluster.WithKinds(kind))
		cfg.GossipInterval = time.Hour
		members[i] = &member{system: system, cluster: pcluster.New(system, cfg), lookup: lookup, table: table, provider: provider}
	}
	var syncConns []func()
	stop = func() {
		for _, c := range syncConns {
			c()
		}
		for _, m := range members {
			m.stop()
		}
	}
	for _, m := range members {
		m.cluster.StartMember()
		syncConns = append(syncConns, syncWithServer(t, m))
	}
	// Every lookup must know every member's address before routing.
	waitFor(t, 5*time.Second, "full topology on every member", func() bool {
		for _, m := range members {
			m.lookup.mu.RLock()
			k := len(m.lookup.addrs)
			m.lookup.mu.RUnlock()
			if k != n {
				return false
			}
		}
		return true
	})
	return members, stop
}

// stop is the Host's leaveCluster order (cluster/shutdown.go) without the
// Host: lookup first, then gossip, then the topology change.
func (m *member) stop() {
	c := m.cluster
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	_ = m.provider.Shutdown(true) // the test provider never fails
	m.system.Shutdown()
	// Not graceful: the graceful path's endpointManager.stop sets its
	// connections map to nil while the endpoint writer's receive goroutine
	// may still read it, reacting to a peer that just went away (upstream
	// data race). Stopping the gRPC server is all a test needs.
	c.Remote.Shutdown(false)
}

// setLeader records leader for partition p on every member's table.
func setLeader(members []*member, p int, leader string, epoch uint64) {
	for _, m := range members {
		m.table.Set(p, leader, epoch)
	}
}

// idIn returns an identity of probeKind that hashes to partition p.
func idIn(p int, prefix string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if placement.PartitionOf(probeKind, id, partitions) == p {
			return id
		}
	}
}

var errNoPID = errors.New("lookup returned no PID")

// askOnce asks id which member it runs on, through m's lookup (not the PID
// cache, so every call exercises placement).
func (m *member) askOnce(id string) (string, error) {
	pid := m.lookup.Get(pcluster.NewClusterIdentity(id, probeKind))
	if pid == nil {
		return "", errNoPID
	}
	res, err := m.system.Root.RequestFuture(pid, wrapperspb.String("where"), 2*time.Second).Result()
	if err != nil {
		return "", fmt.Errorf("ask %s at %s: %w", id, pid, err)
	}
	s, ok := res.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("ask %s: answer %T", id, res)
	}
	return s.GetValue(), nil
}

// ask retries askOnce briefly, as the Host's request path does.
func (m *member) ask(t *testing.T, id string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		where, err := m.askOnce(id)
		if err == nil {
			return where
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %s: ask %s: %v", m.id(), id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The cluster is started once per test process and shared by every run of
// TestLeaderPlacement (go test -count=N): starting one costs a few seconds,
// and starting a second one while the first one's gRPC goroutines wind down
// would race on gRPC's global logger again (see startCluster).
var shared struct {
	once    sync.Once
	members []*member
	reg     *registry
	stop    func()
	runs    int
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}

// TestLeaderPlacement runs the scenarios on one 3-member cluster; each
// scenario uses its own partitions, each run its own identities and epochs.
func TestLeaderPlacement(t *testing.T) {
	shared.once.Do(func() {
		shared.reg = newRegistry()
		shared.members, shared.stop = startCluster(t, 3, shared.reg)
	})
	if shared.members == nil {
		t.Fatal("shared cluster failed to start")
	}
	ms, reg := shared.members, shared.reg
	shared.runs++
	run := shared.runs
	base := uint64(run) * 10 // epochs only grow across runs
	idIn := func(p int, prefix string) string { return idIn(p, fmt.Sprintf("r%d-%s", run, prefix)) }

	t.Run("ActivatesOnLeaderFromAnyMember", func(t *testing.T) {
		for p, leader := range []*member{ms[0], ms[1], ms[2]} {
			setLeader(ms, p, leader.id(), base+1)
			id := idIn(p, "any")
			for _, from := range ms {
				if got := from.ask(t, id); got != leader.id() {
					t.Fatalf("partition %d: %s asked from %s ran on %s, want leader %s", p, id, from.id(), got, leader.id())
				}
			}
			if started, _ := reg.counts(id); started != 1 {
				t.Fatalf("%s activated %d times, want once", id, started)
			}
		}
	})

	t.Run("NoDoubleActivationUnderConcurrency", func(t *testing.T) {
		setLeader(ms, 3, ms[1].id(), base+1)
		setLeader(ms, 4, ms[2].id(), base+1)
		leaderOf := map[int]string{3: ms[1].id(), 4: ms[2].id()}
		var ids []string
		for i := range 10 {
			ids = append(ids, idIn(3+i%2, fmt.Sprintf("conc%d", i)))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 3*4*len(ids))
		for _, from := range ms {
			for range 4 {
				wg.Go(func() {
					for _, id := range ids {
						var where string
						var err error
						for range 50 { // lookups may briefly race the spawn: retry like the Host
							if where, err = from.askOnce(id); err == nil {
								break
							}
							time.Sleep(10 * time.Millisecond)
						}
						if err != nil {
							errs <- err
							return
						}
						if want := leaderOf[placement.PartitionOf(probeKind, id, partitions)]; where != want {
							errs <- fmt.Errorf("%s ran on %s, want %s", id, where, want)
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, id := range ids {
			if started, maxLive := reg.counts(id); started != 1 || maxLive != 1 {
				t.Errorf("%s: %d activations started, %d live at once; want 1 and 1", id, started, maxLive)
			}
		}
	})

	t.Run("LeadershipMovePassivatesAndReactivates", func(t *testing.T) {
		const p = 5
		setLeader(ms, p, ms[0].id(), base+1)
		id := idIn(p, "move")
		other := idIn(p, "move-b")
		if got := ms[2].ask(t, id); got != ms[0].id() {
			t.Fatalf("ran on %s, want %s", got, ms[0].id())
		}
		ms[1].ask(t, other)
		oldPID := ms[1].lookup.Get(pcluster.NewClusterIdentity(id, probeKind))
		for _, m := range ms {
			if !m.lookup.Placed(probeKind, id, oldPID) {
				t.Fatalf("member %s: the leader's activation %s is not where it would place %s", m.id(), oldPID, id)
			}
		}

		setLeader(ms, p, ms[1].id(), base+2)
		// Every member now places the identity elsewhere, so a cached
		// copy of the old PID is dropped before it is used.
		for _, m := range ms {
			if m.lookup.Placed(probeKind, id, oldPID) {
				t.Fatalf("member %s still places %s at the deposed leader's %s", m.id(), id, oldPID)
			}
		}
		// Nobody asked anything: the Table change alone stops both.
		waitFor(t, time.Second, "old activations to stop", func() bool {
			return len(reg.where(id)) == 0 && len(reg.where(other)) == 0
		})
		// A caller still holding the old PID learns it is gone.
		if _, err := ms[2].system.Root.RequestFuture(oldPID, wrapperspb.String("where"), time.Second).Result(); err == nil {
			t.Fatal("the old activation still answered")
		}
		if got := ms[2].ask(t, id); got != ms[1].id() {
			t.Fatalf("after the move ran on %s, want new leader %s", got, ms[1].id())
		}
		if w := reg.where(id); len(w) != 1 || w[0] != ms[1].id() {
			t.Fatalf("live activations %v, want one on %s", w, ms[1].id())
		}
		if newPID := ms[2].lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); !ms[2].lookup.Placed(probeKind, id, newPID) || !ms[1].lookup.Placed(probeKind, id, newPID) {
			t.Fatalf("the new leader's activation %s is not where members place %s", newPID, id)
		}
		if started, maxLive := reg.counts(id); started != 2 || maxLive != 1 {
			t.Fatalf("%d activations started, %d live at once; want 2 and 1", started, maxLive)
		}
	})

	t.Run("NonLeaderRefuses", func(t *testing.T) {
		const p = 6
		id := idIn(p, "refuse")
		// ms[0] and ms[1] believe ms[2] leads; ms[2] itself knows better
		// (ms[0] leads in a later term) and must refuse. ms[0] never
		// learned it leads, so it refuses too.
		ms[0].table.Set(p, ms[2].id(), base+1)
		ms[1].table.Set(p, ms[2].id(), base+1)
		ms[2].table.Set(p, ms[0].id(), base+2)
		var missesBefore [missCauses]uint64
		for _, m := range ms {
			missesBefore[MissRefused] += m.lookup.Misses()[MissRefused]
		}
		refusedBefore := ms[2].lookup.Refusals()[RefusedNotLeader]

		res, err := ms[1].system.Root.RequestFuture(actor.NewPID(ms[2].system.Address(), ActorName),
			&pcluster.ActivationRequest{ClusterIdentity: pcluster.NewClusterIdentity(id, probeKind), TopologyHash: base + 1},
			2*time.Second).Result()
		if err != nil {
			t.Fatalf("activation request: %v", err)
		}
		if r := res.(*pcluster.ActivationResponse); !r.GetFailed() || r.GetPid() != nil || r.GetTopologyHash() != base+2 {
			t.Fatalf("non-leader answered %v, want a refusal carrying epoch %d", r, base+2)
		}
		for _, m := range ms[:2] {
			if pid := m.lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); pid != nil {
				t.Fatalf("member %s got %s from a non-leader", m.id(), pid)
			}
		}
		// ms[2] follows its own table to ms[0], which does not lead by
		// its own table either.
		if pid := ms[2].lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); pid != nil {
			t.Fatalf("got %s although no member leads by its own table", pid)
		}
		if started, _ := reg.counts(id); started != 0 {
			t.Fatalf("%s activated %d times by refusing members", id, started)
		}
		// Three Gets came back empty because the asked member refused, and
		// ms[2] refused the direct request and the two Gets that asked it.
		var missesAfter uint64
		for _, m := range ms {
			missesAfter += m.lookup.Misses()[MissRefused]
		}
		if d := missesAfter - missesBefore[MissRefused]; d != 3 {
			t.Errorf("refused misses counted %d, want 3", d)
		}
		if d := ms[2].lookup.Refusals()[RefusedNotLeader] - refusedBefore; d != 3 {
			t.Errorf("ms[2] counted %d not-leader refusals, want 3", d)
		}
		// Once the tables agree, the caller's retry succeeds.
		setLeader(ms, p, ms[0].id(), base+2)
		if got := ms[1].ask(t, id); got != ms[0].id() {
			t.Fatalf("ran on %s, want %s", got, ms[0].id())
		}
	})

	t.Run("UnreachableLeaderIsSkipped", func(t *testing.T) {
		const p = 8
		setLeader(ms, p, ms[2].id(), base+1)
		id := idIn(p, "lost")
		if got := ms[0].ask(t, id); got != ms[2].id() {
			t.Fatalf("ran on %s, want %s", got, ms[2].id())
		}
		pid := ms[0].lookup.Get(pcluster.NewClusterIdentity(id, probeKind))
		// Remoting reports the connection to ms[2] broken (as when its
		// process dies): ms[0] sends nothing there until it reconnects.
		addr := ms[2].system.Address()
		ms[0].system.EventStream.Publish(&remote.EndpointTerminatedEvent{Address: addr})
		if ms[0].lookup.Placed(probeKind, id, pid) {
			t.Fatal("a PID on an unreachable member still counts as placed")
		}
		before := ms[0].lookup.Misses()[MissUnreachable]
		if got := ms[0].lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); got != nil {
			t.Fatalf("got %s from an unreachable leader", got)
		}
		if d := ms[0].lookup.Misses()[MissUnreachable] - before; d != 1 {
			t.Fatalf("counted %d unreachable misses, want 1", d)
		}
		// Other members are unaffected.
		if !ms[1].lookup.Placed(probeKind, id, pid) {
			t.Fatal("ms[1] lost track of a reachable leader")
		}
		// The lookup's own probe reconnects (test members do not gossip,
		// so nothing else sends to ms[2]) and the leader is reachable
		// again.
		waitFor(t, 10*time.Second, "ms[0] to reconnect to ms[2] by itself", func() bool {
			return ms[0].lookup.Get(pcluster.NewClusterIdentity(id, probeKind)) != nil
		})
		if got := ms[0].ask(t, id); got != ms[2].id() {
			t.Fatalf("after reconnecting ran on %s, want %s", got, ms[2].id())
		}
		if started, _ := reg.counts(id); started != 1 {
			t.Fatalf("%s activated %d times, want once", id, started)
		}
	})

	t.Run("UnknownLeaderGetsNil", func(t *testing.T) {
		const p = 7
		id := idIn(p, "nobody")
		for _, m := range ms {
			before := m.lookup.Misses()[MissNoLeader]
			if pid := m.lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); pid != nil {
				t.Fatalf("member %s got %s with no leader known", m.id(), pid)
			}
			if d := m.lookup.Misses()[MissNoLeader] - before; d != 1 {
				t.Errorf("member %s counted %d no-leader misses, want 1", m.id(), d)
			}
		}
		// Losing the leader (a step-down within the term) passivates and
		// leaves Get with nothing until an election settles.
		setLeader(ms, p, ms[2].id(), base+3)
		ms[0].ask(t, id)
		pid := ms[0].lookup.Get(pcluster.NewClusterIdentity(id, probeKind))
		setLeader(ms, p, "", base+3)
		waitFor(t, time.Second, "activation to stop on step-down", func() bool { return len(reg.where(id)) == 0 })
		if ms[0].lookup.Placed(probeKind, id, pid) || ms[0].lookup.Placed(probeKind, id, nil) {
			t.Fatal("a PID counts as placed while no leader is known")
		}
		for _, m := range ms {
			if pid := m.lookup.Get(pcluster.NewClusterIdentity(id, probeKind)); pid != nil {
				t.Fatalf("member %s got %s after the leader stepped down", m.id(), pid)
			}
		}
		if started, _ := reg.counts(id); started != 1 {
			t.Fatalf("%s activated %d times, want once", id, started)
		}
	})
}
