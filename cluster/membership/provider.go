// Package membership is Ward's cluster membership: hashicorp/memberlist
// gossip (SWIM failure detection, encrypted with a shared key) exposed to
// protoactor-go as a cluster.ClusterProvider, plus a small API of its own
// (Members, Subscribe) for the Raft placement layer.
//
// Identity. The memberlist node name is the protoactor actor system ID, not
// the operator's node name. protoactor block-lists, for good, every member ID
// that ever left its topology (upstream issue #1083), so a restarted node must
// come back under a new ID, and the actor system already draws a fresh one per
// process. The stable operator name travels in Meta.NodeName.
//
// Topology. memberlist calls its event delegate under its own node lock, so
// nothing may call back into memberlist (or into protoactor, which may take
// its own locks and send messages) from there. The delegate only copies the
// node into a private map and kicks a goroutine that waits for membership to
// settle (Config.Debounce), then pushes the FULL member set, itself included,
// to protoactor's MemberList.UpdateClusterTopology and to subscribers. The map
// is fed by events rather than rebuilt from memberlist's Members(), because
// Members() hands out pointers into memberlist's state that it keeps
// mutating under its lock (meta and address updates), a data race for any
// caller that reads them afterwards.
package membership

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as this node sees it.
type State int

const (
	// StateAlive: the member answers probes.
	StateAlive State = iota
	// StateSuspect is reserved. memberlist v0.7 tracks suspicion internally
	// but its API never reports it (its nodeState.State field shadows the
	// Node.State handed to delegates), so members go from alive straight to
	// dead here, after the suspicion timeout.
	StateSuspect
	// StateDead: the member stopped answering and did not refute suspicion
	// in time; it may come back (alive again) if it was only partitioned,
	// but protoactor will not take it back under the same ID.
	StateDead
	// StateLeft: the member announced a graceful leave.
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Member is one node as seen through gossip.
type Member struct {
	// ID is the memberlist node name: the member's protoactor actor system ID.
	ID    string
	State State
	// GossipAddr is the member's gossip address, host:port.
	GossipAddr string
	Meta       Meta
	// MetaErr is set when the member's metadata could not be decoded (a
	// node running an incompatible version). Such a member is listed but
	// never given to protoactor.
	MetaErr error
	// Self marks this node.
	Self bool
	// Since is when this node observed the member enter State.
	Since time.Time
}

// Hosting reports whether protoactor may place activations on m.
func (m *Member) Hosting() bool {
	return (m.State == StateAlive || m.State == StateSuspect) && m.MetaErr == nil &&
		!m.Meta.Client && !m.Meta.Leaving && m.Meta.RemotePort > 0
}

func (m *Member) clone() Member {
	c := *m
	c.Meta.Kinds = slices.Clone(m.Meta.Kinds)
	return c
}

// Provider implements protoactor's cluster.ClusterProvider on memberlist.
// One Provider serves one StartMember or StartClient; it cannot be restarted
// (a restarted node needs a new actor system ID anyway: make a new Provider).
type Provider struct {
	cfg Config
	log *slog.Logger

	lifeMu  sync.Mutex // serialises start and Shutdown
	started bool
	stopped bool
	ml      *memberlist.Memberlist
	sink    func(cluster.Members)
	seeds   []string

	metaMu    sync.Mutex
	meta      Meta
	metaBytes []byte

	mu          sync.Mutex
	selfID      string
	members     map[string]*memberRecord
	subs        map[*subscription]struct{}
	lastJoinErr error
	joinErrText string

	kick     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	joinDone chan struct{}
}

type memberRecord struct {
	Member
	rawMeta []byte
}

type subscription struct{ ch chan []Member }

var _ cluster.ClusterProvider = (*Provider)(nil)

// New validates cfg and returns a Provider; nothing listens until
// StartMember or StartClient.
func New(cfg Config) (*Provider, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	cfg.Seeds = slices.Clone(cfg.Seeds)
	cfg.SecretKey = slices.Clone(cfg.SecretKey)
	return &Provider{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "membership"),
		members:  make(map[string]*memberRecord),
		subs:     make(map[*subscription]struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		joinDone: make(chan struct{}),
	}, nil
}

// StartMember joins gossip as a member hosting c's kinds. It is called by
// protoactor's Cluster.StartMember (which panics on an error).
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("membership: actor system address: %w", err)
	}
	kinds := c.GetClusterKinds()
	sort.Strings(kinds) // deterministic metadata: an unchanged node never gossips an update
	return p.start(c.ActorSystem.ID, c.Config.Name, Meta{RemoteHost: host, RemotePort: port, Kinds: kinds}, c.MemberList.UpdateClusterTopology)
}

// StartClient joins gossip as a protoactor cluster client: it learns the
// topology but is not part of it.
func (p *Provider) StartClient(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("membership: actor system address: %w", err)
	}
	return p.start(c.ActorSystem.ID, c.Config.Name, Meta{RemoteHost: host, RemotePort: port, Client: true}, c.MemberList.UpdateClusterTopology)
}

// start creates the memberlist, joins the seeds once and starts the topology
// and join-retry goroutines. sink receives the protoactor member set.
func (p *Provider) start(id, clusterName string, meta Meta, sink func(cluster.Members)) error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.started {
		return errors.New("membership: provider already started")
	}
	if id == "" {
		return errors.New("membership: empty member id")
	}
	meta.NodeName = p.cfg.NodeName
	meta.HTTPAddr, meta.QUICAddr, meta.RaftAddr, meta.Version = p.cfg.HTTPAddr, p.cfg.QUICAddr, p.cfg.RaftAddr, p.cfg.Version
	b, err := meta.Encode()
	if err != nil {
		return fmt.Errorf("membership: start %s: %w", id, err)
	}
	p.metaMu.Lock()
	p.meta, p.metaBytes = meta, b
	p.metaMu.Unlock()

	mc, err := p.memberlistConfig(id, clusterName)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.selfID = id // before Create: it reports this node's own join
	p.mu.Unlock()
	p.sink = sink
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("membership: start gossip on %s: %w", p.cfg.BindAddr, err)
	}
	p.ml = ml
	p.started = true
	p.seeds = p.otherSeeds()
	p.log.Info("gossip started", "member", id, "node", p.cfg.NodeName, "gossip", p.GossipAddr(),
		"encrypted", len(p.cfg.SecretKey) > 0, "seeds", p.seeds)

	go p.topologyLoop()
	if len(p.seeds) > 0 {
		// Joining once here, synchronously, lets protoactor see the whole
		// cluster within its StartMember; failures are retried in the
		// background because nodes of a cluster start in any order.
		p.join(p.seeds)
	}
	go p.joinLoop()
	return nil
}

func (p *Provider) memberlistConfig(id, clusterName string) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	p.cfg.Timing.apply(mc)
	mc.Name = id
	host, port, err := splitHostPort(p.cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: BindAddr: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if p.cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(p.cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("membership: AdvertiseAddr: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	mc.Label = p.cfg.Label
	if mc.Label == "" {
		mc.Label = clusterName
	}
	if len(mc.Label) > memberlist.LabelMaxSize {
		return nil, fmt.Errorf("membership: label %q longer than %d bytes", mc.Label, memberlist.LabelMaxSize)
	}
	if len(p.cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(p.cfg.SecretKey)
	}
	d := &delegate{p: p}
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Logger = log.New(logWriter{l: p.log}, "", 0)
	return mc, nil
}

// otherSeeds drops this node's own address from the seed list, so that one
// list can be configured on every node.
func (p *Provider) otherSeeds() []string {
	self := map[string]bool{p.GossipAddr(): true}
	if _, port, err := splitHostPort(p.cfg.BindAddr); err == nil && port != 0 {
		self[p.cfg.BindAddr] = true
	}
	if p.cfg.AdvertiseAddr != "" {
		self[p.cfg.AdvertiseAddr] = true
	}
	var out []string
	for _, s := range p.cfg.Seeds {
		if s = strings.TrimSpace(s); s != "" && !self[s] {
			out = append(out, s)
		}
	}
	return out
}

// Join contacts existing members at addrs (host:port) and merges state with
// them; it returns how many were reached. Use it for an operator-initiated
// join; configured seeds are joined (and retried) automatically.
func (p *Provider) Join(addrs ...string) (int, error) {
	p.lifeMu.Lock()
	ml, ok := p.ml, p.started && !p.stopped
	p.lifeMu.Unlock()
	if !ok {
		return 0, errors.New("membership: join: provider not running")
	}
	n, err := ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("membership: join %v: %w", addrs, err)
	}
	return n, nil
}

func (p *Provider) join(seeds []string) {
	n, err := p.ml.Join(seeds)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lastJoinErr = fmt.Errorf("membership: join via %v: %w", seeds, err)
		// Retries repeat the same failure every few seconds while the seeds
		// are down: say it loudly once per distinct error.
		if text := err.Error(); text != p.joinErrText {
			p.joinErrText = text
			p.log.Warn("cannot join cluster yet; retrying", "seeds", seeds, "err", err)
		} else {
			p.log.Debug("join retry failed", "seeds", seeds, "err", err)
		}
		return
	}
	p.lastJoinErr, p.joinErrText = nil, ""
	p.log.Info("joined cluster", "contacted", n)
}

// joinLoop re-joins the seeds whenever this node sees no other live member:
// seeds that came up after us, or a partition during which the others
// declared us dead (memberlist itself only gossips with members it already
// knows to be alive, so an isolated node would otherwise stay alone).
func (p *Provider) joinLoop() {
	defer close(p.joinDone)
	if len(p.seeds) == 0 || p.cfg.JoinRetryInterval < 0 {
		return
	}
	t := time.NewTicker(p.cfg.JoinRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if p.aliveOthers() == 0 {
				p.join(p.seeds)
			}
		}
	}
}

func (p *Provider) aliveOthers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.members {
		if !m.Self && (m.State == StateAlive || m.State == StateSuspect) {
			n++
		}
	}
	return n
}

// LastJoinError is the error of the latest failed join attempt, nil once a
// join succeeded. A node with the wrong gossip key reports here why it is
// alone.
func (p *Provider) LastJoinError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastJoinErr
}

// GossipAddr is the address other nodes reach this node's gossip on (after
// start: with the port a port-0 bind picked), or "" before start.
func (p *Provider) GossipAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.members[p.selfID]; m != nil {
		return m.GossipAddr
	}
	return ""
}

// ID is this node's member ID (its actor system ID), "" before start.
func (p *Provider) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.selfID
}

// Members returns every member this node knows, itself included, sorted by
// ID: live ones and, for Config.DeadRetention, dead and left ones.
func (p *Provider) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snapshotLocked()
}

func (p *Provider) snapshotLocked() []Member {
	out := make([]Member, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, m.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Subscribe returns a channel that receives the full member list (as
// Members) after every settled change, starting with the current one, and a
// function that cancels the subscription and closes the channel. Delivery is
// latest-wins: a slow reader skips intermediate lists, never the newest, and
// never slows membership down.
func (p *Provider) Subscribe() (<-chan []Member, func()) {
	s := &subscription{ch: make(chan []Member, 1)}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	if len(p.members) > 0 {
		s.ch <- p.snapshotLocked()
	}
	p.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			p.mu.Lock()
			delete(p.subs, s)
			close(s.ch)
			p.mu.Unlock()
		})
	}
}

// Shutdown leaves the cluster. graceful announces the leave (others see the
// member as left at once, and stop placing work on it even before); without
// it the node just goes silent and the others detect it as dead. protoactor's
// own Cluster.Shutdown calls this only when graceful, so a host shutting down
// abruptly should call Shutdown(false) itself to release the gossip port.
func (p *Provider) Shutdown(graceful bool) error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if !p.started || p.stopped {
		return nil
	}
	p.stopped = true
	// Stop pushing topology first: our own leave must not reach the local
	// protoactor member list while the actor system winds down.
	close(p.stop)
	<-p.loopDone

	var errs []error
	if graceful {
		p.metaMu.Lock()
		m := p.meta
		m.Leaving = true
		b, err := m.Encode()
		if err == nil {
			p.meta, p.metaBytes = m, b
		}
		p.metaMu.Unlock()
		if err == nil {
			if err := p.ml.UpdateNode(p.cfg.LeaveTimeout); err != nil {
				errs = append(errs, fmt.Errorf("membership: announce leaving: %w", err))
			}
		}
		if err := p.ml.Leave(p.cfg.LeaveTimeout); err != nil {
			errs = append(errs, fmt.Errorf("membership: leave: %w", err))
		} else {
			// Leave returns once the message went to one member; keep
			// gossiping briefly so retransmissions reach the rest rather
			// than them waiting for failure detection.
			time.Sleep(3 * p.cfg.Timing.GossipInterval)
		}
	}
	if err := p.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("membership: shutdown gossip: %w", err))
	}
	<-p.joinDone
	p.mu.Lock()
	for s := range p.subs {
		delete(p.subs, s)
		close(s.ch)
	}
	p.mu.Unlock()
	p.log.Info("gossip stopped", "member", p.ID(), "graceful", graceful)
	return errors.Join(errs...)
}

// topologyLoop turns membership events into topology pushes: it waits for a
// kick, lets membership settle for Debounce (at most 4×Debounce under
// constant churn), then publishes. It also forgets long-dead members.
func (p *Provider) topologyLoop() {
	defer close(p.loopDone)
	pruneEvery := min(p.cfg.DeadRetention/2, 30*time.Second)
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
			if !p.settle() {
				return
			}
			p.publish()
		case <-prune.C:
			if p.pruneDead(time.Now()) {
				p.publish()
			}
		}
	}
}

// settle returns once no kick arrived for Debounce, or 4×Debounce passed;
// false if the provider stopped meanwhile.
func (p *Provider) settle() bool {
	quiet := time.NewTimer(p.cfg.Debounce)
	defer quiet.Stop()
	deadline := time.NewTimer(4 * p.cfg.Debounce)
	defer deadline.Stop()
	for {
		select {
		case <-p.stop:
			return false
		case <-p.kick:
			quiet.Reset(p.cfg.Debounce)
		case <-quiet.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}

func (p *Provider) publish() {
	p.mu.Lock()
	snap := p.snapshotLocked()
	for s := range p.subs {
		offer(s.ch, snap)
	}
	p.mu.Unlock()

	if p.sink == nil {
		return
	}
	members := make(cluster.Members, 0, len(snap))
	for i := range snap {
		m := &snap[i]
		if !m.Hosting() {
			continue
		}
		members = append(members, &cluster.Member{
			Id:    m.ID,
			Host:  m.Meta.RemoteHost,
			Port:  int32(m.Meta.RemotePort),
			Kinds: m.Meta.Kinds, // snap is our own copy
		})
	}
	p.sink(members)
}

// offer delivers v on ch (capacity 1), replacing an undelivered older value.
// Only the topology goroutine sends, under p.mu, so the second send cannot
// find the channel full.
func offer(ch chan []Member, v []Member) {
	select {
	case ch <- v:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- v:
	default:
	}
}

func (p *Provider) pruneDead(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pruned := false
	for id, m := range p.members {
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) > p.cfg.DeadRetention {
			delete(p.members, id)
			pruned = true
		}
	}
	return pruned
}

func (p *Provider) notify() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// observe records a memberlist event. It runs under memberlist's node lock:
// it only copies and signals.
func (p *Provider) observe(n *memberlist.Node, left bool) {
	now := time.Now()
	p.mu.Lock()
	rec := p.members[n.Name]
	if rec == nil {
		rec = &memberRecord{Member: Member{ID: n.Name, Self: n.Name == p.selfID, State: -1}}
		p.members[n.Name] = rec
	}
	if rec.rawMeta == nil || string(rec.rawMeta) != string(n.Meta) {
		rec.rawMeta = append([]byte{}, n.Meta...)
		rec.Meta, rec.MetaErr = DecodeMeta(n.Meta)
		if rec.MetaErr != nil {
			p.log.Warn("member has unreadable metadata; it gets no work", "member", n.Name, "err", rec.MetaErr)
		}
	}
	rec.GossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	state := StateAlive
	if left {
		state = StateDead
		if rec.Meta.Leaving {
			state = StateLeft
		}
	}
	if state != rec.State {
		rec.State, rec.Since = state, now
		p.log.Info("member "+state.String(), "member", n.Name, "node", rec.Meta.NodeName, "gossip", rec.GossipAddr)
	}
	p.mu.Unlock()
	p.notify()
}

// delegate receives memberlist's callbacks; a separate type keeps them off
// Provider's API.
type delegate struct{ p *Provider }

func (d *delegate) NodeMeta(limit int) []byte {
	d.p.metaMu.Lock()
	defer d.p.metaMu.Unlock()
	if len(d.p.metaBytes) > limit {
		// Encode enforces MetaMaxSize; memberlist would panic on more.
		return nil
	}
	return d.p.metaBytes
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.p.observe(n, false) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.p.observe(n, false) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.p.observe(n, true) }

func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	// Two processes claim one actor system ID: practically impossible with
	// generated IDs unless a node's state was cloned. memberlist keeps the
	// first; say so loudly.
	d.p.log.Error("two nodes claim one member ID; ignoring the newcomer",
		"member", existing.Name, "known", existing.Address(), "newcomer", other.Address())
}

// logWriter turns memberlist's "[LEVEL] memberlist: text" log lines into
// slog records at the matching level.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError} {
		if strings.HasPrefix(s, prefix) {
			level, s = l, strings.TrimSpace(s[len(prefix):])
			break
		}
	}
	ctx := context.Background()
	if w.l.Enabled(ctx, level) {
		w.l.Log(ctx, level, strings.TrimPrefix(s, "memberlist: "), "source", "memberlist")
	}
	return len(b), nil
}
