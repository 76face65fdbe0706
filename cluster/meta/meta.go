// Package meta is the cluster's meta Raft group (group 0 on every node's
// store): the cluster configuration (P, R, id), the members and their
// states, the partition assignment, and a key/value space for cluster-wide
// key state that later layers fill (signing keys, clients, tenants).
//
// Its state is small, so the state machine keeps it in memory and raft's
// snapshots (on the node's pebble store, like the log) carry it across
// restarts. Every node holds a replica: up to five voters, the rest
// non-voters that only follow, so every node can read the assignment
// locally.
package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/persistence/raftstore"
	"github.com/wardhq/ward/protocol"
)

// Group is the raft group id of the meta group on a node's store.
const Group = 0

// Limits on the key/value space: it is replicated to every node and held
// in memory, so it is for small records.
const (
	MaxKeyLen   = 256
	MaxValueLen = 64 << 10
)

// Errors of Apply.
var (
	ErrNotLeader      = errors.New("meta: not the meta leader")
	ErrInitialized    = errors.New("meta: cluster already initialized")
	ErrNotInitialized = errors.New("meta: cluster not initialized")
	ErrStale          = errors.New("meta: state changed since it was read")
	ErrInvalid        = errors.New("meta: invalid command")
)

// Config configures Open.
type Config struct {
	Store     *persistence.Store
	Transport raft.Transport
	LocalID   raft.ServerID
	// Raft is the base raft configuration; LocalID and Logger are set.
	Raft   *raft.Config
	Logger *slog.Logger
	// RaftLogOutput receives raft's own log; nil means stderr.
	RaftLogOutput io.Writer
	// OnCorrupt, when set, is called with every raft log read that finds
	// damaged bytes (see raftstore.Options.OnCorrupt).
	OnCorrupt func(error)
}

// Meta is this node's replica of the meta group.
type Meta struct {
	raft   *raft.Raft
	stores *raftstore.Stores
	trans  raft.Transport
	rc     *raft.Config
	fsm    *fsm
	log    *slog.Logger
}

// Open starts the node's meta replica. A node with no meta state waits to
// be bootstrapped (Bootstrap) or added by the meta leader.
func Open(cfg Config) (*Meta, error) {
	if cfg.Store == nil || cfg.Transport == nil || cfg.LocalID == "" {
		return nil, errors.New("meta: Config needs Store, Transport and LocalID")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "meta")
	rc := raft.DefaultConfig()
	if cfg.Raft != nil {
		c := *cfg.Raft
		rc = &c
	}
	rc.LocalID = cfg.LocalID
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft[meta " + string(cfg.LocalID) + "]", Level: hclog.Warn, Output: cfg.RaftLogOutput})
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("meta: raft config: %w", err)
	}
	stores, err := raftstore.New(cfg.Store.DB(), Group, raftstore.Options{OnCorrupt: cfg.OnCorrupt})
	if err != nil {
		return nil, fmt.Errorf("meta: raft stores: %w", err)
	}
	m := &Meta{stores: stores, trans: cfg.Transport, rc: rc, log: log, fsm: newFSM()}
	r, err := raft.NewRaft(rc, m.fsm, stores.Log, stores.Stable, stores.Snapshots, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("meta: start raft: %w", err)
	}
	m.raft = r
	return m, nil
}

// HasState reports whether this node has ever been part of a meta group.
func (m *Meta) HasState() (bool, error) {
	return raft.HasExistingState(m.stores.Log, m.stores.Stable, m.stores.Snapshots)
}

// Bootstrap starts a new meta group with servers as voters. It fails if
// this node already has meta state.
func (m *Meta) Bootstrap(servers []raft.Server) error {
	if err := m.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return fmt.Errorf("meta: bootstrap: %w", err)
	}
	return nil
}

// Raft is the meta group's raft instance (membership changes, stats).
func (m *Meta) Raft() *raft.Raft { return m.raft }

// IsLeader reports whether this node leads the meta group.
func (m *Meta) IsLeader() bool { return m.raft.State() == raft.Leader }

// Leader returns the meta leader's server id ("" if unknown).
func (m *Meta) Leader() raft.ServerID {
	_, id := m.raft.LeaderWithID()
	return id
}

// State returns a copy of the applied state.
func (m *Meta) State() *protocol.MetaState { return m.fsm.snapshot() }

// Version is the applied state's version (cheap; no copy).
func (m *Meta) Version() uint64 { return m.fsm.version() }

// Changes returns a channel that receives (coalesced) after every applied
// command or restore, and a cancel func.
func (m *Meta) Changes() (<-chan struct{}, func()) { return m.fsm.subscribe() }

// Apply commits cmd through the meta group and returns the command's own
// error (ErrInitialized, ErrStale, ErrInvalid...) once applied. It must run
// on the meta leader (ErrNotLeader otherwise).
func (m *Meta) Apply(ctx context.Context, cmd *protocol.MetaCommand) error {
	b, err := proto.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("meta: encode command: %w", err)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := m.raft.Apply(b, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("meta: apply: %w", ctx.Err())
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("meta: apply: %w (%w)", ErrNotLeader, err)
		}
		return fmt.Errorf("meta: apply: %w", err)
	}
	if r, ok := f.Response().(error); ok && r != nil {
		return r
	}
	return nil
}

// Configuration returns the meta group's latest raft configuration.
func (m *Meta) Configuration() (raft.Configuration, error) {
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("meta: configuration: %w", err)
	}
	return f.Configuration(), nil
}

// Close shuts the replica down; its state stays in the store.
func (m *Meta) Close() error {
	if err := m.raft.Shutdown().Error(); err != nil {
		return fmt.Errorf("meta: shutdown: %w", err)
	}
	return nil
}

// fsm is the meta state machine.
type fsm struct {
	mu    sync.Mutex
	state *protocol.MetaState
	subs  map[chan struct{}]struct{}
}

func newFSM() *fsm {
	return &fsm{state: &protocol.MetaState{}, subs: make(map[chan struct{}]struct{})}
}

func (f *fsm) snapshot() *protocol.MetaState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.Clone(f.state).(*protocol.MetaState)
}

func (f *fsm) version() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.GetVersion()
}

func (f *fsm) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	ch <- struct{}{} // the current state is news to a new subscriber
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}

func (f *fsm) notifyLocked() {
	for ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Apply implements raft.FSM. A command that breaks a rule returns its error
// and changes nothing; every replica decides the same way.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd protocol.MetaCommand
	if err := proto.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("%w: entry %d does not decode: %v", ErrInvalid, l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := proto.Clone(f.state).(*protocol.MetaState)
	if err := apply(next, &cmd); err != nil {
		return err
	}
	next.Version++
	f.state = next
	f.notifyLocked()
	return nil
}

func apply(s *protocol.MetaState, cmd *protocol.MetaCommand) error {
	switch c := cmd.GetCommand().(type) {
	case *protocol.MetaCommand_Init:
		if s.GetPartitions() != 0 {
			return ErrInitialized
		}
		in := c.Init
		if in.GetPartitions() == 0 || in.GetReplicas() == 0 || len(in.GetMembers()) == 0 || in.GetClusterId() == "" {
			return fmt.Errorf("%w: init needs a cluster id, partitions, replicas and members", ErrInvalid)
		}
		if err := validAssignment(in.GetAssignment(), int(in.GetPartitions())); err != nil {
			return err
		}
		s.ClusterId, s.Partitions, s.Replicas = in.GetClusterId(), in.GetPartitions(), in.GetReplicas()
		for i, m := range in.GetMembers() {
			mm := proto.Clone(m).(*protocol.MetaMember)
			mm.State = protocol.MemberState_MEMBER_STATE_ACTIVE
			mm.Joined = uint64(i + 1)
			s.Members = append(s.Members, mm)
			s.Initial = append(s.Initial, proto.Clone(mm).(*protocol.MetaMember))
		}
		s.Assignment = in.GetAssignment()
		for _, a := range in.GetAssignment() {
			s.InitialAssignment = append(s.InitialAssignment, proto.Clone(a).(*protocol.PartitionAssignment))
		}
	case *protocol.MetaCommand_UpsertMember:
		if s.GetPartitions() == 0 {
			return ErrNotInitialized
		}
		m := c.UpsertMember
		if m.GetName() == "" {
			return fmt.Errorf("%w: member without a name", ErrInvalid)
		}
		cur := FindMember(s, m.GetName())
		if cur == nil {
			var joined uint64
			for _, x := range s.Members {
				joined = max(joined, x.GetJoined())
			}
			cur = &protocol.MetaMember{Name: m.GetName(), Joined: joined + 1, State: protocol.MemberState_MEMBER_STATE_ACTIVE}
			s.Members = append(s.Members, cur)
		}
		cur.RaftAddr, cur.HttpAddr, cur.Incarnation = m.GetRaftAddr(), m.GetHttpAddr(), m.GetIncarnation()
		if m.GetState() != protocol.MemberState_MEMBER_STATE_UNSPECIFIED {
			cur.State = m.GetState()
		}
	case *protocol.MetaCommand_SetState:
		cur := FindMember(s, c.SetState.GetName())
		if cur == nil {
			return fmt.Errorf("%w: no member %q", ErrInvalid, c.SetState.GetName())
		}
		if c.SetState.GetState() == protocol.MemberState_MEMBER_STATE_UNSPECIFIED {
			return fmt.Errorf("%w: no state given", ErrInvalid)
		}
		cur.State = c.SetState.GetState()
	case *protocol.MetaCommand_SetAssignment:
		if s.GetPartitions() == 0 {
			return ErrNotInitialized
		}
		if c.SetAssignment.GetExpectVersion() != s.GetVersion() {
			return ErrStale
		}
		if err := validAssignment(c.SetAssignment.GetAssignment(), int(s.GetPartitions())); err != nil {
			return err
		}
		s.Assignment = c.SetAssignment.GetAssignment()
	case *protocol.MetaCommand_Put:
		k, v := c.Put.GetKey(), c.Put.GetValue()
		if k == "" || len(k) > MaxKeyLen || len(v) > MaxValueLen {
			return fmt.Errorf("%w: key of %d bytes or value of %d bytes out of bounds", ErrInvalid, len(k), len(v))
		}
		if c.Put.ExpectValue != nil && !bytes.Equal(s.Kv[k], c.Put.ExpectValue) {
			return fmt.Errorf("%w: key %q", ErrStale, k)
		}
		if s.Kv == nil {
			s.Kv = make(map[string][]byte)
		}
		s.Kv[k] = v
	case *protocol.MetaCommand_Delete:
		delete(s.Kv, c.Delete.GetKey())
	default:
		return fmt.Errorf("%w: unknown command %T", ErrInvalid, c)
	}
	return nil
}

func validAssignment(a []*protocol.PartitionAssignment, partitions int) error {
	if len(a) != partitions {
		return fmt.Errorf("%w: assignment for %d partitions, want %d", ErrInvalid, len(a), partitions)
	}
	for p, pa := range a {
		if len(pa.GetReplicas()) == 0 {
			return fmt.Errorf("%w: partition %d without replicas", ErrInvalid, p)
		}
		seen := map[string]bool{}
		for _, r := range pa.GetReplicas() {
			if r == "" || seen[r] {
				return fmt.Errorf("%w: partition %d replica %q empty or repeated", ErrInvalid, p, r)
			}
			seen[r] = true
		}
	}
	return nil
}

// FindMember returns the member named name in s, or nil.
func FindMember(s *protocol.MetaState, name string) *protocol.MetaMember {
	return find(s.GetMembers(), name)
}

// FindInitial returns the member named name as it was at cluster init (its
// raft address and incarnation then), or nil if it was not an initial member.
func FindInitial(s *protocol.MetaState, name string) *protocol.MetaMember {
	return find(s.GetInitial(), name)
}

func find(members []*protocol.MetaMember, name string) *protocol.MetaMember {
	for _, m := range members {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := proto.Marshal(f.state)
	if err != nil {
		return nil, fmt.Errorf("meta: snapshot: %w", err)
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("meta: read snapshot: %w", err)
	}
	var s protocol.MetaState
	if err := proto.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("meta: decode snapshot: %w", err)
	}
	f.mu.Lock()
	f.state = &s
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("meta: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
