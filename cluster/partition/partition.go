package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/persistence/raftstore"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBatchWrites = 1024
	DefaultMaxInflight    = 1
	DefaultBatchWindow    = 2 * time.Millisecond
	DefaultApplyTimeout   = 5 * time.Second
	DefaultBarrierTimeout = 10 * time.Second
)

// LANConfig returns raft settings for replicas on one LAN or one machine:
// round trips of well under a millisecond, so timeouts can be short enough
// for a failover below 3 s (a follower notices a silent leader after
// 0.5-1 s, and an election takes about one more timeout).
func LANConfig() *raft.Config {
	c := raft.DefaultConfig()
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
	// CommitTimeout is how often the leader sends each follower an append
	// when it has nothing new, to carry the commit index (under load every
	// append carries it). raft's default, 50 ms: at 5 ms an idle 3-node
	// cluster spent 0.8-0.9 cores on those appends (32 follower streams),
	// against 0.3 at 50 ms, and loaded throughput did not move
	// (bench/RESULTS.md). A follower may apply the last entries of a burst
	// up to ~100 ms after its leader.
	c.CommitTimeout = 50 * time.Millisecond
	// Each entry is already a batch of writes; 256 entries per append lets a
	// lagging follower catch up in few round trips.
	c.MaxAppendEntries = 256
	c.SnapshotThreshold = 8192
	c.SnapshotInterval = 30 * time.Second
	c.TrailingLogs = 10240
	return c
}

// Config configures Open.
type Config struct {
	// ID is the partition number p: the raft group is p+1 on the node's
	// database (group 0 belongs to the meta group) and the actor data lives
	// in namespace p+1 of Store.
	ID uint32
	// Store is the node's store; the partition uses its database for the
	// raft log and its namespace p+1 for state. The partition does not own
	// it: close the partition first, then the store.
	Store *persistence.Store
	// Transport carries this group's raft traffic (a raftmux group
	// transport in production, raft.NewInmemTransport in tests).
	Transport raft.Transport
	// LocalID is this node's raft server id.
	LocalID raft.ServerID
	// Bootstrap, when non-empty, is the initial configuration, applied only
	// if the group has no state on this node yet. Give the same list on
	// every initial replica (or only on one).
	Bootstrap []raft.Server
	// Raft is the base raft configuration; nil means LANConfig(). LocalID,
	// Logger and NoSnapshotRestoreOnStart are set by Open.
	Raft *raft.Config
	// MaxBatchWrites caps the writes in one log entry.
	MaxBatchWrites int
	// MaxInflight caps the log entries proposed and not yet applied; 0
	// means DefaultMaxInflight. One entry in flight at a time gives the
	// biggest batches; raft pipelines its own appends in any case.
	MaxInflight int
	// BatchWindow is the longest a proposer with a free slot waits for the
	// expected number of writes (see take in commit.go); 0 means
	// DefaultBatchWindow, negative means never wait.
	BatchWindow time.Duration
	// ApplyTimeout bounds how long a proposal waits to enter raft's queue.
	ApplyTimeout time.Duration
	// BarrierTimeout bounds the catch-up barrier after winning leadership.
	BarrierTimeout time.Duration
	// OnLeadership is called with true when this node becomes a leader
	// ready to serve (after its barrier) and with false when it stops being
	// one. Calls come from one goroutine, in order; a slow callback delays
	// the next notification, not raft.
	OnLeadership func(isLeader bool)
	// OnCorrupt, when set, is called with every raft log read that finds
	// damaged bytes (see raftstore.Options.OnCorrupt).
	OnCorrupt func(error)
	// Registerer, when set, receives the partition's metrics; they are
	// unregistered on Close.
	Registerer prometheus.Registerer
	// Logger is for the partition's own messages; nil means slog.Default().
	Logger *slog.Logger
	// RaftLogLevel is the level of raft's own (hclog) output; zero means
	// warnings and errors only.
	RaftLogLevel hclog.Level
	// RaftLogOutput receives raft's log; nil means stderr.
	RaftLogOutput io.Writer
}

// Partition is one replica of one partition's raft group. It is safe for
// concurrent use.
type Partition struct {
	id      uint32
	ns      uint32
	store   *persistence.Store
	view    *persistence.View
	raft    *raft.Raft
	stores  *raftstore.Stores
	fsm     *fsm
	log     *slog.Logger
	metrics *metrics

	maxBatch       int
	applyTimeout   time.Duration
	barrierTimeout time.Duration
	onLeadership   func(bool)

	ready atomic.Bool // leader and barrier done in this leadership
	// readyTerm is the raft term of the leadership ready is about, 0 when
	// not ready; see LeaderEpoch. Set before ready, cleared after it.
	readyTerm atomic.Uint64

	// mu guards the commit queue and closing.
	mu       sync.Mutex
	queue    []*request
	closing  bool
	wake     chan struct{}
	inflight chan struct{} // semaphore of MaxInflight slots
	// waitTarget is the queue length at which an enqueuer wakes a proposer
	// that waits for a fuller batch (see take).
	waitTarget int
	window     time.Duration
	timer      *time.Timer // owned by the proposer
	lastBatch  atomic.Int64
	freeAt     time.Time     // when the waiter last freed a slot; guarded by mu
	proposed   chan proposal // proposer -> waiter, in proposal order
	// Batched leadership verification (see VerifyLeader), guarded by mu:
	// whether a verifier goroutine runs, and the round that starts after
	// the current one, which every caller arriving meanwhile joins.
	verifying  bool
	verifyNext *verifyRound

	stop      chan struct{}
	raftDown  chan struct{} // closed once raft.Shutdown has returned; see waitFuture
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	stats struct {
		entries, writes, verifies atomic.Uint64
	}
}

// Open starts the partition's raft replica on this node.
func Open(cfg Config) (*Partition, error) {
	if cfg.Store == nil || cfg.Transport == nil || cfg.LocalID == "" {
		return nil, errors.New("partition: Config needs Store, Transport and LocalID")
	}
	ns := cfg.ID + 1
	if ns == 0 || ns > persistence.MaxReplicatedNamespace {
		return nil, fmt.Errorf("partition: id %d out of range (max %d)", cfg.ID, persistence.MaxReplicatedNamespace-1)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "partition", "partition", cfg.ID, "node", cfg.LocalID)
	rc := LANConfig()
	if cfg.Raft != nil {
		c := *cfg.Raft
		rc = &c
	}
	rc.LocalID = cfg.LocalID
	rc.NoSnapshotRestoreOnStart = true // see the package doc
	level := cfg.RaftLogLevel
	if level == hclog.NoLevel {
		level = hclog.Warn
	}
	rc.Logger = hclog.New(&hclog.LoggerOptions{
		Name:   fmt.Sprintf("raft[p%d %s]", cfg.ID, cfg.LocalID),
		Level:  level,
		Output: cfg.RaftLogOutput,
	})
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("partition %d: raft config: %w", cfg.ID, err)
	}

	stores, err := raftstore.New(cfg.Store.DB(), ns, raftstore.Options{OnCorrupt: cfg.OnCorrupt})
	if err != nil {
		return nil, fmt.Errorf("partition %d: raft stores: %w", cfg.ID, err)
	}
	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(stores.Log, stores.Stable, stores.Snapshots)
		if err != nil {
			return nil, fmt.Errorf("partition %d: check raft state: %w", cfg.ID, err)
		}
		if has && tornBootstrap(stores.Log, stores.Stable, stores.Snapshots) {
			// raft.BootstrapCluster stores term 1, then the configuration
			// entry: a crash between the two left a group that "has
			// state" but no configuration, and never elects ("no known
			// peers"). Term 1 without a vote, an entry or a snapshot is
			// exactly that half-bootstrap, so it is started over.
			if err := stores.Stable.SetUint64([]byte("CurrentTerm"), 0); err != nil {
				return nil, fmt.Errorf("partition %d: reset a half-done bootstrap: %w", cfg.ID, err)
			}
			has = false
		}
		if !has {
			if err := raft.BootstrapCluster(rc, stores.Log, stores.Stable, stores.Snapshots, cfg.Transport,
				raft.Configuration{Servers: cfg.Bootstrap}); err != nil {
				return nil, fmt.Errorf("partition %d: bootstrap: %w", cfg.ID, err)
			}
		}
	}

	p := &Partition{
		id:             cfg.ID,
		ns:             ns,
		store:          cfg.Store,
		view:           cfg.Store.Namespace(ns),
		stores:         stores,
		log:            logger,
		maxBatch:       orDefault(cfg.MaxBatchWrites, DefaultMaxBatchWrites),
		applyTimeout:   orDefault(cfg.ApplyTimeout, DefaultApplyTimeout),
		barrierTimeout: orDefault(cfg.BarrierTimeout, DefaultBarrierTimeout),
		onLeadership:   cfg.OnLeadership,
		wake:           make(chan struct{}, 1),
		inflight:       make(chan struct{}, orDefault(cfg.MaxInflight, DefaultMaxInflight)),
		proposed:       make(chan proposal, orDefault(cfg.MaxInflight, DefaultMaxInflight)),
		stop:           make(chan struct{}),
		raftDown:       make(chan struct{}),
		waitTarget:     int(^uint(0) >> 1),
		window:         cfg.BatchWindow,
		timer:          time.NewTimer(time.Hour),
	}
	p.timer.Stop()
	if p.window == 0 {
		p.window = DefaultBatchWindow
	}
	p.metrics = newMetrics(cfg.Registerer, p)
	p.fsm = &fsm{store: cfg.Store, ns: ns, partition: cfg.ID, log: logger, metrics: p.metrics}
	r, err := raft.NewRaft(rc, p.fsm, stores.Log, stores.Stable, stores.Snapshots, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("partition %d: start raft: %w", cfg.ID, err)
	}
	p.raft = r
	if err := p.metrics.register(); err != nil {
		_ = r.Shutdown().Error()
		return nil, fmt.Errorf("partition %d: register metrics: %w", cfg.ID, err)
	}

	p.wg.Add(3)
	go p.watchLeadership()
	go p.propose()
	go p.await()
	return p, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ID returns the partition number.
func (p *Partition) ID() uint32 { return p.id }

// Raft exposes the underlying raft instance for diagnostics and tests.
// Changing membership through it directly is fine; applying entries is not
// (the state machine only understands journal batches).
func (p *Partition) Raft() *raft.Raft { return p.raft }

// LocalView reads this replica's copy of the partition's namespace without
// any leadership check: for diagnostics and tests, never for serving
// actors (a follower's copy may lag).
func (p *Partition) LocalView() *persistence.View { return p.view }

// IsReady reports whether this node is the leader and caught up, i.e.
// whether Load and DueTimers would be served.
func (p *Partition) IsReady() bool {
	return p.ready.Load() && p.raft.State() == raft.Leader
}

func (p *Partition) notLeader() error {
	addr, id := p.raft.LeaderWithID()
	return &NotLeaderError{Partition: p.id, LeaderID: id, LeaderAddress: addr}
}

// readCheck enforces the read rule of the package doc.
func (p *Partition) readCheck() error {
	if p.fsm.failed.Load() != nil {
		return fmt.Errorf("partition %d: %w", p.id, ErrFailed)
	}
	if p.raft.State() != raft.Leader {
		return p.notLeader()
	}
	if !p.ready.Load() {
		return fmt.Errorf("partition %d: %w", p.id, ErrNotReady)
	}
	return nil
}

// Load reads an actor's journal from the partition (cluster.Journal). Only
// a ready leader serves it; see the package doc.
func (p *Partition) Load(key persistence.ActorKey) (*persistence.Loaded, error) {
	if err := p.readCheck(); err != nil {
		return nil, err
	}
	return p.view.Load(key)
}

// DueTimers returns the partition's due timers (cluster.Journal). Only a
// ready leader serves it, so timers fire on one node.
func (p *Partition) DueTimers(until time.Time, limit int) ([]persistence.Timer, error) {
	if err := p.readCheck(); err != nil {
		return nil, err
	}
	return p.view.DueTimers(until, limit)
}

// LeaderEpoch identifies this node's current serving leadership of the
// partition: the raft term in which it became a ready leader, or 0 when it
// is not one. An activation reads it before its Load and hands it to
// VerifyLeader: the verification then also fails if leadership was lost
// and won back in between (the activation's state may have missed writes
// of another leader's term).
func (p *Partition) LeaderEpoch() uint64 {
	t := p.readyTerm.Load()
	if !p.ready.Load() {
		return 0
	}
	return t
}

// verifyRound is one raft leadership verification and the callers it
// answers.
type verifyRound struct {
	done chan struct{}
	err  error // set before done is closed
}

// VerifyLeader confirms that this node is still the partition's leader, in
// the leadership epoch (from LeaderEpoch) the caller's state was loaded in,
// by a round of heartbeats to a quorum (raft.VerifyLeader) that starts
// after the call. A node that has been deposed without noticing yet would
// otherwise serve reads from its own, possibly stale, state until its lease
// runs out.
//
// Verifications are batched: one runs at a time, and every caller arriving
// while it runs waits for the next one, which then answers all of them at
// the cost of one. A caller never joins a verification already under way:
// that one may have confirmed leadership before the caller's read.
//
// The error wraps ErrNotLeader when leadership is not confirmed, ErrClosed
// when the partition closes, or ctx's error.
func (p *Partition) VerifyLeader(ctx context.Context, epoch uint64) error {
	if epoch == 0 || p.LeaderEpoch() != epoch {
		return fmt.Errorf("partition %d: verify leadership: %w", p.id, p.notLeader())
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return fmt.Errorf("partition %d: verify leadership: %w", p.id, ErrClosed)
	}
	var r *verifyRound
	if p.verifying {
		if p.verifyNext == nil {
			p.verifyNext = &verifyRound{done: make(chan struct{})}
		}
		r = p.verifyNext
	} else {
		r = &verifyRound{done: make(chan struct{})}
		p.verifying = true
		// Added under mu while not closing, so Close's wg.Wait sees it.
		p.wg.Add(1)
		go p.verifyLoop(r)
	}
	p.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("partition %d: verify leadership: %w", p.id, ctx.Err())
	}
	if r.err != nil {
		return r.err
	}
	// Confirmed as leader in some term at or after the call; the same term
	// as epoch means the same, unbroken leadership (a node leads at most
	// once per term).
	if p.raft.CurrentTerm() != epoch || p.LeaderEpoch() != epoch {
		return fmt.Errorf("partition %d: verify leadership: leadership changed since epoch %d: %w", p.id, epoch, p.notLeader())
	}
	return nil
}

// verifyLoop runs verification rounds back to back, starting with r, while
// callers keep joining the next one.
func (p *Partition) verifyLoop(r *verifyRound) {
	defer p.wg.Done()
	for r != nil {
		p.stats.verifies.Add(1)
		if err := p.waitFuture(p.raft.VerifyLeader()); err != nil {
			r.err = fmt.Errorf("partition %d: verify leadership: %w", p.id, p.mapVerifyErr(err))
		}
		close(r.done)
		p.mu.Lock()
		r, p.verifyNext = p.verifyNext, nil
		if r == nil {
			p.verifying = false
		}
		p.mu.Unlock()
	}
}

func (p *Partition) mapVerifyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w (%w)", p.notLeader(), err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w (%w)", ErrClosed, err)
	}
	return err
}

// watchLeadership turns raft's leadership signal into the ready flag and
// OnLeadership calls.
func (p *Partition) watchLeadership() {
	defer p.wg.Done()
	notified := false
	notify := func(v bool) {
		if notified == v {
			return
		}
		notified = v
		p.log.Info("leadership changed", "leader", v)
		if p.onLeadership != nil {
			p.onLeadership(v)
		}
	}
	leaderCh := p.raft.LeaderCh()
	for {
		select {
		case <-p.stop:
			p.ready.Store(false)
			p.readyTerm.Store(0)
			notify(false)
			return
		case isLeader := <-leaderCh:
			// Any change starts a new leadership (or ends one): the new term
			// needs its own barrier before reads are served.
			p.ready.Store(false)
			p.readyTerm.Store(0)
			if !isLeader {
				notify(false)
				continue
			}
			// A previous leadership may have been notified and then lost
			// between two reads of leaderCh; report its end first.
			notify(false)
			err := p.waitFuture(p.raft.Barrier(p.barrierTimeout))
			if err != nil {
				// Leadership lost (leaderCh will say so) or the barrier
				// timed out; in the latter case step down so that another
				// replica can try rather than serving nothing.
				p.log.Warn("barrier after winning leadership failed", "err", err)
				if errors.Is(err, raft.ErrEnqueueTimeout) && p.raft.State() == raft.Leader {
					_ = p.raft.LeadershipTransfer().Error()
				}
				continue
			}
			// Only ready if nothing changed meanwhile; a pending value on
			// leaderCh means a newer leadership that needs its own barrier.
			if p.raft.State() == raft.Leader && len(leaderCh) == 0 {
				p.readyTerm.Store(p.raft.CurrentTerm())
				p.ready.Store(true)
				notify(true)
			}
		}
	}
}

// AddVoter adds (or updates) a voting member; it must run on the leader.
func (p *Partition) AddVoter(id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) error {
	if err := p.raft.AddVoter(id, addr, 0, timeout).Error(); err != nil {
		return p.mapLeaderErr(fmt.Sprintf("add voter %s at %s", id, addr), err)
	}
	return nil
}

// AddNonvoter adds a member that receives the log but does not vote, for
// catching a new replica up before promoting it.
func (p *Partition) AddNonvoter(id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) error {
	if err := p.raft.AddNonvoter(id, addr, 0, timeout).Error(); err != nil {
		return p.mapLeaderErr(fmt.Sprintf("add nonvoter %s at %s", id, addr), err)
	}
	return nil
}

// RemoveServer removes a member; it must run on the leader.
func (p *Partition) RemoveServer(id raft.ServerID, timeout time.Duration) error {
	if err := p.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
		return p.mapLeaderErr(fmt.Sprintf("remove server %s", id), err)
	}
	return nil
}

// LeadershipTransferToServer hands leadership to a given member, for
// rebalancing and draining.
func (p *Partition) LeadershipTransferToServer(id raft.ServerID, addr raft.ServerAddress) error {
	if err := p.raft.LeadershipTransferToServer(id, addr).Error(); err != nil {
		return p.mapLeaderErr(fmt.Sprintf("transfer leadership to %s", id), err)
	}
	return nil
}

// LeadershipTransfer hands leadership to whichever member is most caught up.
func (p *Partition) LeadershipTransfer() error {
	if err := p.raft.LeadershipTransfer().Error(); err != nil {
		return p.mapLeaderErr("transfer leadership", err)
	}
	return nil
}

func (p *Partition) mapLeaderErr(op string, err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		return fmt.Errorf("partition %d: %s: %w", p.id, op, p.notLeader())
	}
	return fmt.Errorf("partition %d: %s: %w", p.id, op, err)
}

// Stats is a point-in-time view of the replica.
type Stats struct {
	ID            uint32
	State         raft.RaftState
	Ready         bool
	LeaderID      raft.ServerID
	LeaderAddress raft.ServerAddress
	Term          uint64
	LastIndex     uint64
	CommitIndex   uint64
	// AppliedIndex is raft's: it runs slightly ahead of the state machine
	// (raft counts an entry applied when it hands it to the FSM goroutine).
	// StoredAppliedIndex is the last journal entry actually written to the
	// namespace.
	AppliedIndex       uint64
	StoredAppliedIndex uint64
	Configuration      raft.Configuration
	// Entries and Writes count the log entries this node proposed as leader
	// and the writes they carried: Writes/Entries is the mean batch size.
	Entries uint64
	Writes  uint64
	// Verifications counts the raft leadership verifications VerifyLeader
	// ran; concurrent callers share one.
	Verifications uint64
	// SkippedEntries counts entries this replica found already applied
	// (replayed after a restart) and skipped.
	SkippedEntries uint64
}

// Stats reports the replica's raft position and membership.
func (p *Partition) Stats() (Stats, error) {
	addr, id := p.raft.LeaderWithID()
	st := Stats{
		ID:             p.id,
		State:          p.raft.State(),
		Ready:          p.IsReady(),
		LeaderID:       id,
		LeaderAddress:  addr,
		LastIndex:      p.raft.LastIndex(),
		CommitIndex:    p.raft.CommitIndex(),
		AppliedIndex:   p.raft.AppliedIndex(),
		Entries:        p.stats.entries.Load(),
		Writes:         p.stats.writes.Load(),
		Verifications:  p.stats.verifies.Load(),
		SkippedEntries: p.fsm.skipped.Load(),
	}
	idx, err := p.view.AppliedIndex()
	if err != nil {
		return st, fmt.Errorf("partition %d: stats: %w", p.id, err)
	}
	st.StoredAppliedIndex = idx
	st.Term = p.raft.CurrentTerm()
	f := p.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return st, fmt.Errorf("partition %d: configuration: %w", p.id, err)
	}
	st.Configuration = f.Configuration()
	return st, nil
}

// Close stops the replica: queued commits fail with ErrClosed, in-flight
// ones with ErrOutcomeUnknown, raft shuts down, and every goroutine the
// partition started has exited when Close returns. The raft log and state
// stay in the store; Open resumes them. Safe to call more than once.
func (p *Partition) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		queued := p.queue
		p.queue = nil
		p.mu.Unlock()
		for _, r := range queued {
			r.done <- fmt.Errorf("partition %d: commit %s: %w", p.id, r.actor, ErrClosed)
		}
		close(p.stop)
		err := p.raft.Shutdown().Error()
		close(p.raftDown)
		p.wg.Wait()
		p.metrics.unregister()
		if err != nil {
			p.closeErr = fmt.Errorf("partition %d: shut down raft: %w", p.id, err)
		}
	})
	return p.closeErr
}

// compile-time check that Commit has the cluster.Journal shape.
var _ interface {
	Load(persistence.ActorKey) (*persistence.Loaded, error)
	Commit(context.Context, *persistence.Write) error
	DueTimers(time.Time, int) ([]persistence.Timer, error)
} = (*Partition)(nil)

// tornBootstrap reports a group whose only state is the term that
// raft.BootstrapCluster writes before its configuration entry: term 1, no
// vote cast, no log entry, no snapshot.
func tornBootstrap(logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) bool {
	term, err := stable.GetUint64([]byte("CurrentTerm"))
	if err != nil || term != 1 {
		return false
	}
	if vt, err := stable.GetUint64([]byte("LastVoteTerm")); err == nil && vt != 0 {
		return false
	}
	if last, err := logs.LastIndex(); err != nil || last != 0 {
		return false
	}
	list, err := snaps.List()
	return err == nil && len(list) == 0
}
