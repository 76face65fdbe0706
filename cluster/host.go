// Package cluster is Ward's production runtime. This file holds Host: it runs
// every actors.Kind as a protoactor-go virtual actor (grain), makes each
// step's events durable in a Journal before anything else of that step leaves
// (write-ahead), passivates idle activations, and fires durable timers.
//
// Membership (memberlist) and placement on Raft partition leaders come next;
// the protoactor cluster provider and identity lookup are taken from Config so
// that they can be swapped without touching the hosting adapter.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// Journal is what the host needs of actor storage; *persistence.Store and
// *partition.Partition implement it.
//
// Load and Commit errors wrapping partition.ErrNotLeader (or ErrNotReady)
// are answered with NOT_LEADER, which Host.call retries at the actor's new
// placement. A journal that can be deposed should also implement
// leaderVerifier (grain.go), which fences reads answered from memory.
type Journal interface {
	// Load returns the actor's journal, including its stored replies,
	// which seed the activation's dedupe of retried requests.
	Load(key persistence.ActorKey) (*persistence.Loaded, error)
	// Commit returns once w is durable; an error means nothing was written,
	// except one wrapping partition.ErrOutcomeUnknown (the write may yet
	// apply; w.Reply then answers the retry).
	Commit(ctx context.Context, w *persistence.Write) error
	DueTimers(until time.Time, limit int) ([]persistence.Timer, error)
}

// Defaults for Config.
const (
	DefaultPassivateAfter = 5 * time.Minute
	DefaultSnapshotEvery  = 100
	DefaultRequestTimeout = 5 * time.Second
	DefaultTimerPoll      = time.Second
	DefaultTimerBatch     = 1024
	DefaultMaxAttempts    = 5
	DefaultRetryBackoff   = 5 * time.Millisecond
	DefaultClusterName    = "ward"
	DefaultEventLogKind   = "eventlog"
	DefaultRelayPoll      = time.Second
	DefaultBindHost       = "127.0.0.1"
)

// Tuning of the request path (see dispatcher.go and call.go).
const (
	maxDispatchWorkers = 512
	dispatchThroughput = 300 // protoactor's default: messages per burst before yielding
	maxFreeReplyBoxes  = 1024
)

// maxIDLen matches the store's limit on kinds, ids and timer names.
const maxIDLen = 4096

// Config configures Start. Journal, or Journals with Partitions, is required.
type Config struct {
	Kinds   []actors.Kind
	Journal Journal
	// Journals, when set with Partitions > 0, routes each identity to the
	// journal of its partition (placement.PartitionOf(kind, id, Partitions))
	// instead of the single Journal. The timer scheduler polls every
	// partition's journal; journals that answer with a not-leader error
	// (anything wrapping partition.ErrNotLeader) are skipped.
	Journals   func(partition int) Journal
	Partitions int
	// EventLogKind is the actor kind (one per tenant, id = tenant) that the
	// relay hands emitted domain events to (relay.go); default "eventlog".
	// When no hosted kind has this name the relay does not run and emitted
	// events stay in the journals' feeds.
	EventLogKind string
	// RelayPoll is how often the relay looks at the feeds when no commit
	// woke it; default DefaultRelayPoll.
	RelayPoll time.Duration
	// ReadyCheck, when set, must also hold for Ready (the partitioned node
	// uses it to wait until every partition has a leader).
	ReadyCheck func() bool
	// PassivateAfter is how long an activation may sit idle before it stops
	// (its state is durable; the next message re-activates it).
	PassivateAfter time.Duration
	// SnapshotEvery: a step that brings the events since the last snapshot
	// to this many also writes a snapshot, bounding activation time.
	SnapshotEvery int
	// RequestTimeout bounds one Request (all its attempts) when the caller's
	// context has no earlier deadline, and one journal commit.
	RequestTimeout time.Duration
	// Clock is the actors' time and the timer scheduler's. Tests inject it.
	Clock func() time.Time
	// Entropy is the actors' randomness; default crypto/rand.Reader.
	Entropy    io.Reader
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// ClusterName, BindHost and Port set up protoactor remoting. Everything
	// listens on loopback unless told otherwise; port 0 picks a free port.
	ClusterName string
	BindHost    string
	Port        int
	// ClusterProvider feeds membership to protoactor; nil means a private
	// in-memory provider (a single-node cluster).
	ClusterProvider pcluster.ClusterProvider
	// IdentityLookup places activations; nil means protoactor's disthash.
	IdentityLookup pcluster.IdentityLookup

	// TimerPoll is how often the scheduler reads due timers from the journal
	// (it also wakes for timers it already holds). Default 1 s.
	TimerPoll time.Duration
	// TimerBatch caps the timers read per poll. Default 1024.
	TimerBatch int
	// MaxAttempts bounds the tries of one request on dead letters and
	// timeouts; RetryBackoff is the first back-off, doubled per attempt.
	MaxAttempts  int
	RetryBackoff time.Duration

	// rawKinds are plain protoactor kinds hosted next to ours: the
	// benchmarks use one as the baseline.
	rawKinds []*pcluster.Kind
}

func (c *Config) withDefaults() error {
	if c.Journals != nil {
		if c.Partitions < 1 {
			return errors.New("cluster: Config.Journals needs Partitions >= 1")
		}
	} else if c.Journal == nil {
		return errors.New("cluster: Config.Journal is required")
	}
	if c.PassivateAfter <= 0 {
		c.PassivateAfter = DefaultPassivateAfter
	}
	if c.SnapshotEvery <= 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Entropy == nil {
		c.Entropy = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.BindHost == "" {
		c.BindHost = DefaultBindHost
	}
	if c.TimerPoll <= 0 {
		c.TimerPoll = DefaultTimerPoll
	}
	if c.EventLogKind == "" {
		c.EventLogKind = DefaultEventLogKind
	}
	if c.RelayPoll <= 0 {
		c.RelayPoll = DefaultRelayPoll
	}
	if c.TimerBatch <= 0 {
		c.TimerBatch = DefaultTimerBatch
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	return nil
}

// Host runs actor kinds on one protoactor cluster member.
type Host struct {
	cfg     Config
	log     *slog.Logger
	journal Journal   // the single journal (nil when journals is set)
	parts   []Journal // journal per partition (nil: single journal)
	kinds   map[string]*hostedKind
	entropy io.Reader
	metrics *metrics
	topics  *topics
	timers  *scheduler
	relay   *eventRelay
	system  *actor.ActorSystem
	cluster *pcluster.Cluster

	dispatcher *workerDispatcher
	boxes      replyBoxes // reply boxes free for reuse
	awaiting   remoteWaits
	// stopPlacementWatch ends watchPlacement's goroutine.
	stopPlacementWatch func()

	nonce  string // makes request ids unique across hosts and restarts
	reqSeq atomic.Uint64

	// gate orders Request admission against Stop: once stopping is set no
	// new request is counted in requests, so Stop can wait for the rest.
	gate     sync.RWMutex
	stopping bool
	requests sync.WaitGroup
	// sends counts actor-to-actor deliveries in flight.
	sends sync.WaitGroup

	activations activationSet

	started  atomic.Bool
	member   atomic.Bool // this node is in the cluster topology
	stopOnce sync.Once
	stopErr  error
}

// hostedKind is one actors.Kind as the host runs it.
type hostedKind struct {
	actors.Kind
	m *kindMetrics
}

// Start brings up the actor system, remoting and a cluster member hosting
// cfg.Kinds, and starts the timer scheduler. protoactor's StartMember waits
// about a second for the topology to settle.
func Start(cfg Config) (h *Host, err error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	h = &Host{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "cluster"),
		journal: cfg.Journal,
		kinds:   make(map[string]*hostedKind, len(cfg.Kinds)),
		entropy: cfg.Entropy,
	}
	if cfg.Entropy != rand.Reader {
		// An injected reader (a seeded stream in tests) is rarely safe for
		// the concurrent use activations make of it.
		h.entropy = &lockedReader{r: cfg.Entropy}
	}
	var nonce [6]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, fmt.Errorf("cluster: draw host nonce: %w", err)
	}
	h.nonce = hex.EncodeToString(nonce[:]) + "-"
	if cfg.Journals != nil {
		h.parts = make([]Journal, cfg.Partitions)
		for p := range h.parts {
			if h.parts[p] = cfg.Journals(p); h.parts[p] == nil {
				return nil, fmt.Errorf("cluster: Config.Journals returned no journal for partition %d", p)
			}
		}
	}

	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	h.metrics = m
	h.topics = newTopics(m)
	h.activations.pids = make(map[persistence.ActorKey]*actor.PID)
	h.timers = newScheduler(h)
	h.relay = newRelay(h)
	h.dispatcher = newWorkerDispatcher(maxDispatchWorkers, dispatchThroughput)

	pkinds := make([]*pcluster.Kind, 0, len(cfg.Kinds)+len(cfg.rawKinds))
	for _, k := range cfg.Kinds {
		if err := validKind(k); err != nil {
			m.unregister()
			return nil, err
		}
		if _, dup := h.kinds[k.Name]; dup {
			m.unregister()
			return nil, fmt.Errorf("cluster: kind %q configured twice", k.Name)
		}
		hk := &hostedKind{Kind: k, m: m.forKind(k.Name)}
		h.kinds[k.Name] = hk
		pkinds = append(pkinds, pcluster.NewKind(k.Name, h.grainProps(hk)))
	}
	pkinds = append(pkinds, cfg.rawKinds...)

	protoLog := slog.New(quietHandler{cfg.Logger.Handler()}).With("component", "protoactor")
	h.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return protoLog }))
	provider := cfg.ClusterProvider
	if provider == nil {
		provider = test.NewTestProvider(test.NewInMemAgent())
	}
	lookup := cfg.IdentityLookup
	if lookup == nil {
		lookup = disthash.New()
	}
	const neverExpire = 100 * 365 * 24 * time.Hour
	ccfg := pcluster.Configure(cfg.ClusterName, provider, lookup,
		remote.Configure(cfg.BindHost, cfg.Port),
		pcluster.WithKinds(pkinds...),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
		// protoactor's gossip block-lists, for good, a member whose
		// heartbeat it has not seen for this long. A member cut off by a
		// network partition comes back under the same id and must not find
		// itself blocked; membership (memberlist) decides who is dead.
		pcluster.WithHeartbeatExpiration(neverExpire))

	// protoactor reports start-up failures (a port in use, a provider that
	// cannot register) by panicking.
	defer func() {
		if r := recover(); r != nil {
			m.unregister()
			h, err = nil, fmt.Errorf("cluster: start protoactor member on %s:%d: %v", cfg.BindHost, cfg.Port, r)
		}
	}()
	h.cluster = pcluster.New(h.system, ccfg)
	h.watchTopology()
	h.watchEndpoints()
	h.cluster.StartMember()
	h.stopPlacementWatch = h.watchPlacement()

	h.timers.start()
	h.relay.start()
	h.started.Store(true)
	h.log.Info("cluster host started", "address", h.system.Address(), "member", h.system.ID, "kinds", len(h.kinds))
	return h, nil
}

func validKind(k actors.Kind) error {
	switch {
	case k.Name == "":
		return errors.New("cluster: a kind has no name")
	case k.New == nil:
		return fmt.Errorf("cluster: kind %q has no constructor", k.Name)
	case strings.Contains(k.Name, "/"):
		// Sender identities travel as "kind/id".
		return fmt.Errorf("cluster: kind name %q contains '/'", k.Name)
	case k.Name == pcluster.TopicActorKind:
		return fmt.Errorf("cluster: kind name %q is reserved by protoactor", k.Name)
	}
	return nil
}

// Address is the host's remoting address (host:port).
func (h *Host) Address() string { return h.system.Address() }

// Ready reports whether the host accepts requests: started, not stopping,
// and a member of its own cluster topology.
func (h *Host) Ready() bool {
	if !h.started.Load() {
		return false
	}
	h.gate.RLock()
	stopping := h.stopping
	h.gate.RUnlock()
	if stopping || !h.member.Load() {
		return false
	}
	return h.cfg.ReadyCheck == nil || h.cfg.ReadyCheck()
}

// MemberID is this member's actor system id: its name in the cluster
// topology and in the placement table.
func (h *Host) MemberID() string { return h.system.ID }

// watchTopology keeps member current: whether this node is in the cluster
// topology. We follow the topology events rather than ask MemberList, whose
// member set is read without its lock upstream.
func (h *Host) watchTopology() {
	self := h.system.ID
	h.system.EventStream.Subscribe(func(evt any) {
		t, ok := evt.(*pcluster.ClusterTopology)
		if !ok {
			return
		}
		in := false
		for _, m := range t.GetMembers() {
			if m.GetId() == self {
				in = true
				break
			}
		}
		h.member.Store(in)
	})
}

// Subscribe delivers what actors publish to topic, from now on, until the
// returned cancel func is called or the host stops (the channel is then
// closed). A subscriber whose buffer is full misses messages rather than
// stalling the publishing actor.
func (h *Host) Subscribe(topic string, buffer int) (<-chan protocol.Message, func()) {
	return h.topics.subscribe(topic, buffer)
}

// Request sends msg to the actor kind/id, activating it if needed, and
// returns its reply (nil when the actor did not reply). Domain and hosting
// errors come back as *actors.Error; a cancelled or expired ctx also unwraps
// to ctx.Err().
func (h *Host) Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error) {
	if !h.enter() {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, "host is stopping")
	}
	defer h.requests.Done()
	if _, ok := h.kinds[kind]; !ok {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNKNOWN_KIND, "no actor kind %q", kind)
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if msg == nil {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "request to %s has no message", kind)
	}
	if _, ok := msg.(*protocol.TimerFired); ok {
		// Only the scheduler may fire timers; a forged one could end a
		// session early.
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "timer messages are delivered by the host only")
	}
	payload, err := protocol.Pack(msg)
	if err != nil {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "encode %s: %v", protocol.TypeName(msg), err)
	}
	env := &protocol.Envelope{Kind: kind, Id: id, RequestId: h.nextRequestID(), Payload: payload}
	resp, err := h.call(ctx, kind, id, env, nil)
	if err != nil {
		return nil, err
	}
	return decodeResponse(resp)
}

func validID(id string) error {
	switch {
	case id == "":
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "actor id is empty")
	case len(id) > maxIDLen:
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "actor id is %d bytes, limit %d", len(id), maxIDLen)
	case !utf8.ValidString(id):
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "actor id is not valid UTF-8")
	}
	return nil
}

// decodeResponse turns the wire Response into the caller's result.
func decodeResponse(resp *protocol.Response) (protocol.Message, error) {
	if e := resp.GetError(); e != nil {
		return nil, actors.FromProto(e)
	}
	if resp.GetMessage() == nil {
		return nil, nil
	}
	m, err := protocol.Unpack(resp.GetMessage())
	if err != nil {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "decode reply: %v", err)
	}
	return m, nil
}

// enter admits one external request unless the host is stopping.
func (h *Host) enter() bool {
	h.gate.RLock()
	defer h.gate.RUnlock()
	if h.stopping || !h.started.Load() {
		return false
	}
	h.requests.Add(1)
	return true
}

func (h *Host) nextRequestID() string {
	return h.nonce + strconv.FormatUint(h.reqSeq.Add(1), 36)
}

// activationSet tracks the live activations of this host so that Stop can
// passivate them whatever the identity lookup in use.
type activationSet struct {
	mu   sync.Mutex
	pids map[persistence.ActorKey]*actor.PID
}

func (s *activationSet) add(k persistence.ActorKey, pid *actor.PID) {
	s.mu.Lock()
	s.pids[k] = pid
	s.mu.Unlock()
}

func (s *activationSet) remove(k persistence.ActorKey, pid *actor.PID) {
	s.mu.Lock()
	if cur, ok := s.pids[k]; ok && cur.Equal(pid) {
		delete(s.pids, k)
	}
	s.mu.Unlock()
}

func (s *activationSet) all() []*actor.PID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*actor.PID, 0, len(s.pids))
	for _, p := range s.pids {
		out = append(out, p)
	}
	return out
}

func (s *activationSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pids)
}

// lockedReader serialises reads of a reader that is not safe for concurrent
// use.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// journalFor is the journal holding key's actor: its partition's when the
// host routes by partition, else the single journal.
func (h *Host) journalFor(key persistence.ActorKey) Journal {
	if h.parts == nil {
		return h.journal
	}
	return h.parts[placement.PartitionOf(key.Kind, key.ID, len(h.parts))]
}
