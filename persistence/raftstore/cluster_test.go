package raftstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testFSM records every command in order; equal command lists on every node
// is the agreement the end-to-end test checks.
type testFSM struct {
	mu   sync.Mutex
	cmds [][]byte
}

func (f *testFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, slices.Clone(l.Data))
	return len(f.cmds)
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &testFSMSnapshot{cmds: slices.Clone(f.cmds)}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	r := bufio.NewReader(rc)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("read snapshot count: %w", err)
	}
	cmds := make([][]byte, 0, n)
	for range n {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("read command length: %w", err)
		}
		c := make([]byte, l)
		if _, err := io.ReadFull(r, c); err != nil {
			return fmt.Errorf("read command: %w", err)
		}
		cmds = append(cmds, c)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("snapshot has trailing bytes (%v)", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = cmds
	return nil
}

func (f *testFSM) state() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

type testFSMSnapshot struct{ cmds [][]byte }

func (s *testFSMSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.AppendUvarint(nil, uint64(len(s.cmds)))
	for _, c := range s.cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	if _, err := sink.Write(b); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testFSMSnapshot) Release() {}

// lineLog collects raft's log output and shows it only if the test failed,
// and never after the test is over.
type lineLog struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *lineLog) flush(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if t.Failed() {
		t.Logf("raft log:\n%s", l.buf.String())
	}
}

type clusterNode struct {
	id     raft.ServerID
	addr   raft.ServerAddress
	db     *testDB
	stores *Stores
	trans  *raft.InmemTransport
	fsm    *testFSM
	raft   *raft.Raft
}

type testCluster struct {
	t     *testing.T
	log   *lineLog
	nodes []*clusterNode
	// resent are commands whose apply failed and was sent again: a failure
	// such as ErrLeadershipLost leaves the outcome unknown, so the first
	// copy may have committed too (the production path drops such a
	// duplicate by its request id; this FSM keeps everything).
	resent map[string]bool
}

const clusterGroup = 3

func (c *testCluster) config(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	// Snapshot and compact often, so restarts restore from our snapshot
	// store and a new node can only catch up by installing a snapshot.
	conf.SnapshotThreshold = 64
	conf.SnapshotInterval = 20 * time.Millisecond
	conf.TrailingLogs = 16
	conf.LogOutput = c.log
	conf.LogLevel = "WARN"
	return conf
}

// addNode makes a node with an empty pebble database.
func (c *testCluster) addNode(name string) *clusterNode {
	n := &clusterNode{id: raft.ServerID(name), addr: raft.ServerAddress(name), db: newTestDB(c.t)}
	// Registered after the database's cleanup, so it runs first: raft must
	// stop before its database closes.
	c.t.Cleanup(func() {
		if n.raft != nil {
			_ = n.raft.Shutdown().Error()
		}
	})
	// A neighbour group on the same database must not disturb this one.
	other := mustNew(c.t, n.db.DB, clusterGroup+1, Options{})
	if err := other.Log.StoreLogs(mkLogs(1, 1000, 1)); err != nil {
		c.t.Fatal(err)
	}
	c.nodes = append(c.nodes, n)
	return n
}

// start opens the node's stores on its current database and starts raft.
func (c *testCluster) start(n *clusterNode, bootstrap *raft.Configuration) {
	c.t.Helper()
	n.stores = mustNew(c.t, n.db.DB, clusterGroup, Options{SnapshotChunkSize: 1024})
	_, n.trans = raft.NewInmemTransport(n.addr)
	for _, o := range c.nodes {
		if o != n && o.trans != nil {
			o.trans.Connect(n.addr, n.trans)
			n.trans.Connect(o.addr, o.trans)
		}
	}
	n.fsm = &testFSM{}
	conf := c.config(n.id)
	if bootstrap != nil {
		if err := raft.BootstrapCluster(conf, n.stores.Log, n.stores.Stable, n.stores.Snapshots, n.trans, *bootstrap); err != nil {
			c.t.Fatalf("bootstrap %s: %v", n.id, err)
		}
	}
	r, err := raft.NewRaft(conf, n.fsm, n.stores.Log, n.stores.Stable, n.stores.Snapshots, n.trans)
	if err != nil {
		c.t.Fatalf("NewRaft %s: %v", n.id, err)
	}
	n.raft = r
}

func (c *testCluster) stop(n *clusterNode) {
	c.t.Helper()
	if n.raft == nil {
		return
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		c.t.Fatalf("shutdown %s: %v", n.id, err)
	}
	n.raft = nil
}

func (c *testCluster) running() []*clusterNode {
	var rs []*clusterNode
	for _, n := range c.nodes {
		if n.raft != nil {
			rs = append(rs, n)
		}
	}
	return rs
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *testCluster) leader() *clusterNode {
	c.t.Helper()
	var l *clusterNode
	waitFor(c.t, "a leader", 10*time.Second, func() (bool, string) {
		for _, n := range c.running() {
			if n.raft.State() == raft.Leader {
				l = n
				return true, ""
			}
		}
		return false, "no running node is leader"
	})
	return l
}

// apply commits commands first..last through the leader, pipelined.
func (c *testCluster) apply(first, last int) {
	c.t.Helper()
	for {
		l := c.leader()
		var fs []raft.ApplyFuture
		for i := first; i <= last; i++ {
			fs = append(fs, l.raft.Apply(fmt.Appendf(nil, "cmd-%04d", i), 5*time.Second))
		}
		failed := false
		for i, f := range fs {
			if err := f.Error(); err != nil {
				// Leadership may still be settling; retry from this one.
				// Every command from here on is sent again, and any of
				// them may have committed already (its future was never
				// waited for, or failed with an unknown outcome).
				c.t.Logf("apply cmd-%04d via %s: %v", first+i, l.id, err)
				if c.resent == nil {
					c.resent = map[string]bool{}
				}
				for j := first + i; j <= last; j++ {
					c.resent[fmt.Sprintf("cmd-%04d", j)] = true
				}
				first += i
				failed = true
				break
			}
		}
		if !failed {
			return
		}
	}
}

func wantCmds(n int) [][]byte {
	var cmds [][]byte
	for i := 1; i <= n; i++ {
		cmds = append(cmds, fmt.Appendf(nil, "cmd-%04d", i))
	}
	return cmds
}

// agree waits until every running node's FSM holds exactly commands 1..n,
// in order, once each; only a resent command may also appear a second time
// (see resent), and that copy is not counted.
func (c *testCluster) agree(n int) {
	c.t.Helper()
	want := wantCmds(n)
	waitFor(c.t, fmt.Sprintf("all FSMs to hold %d commands", n), 15*time.Second, func() (bool, string) {
		var lagging []string
		for _, node := range c.running() {
			got := c.withoutResentCopies(node.fsm.state())
			if len(got) > n || (len(got) == n && !slices.EqualFunc(got, want, bytes.Equal)) {
				c.t.Fatalf("%s applied a different history: %d commands", node.id, len(got))
			}
			if len(got) < n {
				lagging = append(lagging, fmt.Sprintf("%s has %d", node.id, len(got)))
			}
		}
		return len(lagging) == 0, strings.Join(lagging, ", ")
	})
}

// withoutResentCopies drops the second copy of each resent command.
func (c *testCluster) withoutResentCopies(cmds [][]byte) [][]byte {
	seen := map[string]bool{}
	out := cmds[:0:0]
	for _, cmd := range cmds {
		k := string(cmd)
		if c.resent[k] && seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, cmd)
	}
	return out
}

// TestRaftCluster runs real raft groups on these stores: a 3-node cluster
// applies commands, snapshots and compacts; the leader dies (power cut: only
// synced data survives) and comes back from its pebble database; a fresh
// node joins by installing a snapshot. Every FSM must end up identical.
func TestRaftCluster(t *testing.T) {
	c := &testCluster{t: t, log: &lineLog{}}
	// Registered first so it runs last, after every node has stopped.
	t.Cleanup(func() { c.log.flush(t) })
	for _, name := range []string{"n1", "n2", "n3"} {
		c.addNode(name)
	}
	var boot raft.Configuration
	for _, n := range c.nodes {
		boot.Servers = append(boot.Servers, raft.Server{Suffrage: raft.Voter, ID: n.id, Address: n.addr})
	}
	for _, n := range c.nodes {
		c.start(n, &boot)
	}

	c.apply(1, 500)
	c.agree(500)
	// Every node snapshotted into pebble and compacted its log head.
	waitFor(t, "snapshots and compaction on every node", 10*time.Second, func() (bool, string) {
		for _, n := range c.running() {
			metas, err := n.stores.Snapshots.List()
			if err != nil {
				t.Fatal(err)
			}
			first, _ := n.stores.Log.FirstIndex()
			if len(metas) == 0 || first <= 1 {
				return false, fmt.Sprintf("%s: %d snapshots, first index %d", n.id, len(metas), first)
			}
		}
		return true, ""
	})

	// Kill the leader, move on without it, then bring it back from what
	// its database kept through a simulated power cut.
	old := c.leader()
	c.stop(old)
	old.db.crash()
	c.apply(501, 600)
	c.agree(600)
	c.start(old, nil)
	// NewRaft restored the FSM from the newest snapshot in pebble before
	// hearing from anyone, and the log it kept is there to replay.
	if got := len(old.fsm.state()); got < int(c.config("").SnapshotThreshold) {
		t.Fatalf("%s restarted with %d commands restored from its snapshot", old.id, got)
	}
	if last, _ := old.stores.Log.LastIndex(); last < 500 {
		t.Fatalf("%s came back with last index %d, below the 500 it had acknowledged", old.id, last)
	}
	c.agree(600)

	// A fresh node joins after the log was compacted past index 1, so the
	// leader must send it a snapshot, which lands in our snapshot store.
	fresh := c.addNode("n4")
	c.start(fresh, nil)
	l := c.leader()
	if first, _ := l.stores.Log.FirstIndex(); first <= 1 {
		t.Fatalf("leader log not compacted (first index %d)", first)
	}
	if err := l.raft.AddVoter(fresh.id, fresh.addr, 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	c.apply(601, 650)
	c.agree(650)
	metas, err := fresh.stores.Snapshots.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("fresh node has no snapshot (%v): it did not catch up by snapshot", err)
	}

	// Finally the whole cluster stops and restarts from its databases
	// (clean close): each node restores its own snapshot and log.
	for _, n := range c.nodes {
		c.stop(n)
	}
	for _, n := range c.nodes {
		n.db.reopen()
	}
	for _, n := range c.nodes {
		c.start(n, nil)
	}
	c.apply(651, 660)
	c.agree(660)
}
