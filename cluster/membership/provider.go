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
// caller that reads them afterwards. The push itself is fenced against
// protoactor's gossip actor (fence.go).
//
// Caveat for hosts: a member that protoactor dropped (left, or declared dead
// by memberlist, even wrongly during a partition) is block-listed by ID on
// every node. If it turns out alive, memberlist takes it back but protoactor
// does not: its host must restart the actor system (a new ID) to rejoin.
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
	// Leaving: the member announced a graceful leave (it gets no new work
	// from then on, and its departure is reported as left, not dead).
	Leaving bool
	// Self marks this node.
	Self bool
	// Since is when this node observed the member enter State.
	Since time.Time
}

// Hosting reports whether protoactor may place activations on m.
func (m *Member) Hosting() bool {
	return (m.State == StateAlive || m.State == StateSuspect) && m.MetaErr == nil &&
		!m.Leaving && !m.Meta.Client && m.Meta.RemotePort > 0
}

// unreachable reports whether m was declared dead without leaving: a
// crash, or a network partition it may come back from under the same id.
func (m *Member) unreachable() bool {
	return m.State == StateDead && m.MetaErr == nil && !m.Leaving && !m.Meta.Client && m.Meta.RemotePort > 0
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
	// forget drops protoactor's cached PIDs on a member (set by
	// StartMember/StartClient). protoactor does that itself for members
	// that leave its topology; with KeepUnreachable a dead member stays,
	// so the provider does it, or every first request to an actor that
	// lived there would wait out an attempt timeout.
	forget    func(host string, port int)
	forgotten map[string]bool // member ids forget ran for; topology goroutine only
	seeds     []string

	// sinkMu is held while sink runs. Only the topology goroutine calls sink;
	// tests take sinkMu to order their reads of protoactor state that the
	// push writes without synchronisation (disthash's placement table).
	sinkMu sync.Mutex

	// metaBytes is this node's encoded Meta, fixed before memberlist starts
	// (memberlist reads it through NodeMeta from its own goroutines).
	metaBytes []byte

	mu         sync.Mutex
	selfID     string
	members    map[string]*memberRecord
	subs       map[*subscription]struct{}
	subsClosed bool // after Shutdown: Subscribe hands out closed channels
	// leaving holds the IDs that announced a graceful leave, with when;
	// kept apart from members because the announcement may arrive first.
	leaving     map[string]time.Time
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
	node    memberlist.Node // name and address, to send to it
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
		leaving:  make(map[string]time.Time),
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
	p.forget = pidForgetter(c)
	return p.start(c.ActorSystem.ID, c.Config.Name, Meta{RemoteHost: host, RemotePort: port, Kinds: kinds}, topologySink(c))
}

func pidForgetter(c *cluster.Cluster) func(string, int) {
	return func(host string, port int) {
		c.PidCache.RemoveByMember(&cluster.Member{Host: host, Port: int32(port)})
	}
}

// StartClient joins gossip as a protoactor cluster client: it learns the
// topology but is not part of it.
func (p *Provider) StartClient(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("membership: actor system address: %w", err)
	}
	p.forget = pidForgetter(c)
	return p.start(c.ActorSystem.ID, c.Config.Name, Meta{RemoteHost: host, RemotePort: port, Client: true}, topologySink(c))
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
	meta.Incarnation, meta.Partitions, meta.MasterKeyID = p.cfg.Incarnation, p.cfg.Partitions, p.cfg.MasterKeyID
	b, err := meta.Encode()
	if err != nil {
		return fmt.Errorf("membership: start %s: %w", id, err)
	}
	p.metaBytes = b

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

// joinLoop re-joins the seeds whenever this node sees no other live member
// (seeds that came up after us, or a partition during which the others
// declared us dead), and every reconnectEvery ticks tries the addresses of
// members it holds for dead. memberlist itself only gossips with members it
// believes alive, so without this two halves of a healed network partition
// would stay apart for good, each seeing the other as dead.
func (p *Provider) joinLoop() {
	defer close(p.joinDone)
	if p.cfg.JoinRetryInterval < 0 {
		return
	}
	const reconnectEvery = 5
	t := time.NewTicker(p.cfg.JoinRetryInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if p.aliveOthers() == 0 && len(p.seeds) > 0 {
			p.join(p.seeds)
		} else if tick%reconnectEvery == 0 {
			p.reconnectDead()
		}
	}
}

// reconnectDead tries to merge state with up to 8 members believed dead
// (not left). A member that really is dead costs a failed dial; one that
// was only cut off comes back alive on both sides.
func (p *Provider) reconnectDead() {
	p.mu.Lock()
	var addrs []string
	for _, m := range p.members {
		if m.State == StateDead && len(addrs) < 8 {
			addrs = append(addrs, m.GossipAddr)
		}
	}
	p.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	if n, err := p.ml.Join(addrs); n > 0 {
		p.log.Info("reconnected to members held for dead", "contacted", n, "of", len(addrs))
	} else {
		p.log.Debug("members held for dead still unreachable", "addrs", addrs, "err", err)
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
	if p.subsClosed {
		p.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	p.subs[s] = struct{}{}
	if len(p.members) > 0 {
		s.ch <- p.snapshotLocked()
	}
	p.mu.Unlock()
	return s.ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.subs[s]; ok { // not cancelled, nor closed by Shutdown
			delete(p.subs, s)
			close(s.ch)
		}
	}
}

// Shutdown leaves the cluster. graceful first tells every live member
// directly that this node is leaving (they drop it from the topology at once
// and report it as left), then runs memberlist's Leave; without graceful the
// node just goes silent and the others detect it as dead. protoactor's
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
		p.announceLeaving()
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
	p.subsClosed = true
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

	if p.forget != nil && p.cfg.KeepUnreachable {
		if p.forgotten == nil {
			p.forgotten = map[string]bool{}
		}
		for i := range snap {
			m := &snap[i]
			switch {
			case m.unreachable() && !p.forgotten[m.ID]:
				p.forget(m.Meta.RemoteHost, m.Meta.RemotePort)
				p.forgotten[m.ID] = true
			case !m.unreachable():
				delete(p.forgotten, m.ID)
			}
		}
	}
	if p.sink == nil {
		return
	}
	// With KeepUnreachable, unreachable members stay in protoactor's
	// topology until their node is back under another id.
	hostingNodes := map[string]bool{}
	for i := range snap {
		if snap[i].Hosting() {
			hostingNodes[snap[i].Meta.NodeName] = true
		}
	}
	members := make(cluster.Members, 0, len(snap))
	for i := range snap {
		m := &snap[i]
		if !m.Hosting() && (!p.cfg.KeepUnreachable || !m.unreachable() || hostingNodes[m.Meta.NodeName]) {
			continue
		}
		members = append(members, &cluster.Member{
			Id:    m.ID,
			Host:  m.Meta.RemoteHost,
			Port:  int32(m.Meta.RemotePort),
			Kinds: m.Meta.Kinds, // snap is our own copy
		})
	}
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
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
	back := map[string]bool{} // nodes alive again under a new id
	for _, m := range p.members {
		if m.State == StateAlive || m.State == StateSuspect {
			back[m.Meta.NodeName] = true
		}
	}
	for id, m := range p.members {
		keep := p.cfg.DeadRetention
		if p.cfg.KeepUnreachable && m.unreachable() && !back[m.Meta.NodeName] {
			keep = p.cfg.UnreachableRetention
		}
		if (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) > keep {
			delete(p.members, id)
			pruned = true
		}
	}
	for id, at := range p.leaving {
		if now.Sub(at) > p.cfg.DeadRetention {
			delete(p.leaving, id)
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
	rec.node = memberlist.Node{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port}
	if _, ok := p.leaving[n.Name]; ok {
		rec.Leaving = true
	}
	state := StateAlive
	if left {
		state = StateDead
		if rec.Leaving {
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

// Leave announcements. memberlist's NotifyLeave does not say whether a
// member left or was declared dead (the dead message that a Leave sends is
// recognisable only inside memberlist), and a flag gossiped in the metadata
// just before Leave is unreliable: memberlist's broadcast queue drops a
// node's queued alive message as soon as a dead message about the same node
// is queued. So a leaving member first tells every live member directly, over
// memberlist's reliable (TCP, encrypted, labelled) user messages.
const leavingMsg = "ward-leaving/1 "

// userMsg prefixes the messages of Send: the prefix, the sender's id
// length as one byte, the id, then the payload.
const userMsg = "ward-user/1 "

func encodeUser(from string, payload []byte) []byte {
	b := make([]byte, 0, len(userMsg)+1+len(from)+len(payload))
	b = append(b, userMsg...)
	b = append(b, byte(len(from)))
	b = append(b, from...)
	return append(b, payload...)
}

func decodeUser(b []byte) (from string, payload []byte, ok bool) {
	if len(b) < len(userMsg)+1 || string(b[:len(userMsg)]) != userMsg {
		return "", nil, false
	}
	b = b[len(userMsg):]
	n := int(b[0])
	if n == 0 || len(b) < 1+n {
		return "", nil, false
	}
	return string(b[1 : 1+n]), b[1+n:], true
}

// MaxMessage is the largest payload Send carries: one UDP packet.
const MaxMessage = 1200

// Send delivers payload, best effort (one UDP packet, may be lost), to the
// member with id to; the receiver's Config.OnMessage gets it.
func (p *Provider) Send(to string, payload []byte) error {
	p.mu.Lock()
	rec, ok := p.members[to]
	self := p.selfID
	var node memberlist.Node
	if ok {
		node = rec.node
	}
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("membership: send to unknown member %s", to)
	}
	if len(payload) > MaxMessage || len(self) > 255 {
		return fmt.Errorf("membership: message of %d bytes exceeds %d", len(payload), MaxMessage)
	}
	p.lifeMu.Lock()
	ml := p.ml
	p.lifeMu.Unlock()
	if ml == nil {
		return errors.New("membership: not started")
	}
	return ml.SendBestEffort(&node, encodeUser(self, payload))
}

func encodeLeaving(id string) []byte { return []byte(leavingMsg + id) }

func decodeLeaving(b []byte) (string, bool) {
	s := string(b)
	if !strings.HasPrefix(s, leavingMsg) || len(s) == len(leavingMsg) {
		return "", false
	}
	return s[len(leavingMsg):], true
}

// announceLeaving tells every live member that this node is leaving, in
// parallel, waiting at most LeaveTimeout.
func (p *Provider) announceLeaving() {
	p.mu.Lock()
	msg := encodeLeaving(p.selfID)
	var peers []memberlist.Node
	for _, m := range p.members {
		if !m.Self && (m.State == StateAlive || m.State == StateSuspect) {
			peers = append(peers, m.node)
		}
	}
	p.mu.Unlock()
	done := make(chan struct{}, len(peers))
	for i := range peers {
		go func(n *memberlist.Node) {
			if err := p.ml.SendReliable(n, msg); err != nil {
				p.log.Warn("cannot announce leave; it will see us as dead", "member", n.Name, "err", err)
			}
			done <- struct{}{}
		}(&peers[i])
	}
	timeout := time.NewTimer(p.cfg.LeaveTimeout)
	defer timeout.Stop()
	for range peers {
		select {
		case <-done:
		case <-timeout.C:
			return
		}
	}
}

// markLeaving records a leave announcement. The announcement travels over
// TCP and the Leave over UDP gossip, so it may come second: a member already
// declared dead is then recorded as left.
func (p *Provider) markLeaving(id string) {
	p.mu.Lock()
	p.leaving[id] = time.Now()
	if rec := p.members[id]; rec != nil && !rec.Leaving {
		rec.Leaving = true
		if rec.State == StateDead {
			rec.State = StateLeft
		}
		p.log.Info("member is leaving", "member", id, "node", rec.Meta.NodeName)
	}
	p.mu.Unlock()
	p.notify()
}

// delegate receives memberlist's callbacks; a separate type keeps them off
// Provider's API.
type delegate struct{ p *Provider }

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.p.metaBytes) > limit {
		// Encode enforces MetaMaxSize; memberlist would panic on more.
		return nil
	}
	return d.p.metaBytes
}

func (d *delegate) NotifyMsg(b []byte) {
	if id, ok := decodeLeaving(b); ok {
		d.p.markLeaving(id)
		return
	}
	if from, payload, ok := decodeUser(b); ok && d.p.cfg.OnMessage != nil {
		d.p.cfg.OnMessage(from, payload)
	}
}
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

var logLevels = []struct {
	prefix string
	level  slog.Level
}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}}

// logWriter turns memberlist's "[LEVEL] memberlist: text" log lines into
// slog records at the matching level.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	level := slog.LevelInfo
	for _, l := range logLevels {
		if strings.HasPrefix(s, l.prefix) {
			level, s = l.level, strings.TrimSpace(s[len(l.prefix):])
			break
		}
	}
	ctx := context.Background()
	if w.l.Enabled(ctx, level) {
		w.l.Log(ctx, level, strings.TrimPrefix(s, "memberlist: "), "source", "memberlist")
	}
	return len(b), nil
}
