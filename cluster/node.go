package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/cluster/placement/leaderlookup"
	"github.com/wardhq/ward/cluster/raftmux"
	"github.com/wardhq/ward/cluster/seal"
	"github.com/wardhq/ward/persistence"
)

// Defaults of NodeConfig.
const (
	DefaultPartitions = 16
	DefaultReplicas   = 3
	DefaultDeadAfter  = 5 * time.Minute
	// reconcileEvery is how often a node re-checks its partitions against
	// the assignment even when nothing was announced.
	reconcileEvery = 250 * time.Millisecond
	// transferPause spaces leadership transfers of one partition, so a
	// preferred leader that cannot take over does not cause a storm.
	transferPause = 5 * time.Second
	// membershipOpTimeout bounds one raft membership change.
	membershipOpTimeout = 10 * time.Second
)

// NodeConfig configures StartNode: one cluster node with its meta replica,
// its partition replicas and an actor host placing identities on partition
// leaders.
type NodeConfig struct {
	// Host is the host configuration; Journal, Journals, Partitions,
	// IdentityLookup, ClusterProvider and ReadyCheck are set by StartNode.
	Host Config
	// Store is the node's store; the node does not close it.
	Store *persistence.Store
	// Name is the node's stable name (its raft server id); default "node-1".
	Name string
	// Partitions is P (fixed at cluster init); 0 means DefaultPartitions.
	Partitions int
	// Replicas is R; 0 means DefaultReplicas (a lone node holds one).
	Replicas int
	// RaftAddr is the raft listener (all groups, one port); GossipAddr the
	// memberlist one. Empty means 127.0.0.1 with a free port.
	RaftAddr   string
	GossipAddr string
	// Join lists gossip addresses of existing members.
	Join []string
	// BootstrapExpect: with no cluster state yet, wait for this many
	// members and form a new cluster from them. 0 with no Join means 1
	// (a lone node); 0 with Join means "join an existing cluster".
	BootstrapExpect int
	// HTTPAddr and QUICAddr are advertised to the other members.
	HTTPAddr, QUICAddr string
	// GossipKey optionally encrypts gossip (16, 24 or 32 bytes).
	GossipKey []byte
	// Timing is the failure detector's; zero means membership.LANTiming.
	Timing membership.Timing
	// DeadAfter is how long a member may be unreachable before its
	// replicas are re-created elsewhere.
	DeadAfter time.Duration
	// Raft is the base raft configuration of partitions and meta; nil means
	// partition.LANConfig.
	Raft *raft.Config
	// Version is advertised in gossip.
	Version string
	// KeyPolicy is the signing keys' rotation policy, run by the meta
	// leader; zero fields take keyring.DefaultPolicy's values.
	KeyPolicy keyring.Policy
	// MasterKey seals the cluster's secrets in the meta group (see
	// node_seal.go); nil leaves them in plaintext, and a node without it
	// stops if its cluster's secrets are sealed.
	MasterKey *seal.Key
	// KeyGen makes signing keys; nil means RSA-2048 and P-256 keys from
	// the system's randomness.
	KeyGen keyring.KeyGen
}

// Node is one member of a Ward cluster.
type Node struct {
	*Host
	Table *placement.Table

	cfg         NodeConfig
	log         *slog.Logger
	mux         *raftmux.Mux
	meta        *meta.Meta
	gossp       *membership.Provider
	incarnation string

	slots     []*slot
	lookup    *leaderlookup.Lookup
	collector *nodeCollector
	keyGen    keyring.KeyGen
	keys      keysCache
	keysPoke  chan struct{}

	mu        sync.Mutex
	member    string // this host's member id once started
	transfers map[int]time.Time
	busy      map[int]bool // partitions with a membership change in flight
	missing   map[string]time.Time
	progress  map[string]map[int]uint64 // member id -> partition -> entries behind our commit index (see lag)
	claimed   map[int]time.Time         // partition -> when another member last announced it leads it
	fatal     error

	// leaving is set when a graceful stop begins (see announceLeaving).
	leaving atomic.Bool
	// sealBlockedBy names the members that kept the meta leader from
	// sealing the secrets when it last looked.
	sealBlockedBy atomic.Pointer[string]

	fatalCh chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped sync.Once
}

// ErrPartitionsMismatch: the node was started with a different P than its
// data directory or its cluster has.
var ErrPartitionsMismatch = errors.New("partition count mismatch")

// StartNode starts a cluster node: raft listener, meta replica, gossip,
// actor host; then forms or joins the cluster in the background. Ready
// reports when every partition has a known leader.
func StartNode(cfg NodeConfig) (n *Node, err error) {
	if cfg.Store == nil {
		return nil, errors.New("cluster: NodeConfig.Store is required")
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.Name == "" {
		cfg.Name = "node-1"
	}
	if cfg.RaftAddr == "" {
		cfg.RaftAddr = "127.0.0.1:0"
	}
	if cfg.GossipAddr == "" {
		cfg.GossipAddr = "127.0.0.1:0"
	}
	if cfg.BootstrapExpect == 0 && len(cfg.Join) == 0 {
		cfg.BootstrapExpect = 1
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.Raft == nil {
		cfg.Raft = partition.LANConfig()
		if cfg.BootstrapExpect == 1 && len(cfg.Join) == 0 {
			// A lone voter elects itself after one heartbeat timeout.
			cfg.Raft.HeartbeatTimeout = 100 * time.Millisecond
			cfg.Raft.ElectionTimeout = 100 * time.Millisecond
			cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
		}
	}
	if cfg.Timing == (membership.Timing{}) {
		cfg.Timing = membership.LANTiming()
	}
	if cfg.Host.Logger == nil {
		cfg.Host.Logger = slog.Default()
	}
	if err := checkKeyPolicy(cfg.KeyPolicy); err != nil {
		return nil, fmt.Errorf("cluster: signing keys: %w", err)
	}
	log := cfg.Host.Logger.With("component", "node") // the caller names the node (cmd/ward adds "node")

	inc, err := localIdentity(cfg.Store.DB(), cfg.Name, cfg.Partitions)
	if err != nil {
		return nil, err
	}
	n = &Node{
		Table:       placement.NewTable(cfg.Partitions),
		cfg:         cfg,
		log:         log,
		incarnation: inc,
		transfers:   make(map[int]time.Time),
		busy:        make(map[int]bool),
		missing:     make(map[string]time.Time),
		progress:    make(map[string]map[int]uint64),
		claimed:     make(map[int]time.Time),
		fatalCh:     make(chan struct{}),
		stop:        make(chan struct{}),
		keyGen:      cfg.KeyGen,
		keysPoke:    make(chan struct{}, 1),
	}
	if n.keyGen == nil {
		n.keyGen = generateKey
	}
	for p := range cfg.Partitions {
		n.slots = append(n.slots, &slot{id: uint32(p)})
	}
	built := n // n is nil on the error returns
	defer func() {
		if err != nil {
			built.shutdown(context.Background())
		}
	}()

	n.mux, err = raftmux.Listen(cfg.RaftAddr, raftmux.Options{})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listener on %s: %w", cfg.RaftAddr, err)
	}
	metaTrans, err := n.mux.Transport(meta.Group)
	if err != nil {
		return nil, fmt.Errorf("cluster: meta transport: %w", err)
	}
	mc := *cfg.Raft
	n.meta, err = meta.Open(meta.Config{
		Store: cfg.Store, Transport: metaTrans, LocalID: raft.ServerID(cfg.Name), Raft: &mc, Logger: cfg.Host.Logger,
		OnCorrupt: func(err error) { n.fail(fmt.Errorf("meta group: %w", err)) },
	})
	if err != nil {
		return nil, err
	}

	n.gossp, err = membership.New(membership.Config{
		NodeName:    cfg.Name,
		BindAddr:    cfg.GossipAddr,
		Seeds:       cfg.Join,
		SecretKey:   cfg.GossipKey,
		Timing:      cfg.Timing,
		HTTPAddr:    cfg.HTTPAddr,
		QUICAddr:    cfg.QUICAddr,
		RaftAddr:    n.mux.Addr().String(),
		Version:     cfg.Version,
		Incarnation: inc,
		Partitions:  cfg.Partitions,
		MasterKeyID: masterKeyID(cfg.MasterKey),
		OnMessage:   n.onMessage,
		Logger:      cfg.Host.Logger,
		// Placement follows partition leaders, not protoactor's
		// topology, so a member cut off by a partition can stay in it
		// (and unblocked) until it is back.
		KeepUnreachable: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: membership: %w", err)
	}

	hc := cfg.Host
	if hc.MaxAttempts == 0 {
		// Leaders move (elections, rebalancing, failover, a restarted
		// node's address reconnecting): a request keeps retrying, with
		// growing back-off, until its RequestTimeout. Attempts that fail
		// at once (no leader known yet, leader unreachable) must not use
		// up the count before the time: 40 attempts at the 250 ms back-off
		// cap span more than the default 5 s (16 ran out after ~2 s).
		hc.MaxAttempts = 40
	}
	hc.Journal = nil
	hc.Partitions = cfg.Partitions
	hc.Journals = func(p int) Journal { return n.slots[p] }
	// An activation request to a live leader is answered in milliseconds
	// (the grain loads its state after the answer). A leader cut off by a
	// network partition never answers, and Get blocks the request's
	// attempt meanwhile: a second leaves most of the request's budget for
	// retrying at the leader the majority elects.
	n.lookup = leaderlookup.New(n.Table, leaderlookup.WithActivationTimeout(time.Second))
	hc.IdentityLookup = n.lookup
	hc.ClusterProvider = n.gossp
	hc.ReadyCheck = n.allLed
	h, err := Start(hc)
	if err != nil {
		return nil, err
	}
	n.Host = h
	n.mu.Lock()
	n.member = h.MemberID()
	n.mu.Unlock()

	if err := n.checkPeersPartitions(); err != nil {
		return nil, err
	}
	if reg := cfg.Host.Registerer; reg != nil {
		n.collector = newNodeCollector(n)
		if err := reg.Register(n.collector); err != nil {
			return nil, fmt.Errorf("cluster: register node metrics: %w", err)
		}
	}

	n.wg.Add(5)
	go n.every(reconcileEvery, nil, n.formAndLead)
	go n.reconcileLoop()
	go n.every(announceEvery, nil, n.announce)
	go n.keysLoop()
	go n.sealLoop()
	return n, nil
}

// checkPeersPartitions refuses to run next to members started with another
// P: their keyspaces hash differently, so they cannot share a cluster.
func (n *Node) checkPeersPartitions() error {
	for _, m := range n.gossp.Members() {
		if m.Self || m.MetaErr != nil || m.Meta.Partitions == 0 {
			continue
		}
		if m.Meta.Partitions != n.cfg.Partitions {
			return fmt.Errorf("cluster: %w: this node was started with --partitions %d, but member %s of the cluster it joins has %d; a cluster's partition count is fixed at its creation",
				ErrPartitionsMismatch, n.cfg.Partitions, m.Meta.NodeName, m.Meta.Partitions)
		}
	}
	return nil
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// RaftAddr is the raft listener's address.
func (n *Node) RaftAddr() string { return n.mux.Addr().String() }

// GossipAddr is the gossip listener's address.
func (n *Node) GossipAddr() string { return n.gossp.GossipAddr() }

// Meta is the node's meta replica.
func (n *Node) Meta() *meta.Meta { return n.meta }

// Membership is the node's gossip provider.
func (n *Node) Membership() *membership.Provider { return n.gossp }

// Partition returns the local replica of partition p, or nil.
func (n *Node) Partition(p int) *partition.Partition { return n.slots[p].get() }

// Fatal is closed when the node hit an error it cannot run on (a P
// mismatch with its cluster, a failed replica); Err says which.
func (n *Node) Fatal() <-chan struct{} { return n.fatalCh }

// Err is the fatal error, if any.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fatal
}

func (n *Node) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fatal != nil {
		return
	}
	n.fatal = err
	n.log.Error("node cannot continue", "err", err)
	close(n.fatalCh)
}

// allLed reports whether every partition has a known leader.
func (n *Node) allLed() bool {
	for p := 0; p < n.Table.Partitions(); p++ {
		if _, _, ok := n.Table.Leader(p); !ok {
			return false
		}
	}
	return true
}

// Stop leaves the cluster: stops the host, the partitions, the meta
// replica and gossip (the store is the caller's to close after).
func (n *Node) Stop(ctx context.Context) error {
	return n.shutdown(ctx)
}

func (n *Node) shutdown(ctx context.Context) error {
	var errs []error
	n.stopped.Do(func() {
		close(n.stop)
		n.wg.Wait()
		n.handOff(ctx)
		if n.collector != nil {
			n.cfg.Host.Registerer.Unregister(n.collector)
		}
		if n.Host != nil {
			errs = append(errs, n.Host.Stop(ctx)) // also shuts gossip down (the provider)
		} else if n.gossp != nil {
			_ = n.gossp.Shutdown(false)
		}
		for _, s := range n.slots {
			if p := s.take(); p != nil {
				errs = append(errs, p.Close())
			}
		}
		if n.meta != nil {
			errs = append(errs, n.meta.Close())
		}
		if n.mux != nil {
			errs = append(errs, n.mux.Close())
		}
	})
	return errors.Join(errs...)
}

// localIdentity reads or creates the node's identity record in its store:
// the incarnation (new for every new data directory) and the P the data
// was created with, which must match.
func localIdentity(db *pebble.DB, name string, partitions int) (string, error) {
	key := []byte("\xf1node/identity")
	type record struct {
		Name        string `json:"name"`
		Incarnation string `json:"incarnation"`
		Partitions  int    `json:"partitions"`
	}
	v, closer, err := db.Get(key)
	switch {
	case err == nil:
		var r record
		jerr := json.Unmarshal(v, &r)
		_ = closer.Close()
		if jerr != nil {
			return "", fmt.Errorf("cluster: node identity record: %w: %w", persistence.ErrCorrupt, jerr)
		}
		if r.Partitions != partitions {
			return "", fmt.Errorf("cluster: %w: this data directory belongs to a cluster with %d partitions; the node was started with --partitions %d",
				ErrPartitionsMismatch, r.Partitions, partitions)
		}
		if r.Name != name {
			return "", fmt.Errorf("cluster: this data directory belongs to node %q, not %q: start it with --name %s, or use another --data", r.Name, name, r.Name)
		}
		return r.Incarnation, nil
	case errors.Is(err, pebble.ErrNotFound):
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("cluster: draw incarnation: %w", err)
		}
		r := record{Name: name, Incarnation: hex.EncodeToString(b[:]), Partitions: partitions}
		raw, _ := json.Marshal(r)
		if err := db.Set(key, raw, pebble.Sync); err != nil {
			return "", fmt.Errorf("cluster: write node identity: %w", err)
		}
		return r.Incarnation, nil
	default:
		return "", fmt.Errorf("cluster: read node identity: %w", err)
	}
}

// slot is the host's journal for one partition: the local replica while
// there is one, otherwise a not-leader answer (so the host's timer
// scheduler skips it and requests retry elsewhere).
type slot struct {
	id uint32
	mu sync.RWMutex
	p  *partition.Partition
}

func (s *slot) get() *partition.Partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.p
}

func (s *slot) set(p *partition.Partition) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

func (s *slot) take() *partition.Partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.p
	s.p = nil
	return p
}

func (s *slot) Load(key persistence.ActorKey) (*persistence.Loaded, error) {
	if p := s.get(); p != nil {
		return p.Load(key)
	}
	return nil, &partition.NotLeaderError{Partition: s.id}
}

func (s *slot) Commit(ctx context.Context, w *persistence.Write) error {
	if p := s.get(); p != nil {
		return p.Commit(ctx, w)
	}
	return &partition.NotLeaderError{Partition: s.id}
}

func (s *slot) DueTimers(until time.Time, limit int) ([]persistence.Timer, error) {
	if p := s.get(); p != nil {
		return p.DueTimers(until, limit)
	}
	return nil, &partition.NotLeaderError{Partition: s.id}
}

// every runs fn every d, and whenever wake fires (nil: never), until the
// node stops. It is one of the node's goroutines (n.wg).
func (n *Node) every(d time.Duration, wake <-chan struct{}, fn func()) {
	defer n.wg.Done()
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-wake:
		case <-tick.C:
		}
		fn()
	}
}

// LeaderEpoch and VerifyLeader forward the read fence (see grain.go) to
// the local replica. A slot whose replica was closed or replaced answers
// epoch 0 / not leader: an activation from before cannot be confirmed.
func (s *slot) LeaderEpoch() uint64 {
	if p := s.get(); p != nil {
		return p.LeaderEpoch()
	}
	return 0
}

func (s *slot) VerifyLeader(ctx context.Context, epoch uint64) error {
	if p := s.get(); p != nil {
		return p.VerifyLeader(ctx, epoch)
	}
	return &partition.NotLeaderError{Partition: s.id}
}

func (s *slot) Feed(after uint64, limit int) ([]persistence.FeedEntry, error) {
	if p := s.get(); p != nil {
		return p.Feed(after, limit)
	}
	return nil, &partition.NotLeaderError{Partition: s.id}
}

func (s *slot) TrimFeed(ctx context.Context, through uint64) error {
	if p := s.get(); p != nil {
		return p.TrimFeed(ctx, through)
	}
	return &partition.NotLeaderError{Partition: s.id}
}
