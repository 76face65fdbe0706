package meta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// applyCmd runs cmd through the state machine as raft would, as entry
// index, and returns Apply's answer as an error.
func applyCmd(t *testing.T, f *fsm, index uint64, cmd *protocol.MetaCommand) error {
	t.Helper()
	b, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	switch r := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(type) {
	case nil:
		return nil
	case error:
		return r
	default:
		t.Fatalf("Apply answered %T %v", r, r)
		return nil
	}
}

func initCmd(members ...string) *protocol.MetaCommand {
	in := &protocol.MetaInit{ClusterId: "c1", Partitions: 2, Replicas: 2}
	for i, m := range members {
		in.Members = append(in.Members, &protocol.MetaMember{Name: m, RaftAddr: fmt.Sprintf("10.0.0.%d:7000", i+1), Incarnation: "inc-" + m})
	}
	in.Assignment = []*protocol.PartitionAssignment{
		{Replicas: []string{members[0], members[1]}, Leader: members[0]},
		{Replicas: []string{members[1], members[0]}, Leader: members[1]},
	}
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_Init{Init: in}}
}

func setState(name string, s protocol.MemberState) *protocol.MetaCommand {
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_SetState{SetState: &protocol.MetaSetState{Name: name, State: s}}}
}

func setAssignment(expect uint64, a ...[]string) *protocol.MetaCommand {
	sa := &protocol.MetaSetAssignment{ExpectVersion: expect}
	for _, r := range a {
		sa.Assignment = append(sa.Assignment, &protocol.PartitionAssignment{Replicas: r, Leader: r[0]})
	}
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_SetAssignment{SetAssignment: sa}}
}

func put(k, v string) *protocol.MetaCommand {
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{Key: k, Value: []byte(v)}}}
}

func putIf(k, v string, expect []byte) *protocol.MetaCommand {
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{Key: k, Value: []byte(v), ExpectValue: expect}}}
}

func del(k string) *protocol.MetaCommand {
	return &protocol.MetaCommand{Command: &protocol.MetaCommand_Delete{Delete: &protocol.MetaDelete{Key: k}}}
}

// mustRefuse applies cmd, wants err (errors.Is), and checks the state,
// version included, did not move.
func mustRefuse(t *testing.T, f *fsm, index uint64, cmd *protocol.MetaCommand, want error) {
	t.Helper()
	before := f.snapshot()
	err := applyCmd(t, f, index, cmd)
	if !errors.Is(err, want) {
		t.Fatalf("apply %v: err %v, want %v", cmd, err, want)
	}
	if after := f.snapshot(); !proto.Equal(before, after) {
		t.Fatalf("refused command %v changed the state:\nbefore %v\nafter  %v", cmd, before, after)
	}
}

func TestFSMInit(t *testing.T) {
	f := newFSM()
	// Nothing but init is accepted on an empty state.
	mustRefuse(t, f, 1, &protocol.MetaCommand{Command: &protocol.MetaCommand_UpsertMember{UpsertMember: &protocol.MetaMember{Name: "a"}}}, ErrNotInitialized)
	mustRefuse(t, f, 1, setAssignment(0, []string{"a"}, []string{"a"}), ErrNotInitialized)
	// Init without its parts is invalid.
	for name, in := range map[string]*protocol.MetaInit{
		"no cluster id": {Partitions: 1, Replicas: 1, Members: []*protocol.MetaMember{{Name: "a"}}, Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a"}}}},
		"no partitions": {ClusterId: "c", Replicas: 1, Members: []*protocol.MetaMember{{Name: "a"}}},
		"no replicas":   {ClusterId: "c", Partitions: 1, Members: []*protocol.MetaMember{{Name: "a"}}, Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a"}}}},
		"no members":    {ClusterId: "c", Partitions: 1, Replicas: 1, Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a"}}}},
		"short assignment": {ClusterId: "c", Partitions: 2, Replicas: 1, Members: []*protocol.MetaMember{{Name: "a"}},
			Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a"}}}},
		"repeated replica": {ClusterId: "c", Partitions: 1, Replicas: 2, Members: []*protocol.MetaMember{{Name: "a"}},
			Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a", "a"}}}},
		"partition without replicas": {ClusterId: "c", Partitions: 1, Replicas: 1, Members: []*protocol.MetaMember{{Name: "a"}},
			Assignment: []*protocol.PartitionAssignment{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			mustRefuse(t, f, 1, &protocol.MetaCommand{Command: &protocol.MetaCommand_Init{Init: in}}, ErrInvalid)
		})
	}

	if err := applyCmd(t, f, 2, initCmd("a", "b")); err != nil {
		t.Fatal(err)
	}
	st := f.snapshot()
	if st.GetClusterId() != "c1" || st.GetPartitions() != 2 || st.GetReplicas() != 2 || st.GetVersion() != 1 {
		t.Fatalf("after init: %v", st)
	}
	for i, name := range []string{"a", "b"} {
		m := FindMember(st, name)
		if m == nil || m.GetState() != protocol.MemberState_MEMBER_STATE_ACTIVE || m.GetJoined() != uint64(i+1) || m.GetIncarnation() != "inc-"+name {
			t.Fatalf("member %s after init: %v", name, m)
		}
		if in := FindInitial(st, name); in == nil || in.GetRaftAddr() != m.GetRaftAddr() {
			t.Fatalf("initial member %s: %v", name, in)
		}
	}
	if len(st.GetInitialAssignment()) != 2 || !proto.Equal(st.GetInitialAssignment()[0], st.GetAssignment()[0]) {
		t.Fatalf("initial assignment %v, assignment %v", st.GetInitialAssignment(), st.GetAssignment())
	}

	// A second init, even a different one, changes nothing.
	mustRefuse(t, f, 3, initCmd("a", "b"), ErrInitialized)
	mustRefuse(t, f, 3, initCmd("x", "y"), ErrInitialized)
	if FindMember(f.snapshot(), "x") != nil {
		t.Fatal("second init added a member")
	}
}

func TestFSMMembers(t *testing.T) {
	f := newFSM()
	if err := applyCmd(t, f, 1, initCmd("a", "b")); err != nil {
		t.Fatal(err)
	}
	upsert := func(m *protocol.MetaMember) *protocol.MetaCommand {
		return &protocol.MetaCommand{Command: &protocol.MetaCommand_UpsertMember{UpsertMember: m}}
	}
	mustRefuse(t, f, 2, upsert(&protocol.MetaMember{RaftAddr: "x:1"}), ErrInvalid)

	// A new member joins after the others, active.
	if err := applyCmd(t, f, 2, upsert(&protocol.MetaMember{Name: "c", RaftAddr: "10.0.0.3:7000", HttpAddr: "10.0.0.3:8080", Incarnation: "i1", Joined: 99})); err != nil {
		t.Fatal(err)
	}
	c := FindMember(f.snapshot(), "c")
	if c == nil || c.GetJoined() != 3 || c.GetState() != protocol.MemberState_MEMBER_STATE_ACTIVE || c.GetHttpAddr() != "10.0.0.3:8080" {
		t.Fatalf("new member: %v", c)
	}
	// An update changes the addresses and incarnation; join order and (with
	// no state given) the state stay.
	if err := applyCmd(t, f, 3, setState("c", protocol.MemberState_MEMBER_STATE_DEAD)); err != nil {
		t.Fatal(err)
	}
	if err := applyCmd(t, f, 4, upsert(&protocol.MetaMember{Name: "c", RaftAddr: "10.0.0.9:7000", Incarnation: "i2"})); err != nil {
		t.Fatal(err)
	}
	c = FindMember(f.snapshot(), "c")
	if c.GetRaftAddr() != "10.0.0.9:7000" || c.GetIncarnation() != "i2" || c.GetJoined() != 3 || c.GetState() != protocol.MemberState_MEMBER_STATE_DEAD {
		t.Fatalf("updated member: %v", c)
	}
	// A state given with the upsert is taken (a dead member coming back).
	if err := applyCmd(t, f, 5, upsert(&protocol.MetaMember{Name: "c", RaftAddr: "10.0.0.9:7000", Incarnation: "i2", State: protocol.MemberState_MEMBER_STATE_ACTIVE})); err != nil {
		t.Fatal(err)
	}
	if s := FindMember(f.snapshot(), "c").GetState(); s != protocol.MemberState_MEMBER_STATE_ACTIVE {
		t.Fatalf("state after upsert with state: %v", s)
	}
	if n := len(f.snapshot().GetMembers()); n != 3 {
		t.Fatalf("%d members, want 3", n)
	}

	// set_state: every state, unknown member and no state refused.
	for i, s := range []protocol.MemberState{protocol.MemberState_MEMBER_STATE_DRAINING, protocol.MemberState_MEMBER_STATE_REMOVED} {
		if err := applyCmd(t, f, uint64(6+i), setState("b", s)); err != nil {
			t.Fatal(err)
		}
		if got := FindMember(f.snapshot(), "b").GetState(); got != s {
			t.Fatalf("b is %v, want %v", got, s)
		}
	}
	mustRefuse(t, f, 8, setState("nobody", protocol.MemberState_MEMBER_STATE_DEAD), ErrInvalid)
	mustRefuse(t, f, 8, setState("a", protocol.MemberState_MEMBER_STATE_UNSPECIFIED), ErrInvalid)
	// The initial members record is not touched by later changes.
	if in := FindInitial(f.snapshot(), "b"); in.GetState() != protocol.MemberState_MEMBER_STATE_ACTIVE {
		t.Fatalf("initial record of b changed: %v", in)
	}
	if FindInitial(f.snapshot(), "c") != nil {
		t.Fatal("a later member is listed as initial")
	}
	if v := f.version(); v != 7 {
		t.Fatalf("version %d after 7 accepted commands", v)
	}
}

func TestFSMAssignment(t *testing.T) {
	f := newFSM()
	if err := applyCmd(t, f, 1, initCmd("a", "b")); err != nil {
		t.Fatal(err)
	}
	v := f.version()
	mustRefuse(t, f, 2, setAssignment(v-1, []string{"b"}, []string{"a"}), ErrStale)
	mustRefuse(t, f, 2, setAssignment(v+1, []string{"b"}, []string{"a"}), ErrStale)
	mustRefuse(t, f, 2, setAssignment(v, []string{"b"}), ErrInvalid)                               // one partition short
	mustRefuse(t, f, 2, setAssignment(v, []string{"b"}, []string{"a"}, []string{"a"}), ErrInvalid) // one too many
	mustRefuse(t, f, 2, setAssignment(v, []string{"b", "b"}, []string{"a"}), ErrInvalid)
	mustRefuse(t, f, 2, setAssignment(v, []string{"b", ""}, []string{"a"}), ErrInvalid)
	mustRefuse(t, f, 2, &protocol.MetaCommand{Command: &protocol.MetaCommand_SetAssignment{SetAssignment: &protocol.MetaSetAssignment{
		ExpectVersion: v, Assignment: []*protocol.PartitionAssignment{{Replicas: []string{"a"}}, {}}}}}, ErrInvalid)

	if err := applyCmd(t, f, 2, setAssignment(v, []string{"b"}, []string{"a", "b"})); err != nil {
		t.Fatal(err)
	}
	st := f.snapshot()
	if st.GetVersion() != v+1 || st.GetAssignment()[0].GetReplicas()[0] != "b" || len(st.GetAssignment()[1].GetReplicas()) != 2 {
		t.Fatalf("after set_assignment: %v", st)
	}
	// The same command again is now stale: it read version v.
	mustRefuse(t, f, 3, setAssignment(v, []string{"a"}, []string{"a"}), ErrStale)
	// Any other change also makes a read stale.
	if err := applyCmd(t, f, 3, put("k", "v")); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, f, 4, setAssignment(v+1, []string{"a"}, []string{"a"}), ErrStale)
	if err := applyCmd(t, f, 4, setAssignment(v+2, []string{"a"}, []string{"a"})); err != nil {
		t.Fatal(err)
	}
	// The initial assignment stays as it was at init.
	if got := f.snapshot().GetInitialAssignment()[0].GetReplicas(); len(got) != 2 {
		t.Fatalf("initial assignment changed: %v", got)
	}
}

func TestFSMKeyValue(t *testing.T) {
	f := newFSM()
	// The key space does not need an initialised cluster.
	if err := applyCmd(t, f, 1, put("keys/signing", "one")); err != nil {
		t.Fatal(err)
	}
	if err := applyCmd(t, f, 2, put("keys/signing", "two")); err != nil {
		t.Fatal(err)
	}
	if err := applyCmd(t, f, 3, put("empty", "")); err != nil {
		t.Fatal(err)
	}
	kv := f.snapshot().GetKv()
	if string(kv["keys/signing"]) != "two" || len(kv) != 2 {
		t.Fatalf("kv %q", kv)
	}
	if _, ok := kv["empty"]; !ok {
		t.Fatal("a put of an empty value stored nothing")
	}

	// Bounds.
	mustRefuse(t, f, 4, put("", "x"), ErrInvalid)
	mustRefuse(t, f, 4, put(strings.Repeat("k", MaxKeyLen+1), "x"), ErrInvalid)
	mustRefuse(t, f, 4, put("big", strings.Repeat("v", MaxValueLen+1)), ErrInvalid)
	if err := applyCmd(t, f, 4, put(strings.Repeat("k", MaxKeyLen), strings.Repeat("v", MaxValueLen))); err != nil {
		t.Fatalf("put at the limits: %v", err)
	}

	// Compare-and-set: the expected value must be the current one; an
	// expected empty value means "absent or empty".
	mustRefuse(t, f, 5, putIf("keys/signing", "three", []byte("one")), ErrStale)
	mustRefuse(t, f, 5, putIf("absent", "x", []byte("something")), ErrStale)
	if err := applyCmd(t, f, 5, putIf("keys/signing", "three", []byte("two"))); err != nil {
		t.Fatal(err)
	}
	if err := applyCmd(t, f, 6, putIf("fresh", "x", []byte{})); err != nil {
		t.Fatalf("compare-and-set of an absent key against empty: %v", err)
	}

	// Delete, also of an absent key.
	if err := applyCmd(t, f, 7, del("keys/signing")); err != nil {
		t.Fatal(err)
	}
	if err := applyCmd(t, f, 8, del("never-there")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.snapshot().GetKv()["keys/signing"]; ok {
		t.Fatal("deleted key still there")
	}
	if v := f.version(); v != 8 {
		t.Fatalf("version %d after 8 accepted commands", v)
	}
}

func TestFSMInvalidEntries(t *testing.T) {
	f := newFSM()
	if err := applyCmd(t, f, 1, initCmd("a", "b")); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot()
	// An entry that does not decode.
	if r, ok := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}}).(error); !ok || !errors.Is(r, ErrInvalid) {
		t.Fatalf("undecodable entry: %v", r)
	}
	// A command with no command set.
	mustRefuse(t, f, 2, &protocol.MetaCommand{}, ErrInvalid)
	// Entries that are not commands (configuration, no-op) are ignored.
	for _, typ := range []raft.LogType{raft.LogNoop, raft.LogConfiguration, raft.LogBarrier} {
		if r := f.Apply(&raft.Log{Index: 2, Type: typ, Data: []byte("x")}); r != nil {
			t.Fatalf("log type %v answered %v", typ, r)
		}
	}
	if after := f.snapshot(); !proto.Equal(before, after) {
		t.Fatalf("invalid entries changed the state:\n%v\n%v", before, after)
	}
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM()
	for i, cmd := range []*protocol.MetaCommand{
		initCmd("a", "b"),
		{Command: &protocol.MetaCommand_UpsertMember{UpsertMember: &protocol.MetaMember{Name: "c", RaftAddr: "10.0.0.3:7000"}}},
		setState("a", protocol.MemberState_MEMBER_STATE_DRAINING),
		setAssignment(3, []string{"b", "c"}, []string{"c", "b"}),
		put("k1", "v1"),
		put("k2", "v2"),
	} {
		if err := applyCmd(t, f, uint64(i+1), cmd); err != nil {
			t.Fatal(err)
		}
	}
	want := f.snapshot()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot was taken are not in it.
	if err := applyCmd(t, f, 7, put("k3", "after")); err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed %v cancelled %v", sink.closed, sink.cancelled)
	}

	g := newFSM()
	changes, cancel := (&Meta{fsm: g}).Changes()
	defer cancel()
	<-changes // the initial notification
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	default:
		t.Fatal("restore did not notify subscribers")
	}
	if got := g.snapshot(); !proto.Equal(got, want) {
		t.Fatalf("restored state differs:\ngot  %v\nwant %v", got, want)
	}
	// The restored machine goes on from the restored version.
	if err := applyCmd(t, g, 7, setAssignment(want.GetVersion(), []string{"a"}, []string{"b"})); err != nil {
		t.Fatalf("set_assignment on the restored state: %v", err)
	}
	// Restore replaces the whole state, also over a newer one.
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.snapshot().GetKv()["k3"]; ok || !proto.Equal(f.snapshot(), want) {
		t.Fatal("restore kept state from after the snapshot")
	}
	// A damaged snapshot is refused and the state kept.
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte{0xff, 0xff}))); err == nil {
		t.Fatal("undecodable snapshot restored")
	}
	if g.version() != want.GetVersion()+1 {
		t.Fatalf("a refused restore changed the state (version %d)", g.version())
	}
}

// TestMetaRaftGroup runs three meta replicas on in-memory raft transports
// over real (temporary) pebble stores: only the leader applies, a follower
// answers ErrNotLeader, and every replica ends with the same state; a
// command's own error comes back through raft.
func TestMetaRaftGroup(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	names := []string{"m1", "m2", "m3"}
	trans := map[string]*raft.InmemTransport{}
	for _, name := range names {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(name))
		trans[name] = tr
	}
	for _, a := range names {
		for _, b := range names {
			if a != b {
				trans[a].Connect(raft.ServerAddress(b), trans[b])
			}
		}
	}
	rc := raft.DefaultConfig()
	rc.HeartbeatTimeout = 50 * time.Millisecond
	rc.ElectionTimeout = 50 * time.Millisecond
	rc.LeaderLeaseTimeout = 50 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	metas := map[string]*Meta{}
	for _, name := range names {
		store, err := persistence.Open(t.TempDir(), persistence.Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Open(Config{Store: store, Transport: trans[name], LocalID: raft.ServerID(name), Raft: rc, Logger: log, RaftLogOutput: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		metas[name] = m
		t.Cleanup(func() {
			if err := m.Close(); err != nil {
				t.Error(err)
			}
			if err := store.Close(); err != nil {
				t.Error(err)
			}
		})
		has, err := m.HasState()
		if err != nil || has {
			t.Fatalf("new replica %s: HasState %v, %v", name, has, err)
		}
	}
	if _, err := Open(Config{Transport: trans["m1"], LocalID: "x"}); err == nil {
		t.Fatal("Open without a store succeeded")
	}
	var servers []raft.Server
	for _, name := range names {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(name)})
	}
	if err := metas["m1"].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	if err := metas["m1"].Bootstrap(servers); err == nil {
		t.Fatal("a second bootstrap succeeded")
	}

	// Wait for a leader every replica agrees on.
	var leader string
	deadline := time.Now().Add(10 * time.Second)
	for leader == "" {
		if time.Now().After(deadline) {
			t.Fatal("no meta leader within 10s")
		}
		time.Sleep(20 * time.Millisecond)
		l := metas["m1"].Leader()
		if l == "" || !metas[string(l)].IsLeader() {
			continue
		}
		agree := true
		for _, m := range metas {
			agree = agree && m.Leader() == l
		}
		if agree {
			leader = string(l)
		}
	}
	var follower string
	for _, name := range names {
		if name != leader {
			follower = name
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A follower does not apply, and says so.
	err := metas[follower].Apply(ctx, initCmd("m1", "m2"))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on follower %s: %v, want ErrNotLeader", follower, err)
	}
	if metas[follower].IsLeader() {
		t.Fatalf("follower %s claims to lead", follower)
	}

	// The leader applies; the command's own errors come back.
	lm := metas[leader]
	if err := lm.Apply(ctx, initCmd("m1", "m2")); err != nil {
		t.Fatal(err)
	}
	if err := lm.Apply(ctx, initCmd("m1", "m2")); !errors.Is(err, ErrInitialized) {
		t.Fatalf("second init through raft: %v", err)
	}
	if err := lm.Apply(ctx, setAssignment(0, []string{"m2"}, []string{"m1"})); !errors.Is(err, ErrStale) {
		t.Fatalf("stale set_assignment through raft: %v", err)
	}
	if err := lm.Apply(ctx, put("k", "v")); err != nil {
		t.Fatal(err)
	}
	// A cancelled context ends the wait (the command may still commit).
	expired, cancelExpired := context.WithCancel(context.Background())
	cancelExpired()
	if err := lm.Apply(expired, put("k2", "v")); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("apply with a cancelled context: %v", err)
	}

	// Every replica converges on the leader's state, and sees the change.
	want := lm.State()
	for _, name := range names {
		m := metas[name]
		changes, stop := m.Changes()
		deadline := time.Now().Add(10 * time.Second)
		for !proto.Equal(m.State(), lm.State()) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s: state %v, leader has %v", name, m.State(), lm.State())
			}
			select {
			case <-changes:
			case <-time.After(50 * time.Millisecond):
			}
		}
		stop()
		if v, ok := m.Value("k"); !ok || string(v) != "v" {
			t.Fatalf("replica %s: Value(k) = %q, %v", name, v, ok)
		}
		if _, ok := m.Value("absent"); ok {
			t.Fatalf("replica %s has a value for an absent key", name)
		}
		if m.Version() < want.GetVersion() {
			t.Fatalf("replica %s at version %d < %d", name, m.Version(), want.GetVersion())
		}
		conf, err := m.Configuration()
		if err != nil || len(conf.Servers) != 3 {
			t.Fatalf("replica %s configuration %v, %v", name, conf, err)
		}
	}
	if st := metas[follower].State(); st.GetClusterId() != "c1" || FindMember(st, "m2") == nil {
		t.Fatalf("follower state %v", st)
	}
	// Value hands out a copy.
	v, _ := metas[follower].Value("k")
	v[0] = 'X'
	if v2, _ := metas[follower].Value("k"); string(v2) != "v" {
		t.Fatal("Value returned the replica's own bytes")
	}
}
