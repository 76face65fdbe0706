package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// replicaSet is one partition (p0) replicated on n in-process nodes, each
// with its own store, over raft's in-memory transport.
type replicaSet struct {
	t      testing.TB
	parts  []*partition.Partition
	ids    []raft.ServerID
	addrs  []raft.ServerAddress
	stores []*persistence.Store
}

func startReplicas(t testing.TB, n int) *replicaSet {
	t.Helper()
	rs := &replicaSet{t: t}
	var servers []raft.Server
	var trans []*raft.InmemTransport
	for i := range n {
		id := raft.ServerID(fmt.Sprintf("n%d", i))
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("%s-%s", t.Name(), id)))
		rs.ids, rs.addrs = append(rs.ids, id), append(rs.addrs, addr)
		trans = append(trans, tr)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: addr})
	}
	for i, a := range trans {
		for j, b := range trans {
			if i != j {
				a.Connect(rs.addrs[j], b)
			}
		}
	}
	for i := range n {
		store := openStore(t, nil, t.TempDir())
		rc := partition.LANConfig()
		// Short enough for quick tests, long enough not to flap under the
		// race detector on two cores.
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 300 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
		p, err := partition.Open(partition.Config{
			ID: 0, Store: store, Transport: trans[i], LocalID: rs.ids[i], Bootstrap: servers,
			Raft: rc, Logger: testLogger(), Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatalf("open replica %d: %v", i, err)
		}
		rs.parts, rs.stores = append(rs.parts, p), append(rs.stores, store)
	}
	// Cleanups run last-in first-out: hosts (registered later) stop before
	// the replicas close, and the replicas before their stores.
	t.Cleanup(func() {
		for i, p := range rs.parts {
			_ = p.Close()
			_ = rs.stores[i].Close()
		}
	})
	return rs
}

// leader waits for a ready leader and returns its index.
func (rs *replicaSet) leader() int {
	rs.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, p := range rs.parts {
			if p.IsReady() {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	rs.t.Fatal("no ready leader")
	return -1
}

// transfer moves leadership from replica from to another one and waits
// until that one serves; it returns the new leader's index.
func (rs *replicaSet) transfer(from int) int {
	rs.t.Helper()
	to := (from + 1) % len(rs.parts)
	if err := rs.parts[from].LeadershipTransferToServer(rs.ids[to], rs.addrs[to]); err != nil {
		rs.t.Fatalf("transfer leadership %s -> %s: %v", rs.ids[from], rs.ids[to], err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !rs.parts[to].IsReady() {
		if time.Now().After(deadline) {
			rs.t.Fatalf("%s not ready after the transfer", rs.ids[to])
		}
		time.Sleep(5 * time.Millisecond)
	}
	return to
}

// loadAtLeader reads an actor's journal from the current leader.
func (rs *replicaSet) loadAtLeader(key persistence.ActorKey) *persistence.Loaded {
	rs.t.Helper()
	l, err := rs.parts[rs.leader()].Load(key)
	if err != nil {
		rs.t.Fatalf("load %s: %v", key, err)
	}
	return l
}

// leaderJournal routes every call to whichever replica is the ready leader
// when the call is made, as the identity lookup places activations on the
// leader. Hooks let a test move leadership in the middle of a call.
type leaderJournal struct {
	rs *replicaSet
	// onLoad and onCommit, when set, replace the call (next is the call
	// on the leader chosen when the call began).
	onLoad   func(leader int, next func() (*persistence.Loaded, error)) (*persistence.Loaded, error)
	onCommit func(leader int, w *persistence.Write, next func() error) error
	loads    atomic.Int64
	commits  atomic.Int64
}

func (j *leaderJournal) current() int {
	for i, p := range j.rs.parts {
		if p.IsReady() {
			return i
		}
	}
	return -1
}

func (j *leaderJournal) Load(k persistence.ActorKey) (*persistence.Loaded, error) {
	j.loads.Add(1)
	i := j.current()
	if i < 0 {
		return nil, &partition.NotLeaderError{}
	}
	next := func() (*persistence.Loaded, error) { return j.rs.parts[i].Load(k) }
	if j.onLoad != nil {
		return j.onLoad(i, next)
	}
	return next()
}

func (j *leaderJournal) Commit(ctx context.Context, w *persistence.Write) error {
	j.commits.Add(1)
	i := j.current()
	if i < 0 {
		return &partition.NotLeaderError{}
	}
	next := func() error { return j.rs.parts[i].Commit(ctx, w) }
	if j.onCommit != nil {
		return j.onCommit(i, w, next)
	}
	return next()
}

func (j *leaderJournal) DueTimers(until time.Time, limit int) ([]persistence.Timer, error) {
	i := j.current()
	if i < 0 {
		return nil, &partition.NotLeaderError{}
	}
	return j.rs.parts[i].DueTimers(until, limit)
}

// startPartitionHost starts a host whose one partition is journal j.
func startPartitionHost(t testing.TB, j Journal, attempts int) *Host {
	t.Helper()
	return startHost(t, Config{
		Journals:       func(int) Journal { return j },
		Partitions:     1,
		Registerer:     prometheus.NewRegistry(),
		RequestTimeout: 20 * time.Second,
		MaxAttempts:    attempts,
		RetryBackoff:   5 * time.Millisecond,
	})
}

// createOnce creates session id through Host.Request and checks that the
// journal at the leader holds exactly one event and one reply for it, and
// that the reply is the answer the caller got.
func createOnce(t *testing.T, rs *replicaSet, h *Host, id string) {
	t.Helper()
	got := createSession(t, h, id, time.Hour)
	l := rs.loadAtLeader(persistence.ActorKey{Kind: session.KindName, ID: id})
	if len(l.Events) != 1 {
		t.Fatalf("%s: %d events at the leader, want exactly 1", id, len(l.Events))
	}
	if len(l.Replies) != 1 {
		t.Fatalf("%s: %d stored replies, want 1", id, len(l.Replies))
	}
	stored, err := decodeResponse(l.Replies[0].Response.(*protocol.Response))
	if err != nil {
		t.Fatalf("stored reply: %v", err)
	}
	if !protocol.Equal(stored, got) {
		t.Fatalf("caller got %v, the journal stored %v", got, stored)
	}
}

// TestCommitRacingLeaderChangeAppliesOnce: a create whose commit meets a
// leadership change is retried by Host.Request at the new leader and
// applied exactly once, whatever the commit's fate was.
func TestCommitRacingLeaderChangeAppliesOnce(t *testing.T) {
	rs := startReplicas(t, 3)
	rs.leader()
	j := &leaderJournal{rs: rs}
	h := startPartitionHost(t, j, 100)

	var once sync.Once
	first := func(f func()) bool {
		ran := false
		once.Do(func() { f(); ran = true })
		return ran
	}

	t.Run("committed-answer-lost", func(t *testing.T) {
		// The write commits, then leadership moves and the caller hears
		// "outcome unknown": the retry must get the stored answer, not a
		// second step (which would fail ALREADY_EXISTS or issue another
		// refresh secret).
		once = sync.Once{}
		j.onCommit = func(leader int, w *persistence.Write, next func() error) error {
			var err error
			if first(func() {
				if err = next(); err != nil {
					return
				}
				rs.transfer(leader)
				err = fmt.Errorf("simulated lost answer: %w: %w", partition.ErrOutcomeUnknown, &partition.NotLeaderError{})
			}) {
				return err
			}
			return next()
		}
		createOnce(t, rs, h, "lost-answer")
	})

	t.Run("refused-deposed", func(t *testing.T) {
		// Leadership moves before the write reaches raft: the old leader
		// refuses it, and the retry steps afresh at the new leader.
		once = sync.Once{}
		j.onCommit = func(leader int, w *persistence.Write, next func() error) error {
			first(func() { rs.transfer(leader) })
			return next() // on the old leader: not the leader any more
		}
		createOnce(t, rs, h, "refused")
	})

	t.Run("raced", func(t *testing.T) {
		// Commit and transfer at once: either outcome, one event.
		once = sync.Once{}
		j.onCommit = func(leader int, w *persistence.Write, next func() error) error {
			var err error
			if first(func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = rs.parts[leader].LeadershipTransfer()
				}()
				err = next()
				<-done
			}) {
				return err
			}
			return next()
		}
		createOnce(t, rs, h, "raced")
	})

	t.Run("mid-load", func(t *testing.T) {
		// Leadership moves while the activation loads: it answers
		// NOT_LEADER and the retry activates at the new leader.
		once = sync.Once{}
		j.onCommit = nil
		j.onLoad = func(leader int, next func() (*persistence.Loaded, error)) (*persistence.Loaded, error) {
			first(func() { rs.transfer(leader) })
			return next()
		}
		createOnce(t, rs, h, "mid-load")
		j.onLoad = nil
	})
}

// TestDeposedLeaderDoesNotServeStaleRead: an activation on the old leader,
// still active after leadership moved and the new leader changed the actor,
// does not answer a read from its memory: the read fence answers
// NOT_LEADER, the host retries (re-activation here fails: not the leader),
// and it gives up with UNAVAILABLE naming the cause.
func TestDeposedLeaderDoesNotServeStaleRead(t *testing.T) {
	rs := startReplicas(t, 3)
	old := rs.leader()
	hOld := startPartitionHost(t, rs.parts[old], 3)
	ctx := context.Background()
	const id = "fenced"

	createSession(t, hOld, id, time.Hour)
	m, err := hOld.Request(ctx, session.KindName, id, &protocol.GetSession{})
	if err != nil {
		t.Fatalf("read on the leader: %v", err)
	}
	if st := m.(*protocol.SessionInfo).GetStatus(); st != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		t.Fatalf("status %s", st)
	}

	nl := rs.transfer(old)
	// The new leader changes the actor. (A second host in this process
	// would race with the first on grpc's global logger, so the write goes
	// to the partition directly, as a host there would make it.)
	key := persistence.ActorKey{Kind: session.KindName, ID: id}
	w := &persistence.Write{Actor: key, FirstSeq: 2,
		Events: []protocol.Message{&protocol.SessionRevoked{AtUnixNano: time.Now().UnixNano()}}}
	if err := rs.parts[nl].Commit(ctx, w); err != nil {
		t.Fatalf("revoke at the new leader: %v", err)
	}
	if hOld.activations.len() != 1 {
		t.Fatalf("old host has %d activations; the test needs the stale one alive", hOld.activations.len())
	}

	m, err = hOld.Request(ctx, session.KindName, id, &protocol.GetSession{})
	if err == nil {
		t.Fatalf("deposed leader answered a read: %v", m)
	}
	requireCode(t, err, protocol.ErrorCode_ERROR_CODE_UNAVAILABLE)
	if !strings.Contains(err.Error(), "not the partition leader") {
		t.Fatalf("error does not name the cause: %v", err)
	}
	// The old host tried more than once, and never re-activated on state
	// it could serve.
	if l, err := rs.parts[nl].Load(key); err != nil || len(l.Events) != 2 {
		t.Fatalf("new leader's journal: %v, %v", l, err)
	}
}

// TestNotLeaderRetriedToNewLeader: with placement following the leader, a
// read whose activation sits on a deposed leader is retried by Host.call
// and answered by the new leader with the current state.
func TestNotLeaderRetriedToNewLeader(t *testing.T) {
	rs := startReplicas(t, 3)
	first := rs.leader()
	j := &verifyingLeaderJournal{leaderJournal: leaderJournal{rs: rs}}
	h := startPartitionHost(t, j, 100)
	ctx := context.Background()
	const id = "moved"
	createSession(t, h, id, time.Hour)
	if _, err := h.Request(ctx, session.KindName, id, &protocol.GetSession{}); err != nil {
		t.Fatal(err)
	}
	nl := rs.transfer(first)
	// Change the state at the new leader behind the activation's back.
	w := &persistence.Write{Actor: persistence.ActorKey{Kind: session.KindName, ID: id}, FirstSeq: 2,
		Events: []protocol.Message{&protocol.SessionRevoked{AtUnixNano: time.Now().UnixNano()}}}
	if err := rs.parts[nl].Commit(ctx, w); err != nil {
		t.Fatalf("revoke behind the activation: %v", err)
	}
	m, err := h.Request(ctx, session.KindName, id, &protocol.GetSession{})
	if err != nil {
		t.Fatalf("read after the move: %v", err)
	}
	if st := m.(*protocol.SessionInfo).GetStatus(); st != protocol.SessionStatus_SESSION_STATUS_REVOKED {
		t.Fatalf("stale read: status %s, want REVOKED", st)
	}
	if j.loads.Load() < 2 {
		t.Fatalf("%d loads: the read was not re-activated", j.loads.Load())
	}
}

// verifyingLeaderJournal is a leaderJournal that also fences reads; its
// epoch names the replica (and that replica's leadership) a load used.
type verifyingLeaderJournal struct{ leaderJournal }

func (j *verifyingLeaderJournal) LeaderEpoch() uint64 {
	i := j.current()
	if i < 0 {
		return 0
	}
	return uint64(i)<<56 | j.rs.parts[i].LeaderEpoch()
}

func (j *verifyingLeaderJournal) VerifyLeader(ctx context.Context, epoch uint64) error {
	i := int(epoch >> 56)
	if epoch == 0 || i >= len(j.rs.parts) {
		return &partition.NotLeaderError{}
	}
	return j.rs.parts[i].VerifyLeader(ctx, epoch&(1<<56-1))
}

// hideVerifier is a journal without the read fence, for the benchmark's
// baseline.
type hideVerifier struct{ Journal }

// BenchmarkPartitionRead measures a read (GetSession, which persists
// nothing) on an existing activation whose journal is the leader of a
// 3-replica partition: "fenced" confirms leadership per read (batched
// raft.VerifyLeader), "unfenced" is the same journal with the fence hidden.
func BenchmarkPartitionRead(b *testing.B) {
	rs := startReplicas(b, 3)
	l := rs.parts[rs.leader()]
	for _, bc := range []struct {
		name string
		j    Journal
	}{{"fenced", l}, {"unfenced", hideVerifier{l}}} {
		b.Run(bc.name, func(b *testing.B) {
			h := startPartitionHost(b, bc.j, 5)
			for i := range 8 {
				createSession(b, h, fmt.Sprintf("%s-%d", bc.name, i), time.Hour)
			}
			ctx := context.Background()
			get := &protocol.GetSession{}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := h.Request(ctx, session.KindName, bc.name+"-0", get); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				var next atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					id := fmt.Sprintf("%s-%d", bc.name, next.Add(1)%8)
					for pb.Next() {
						if _, err := h.Request(ctx, session.KindName, id, get); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
