package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/persistence"
)

// testRaftConfig is LANConfig with shorter timeouts, still long enough not
// to flap under the race detector on a 2-core machine.
func testRaftConfig() *raft.Config {
	c := LANConfig()
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	return c
}

type node struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	dir   string
	fs    vfs.FS // nil: the real disk
	store *persistence.Store
	trans *raft.InmemTransport
	p     *Partition

	mu        sync.Mutex
	leaderLog []bool // OnLeadership calls, in order
}

func (n *node) leaderEvents() []bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]bool(nil), n.leaderLog...)
}

type testCluster struct {
	t     testing.TB
	part  uint32
	raft  func() *raft.Config
	nodes []*node
	// maxInflight is passed to Config.MaxInflight (0: the default).
	maxInflight int
}

// newCluster starts n replicas of partition 3 bootstrapped together, each
// on its own store in a temp dir, connected by in-memory transports.
func newCluster(t testing.TB, n int, conf func() *raft.Config) *testCluster {
	return newClusterInflight(t, n, conf, 0)
}

func newClusterInflight(t testing.TB, n int, conf func() *raft.Config, inflight int) *testCluster {
	t.Helper()
	if conf == nil {
		conf = testRaftConfig
	}
	c := &testCluster{t: t, part: 3, raft: conf, maxInflight: inflight}
	var servers []raft.Server
	for i := range n {
		nd := c.addNode(fmt.Sprintf("n%d", i))
		servers = append(servers, raft.Server{ID: nd.id, Address: nd.addr, Suffrage: raft.Voter})
	}
	for _, nd := range c.nodes {
		c.start(nd, servers)
	}
	t.Cleanup(c.close)
	return c
}

// addNode creates a node's store and transport (connected to every other
// node) without starting its partition.
func (c *testCluster) addNode(id string) *node {
	c.t.Helper()
	return c.addNodeFS(id, nil)
}

// addNodeFS is addNode with the node's store on fs (nil: the real disk).
func (c *testCluster) addNodeFS(id string, fs vfs.FS) *node {
	c.t.Helper()
	nd := &node{id: raft.ServerID(id), dir: filepath.Join(c.t.TempDir(), id), fs: fs}
	if fs != nil {
		// A fresh nested path: persistence.Open syncs the parents it
		// creates, so a crash clone keeps it.
		nd.dir = "/data/nodes/" + id
	}
	nd.addr, nd.trans = raft.NewInmemTransport(raft.ServerAddress(id))
	c.openStore(nd)
	for _, o := range c.nodes {
		o.trans.Connect(nd.addr, nd.trans)
		nd.trans.Connect(o.addr, o.trans)
	}
	c.nodes = append(c.nodes, nd)
	return nd
}

func (c *testCluster) openStore(nd *node) {
	c.t.Helper()
	s, err := persistence.Open(nd.dir, persistence.Options{FS: nd.fs, Logger: quietLogger()})
	if err != nil {
		c.t.Fatalf("open store %s: %v", nd.id, err)
	}
	nd.store = s
}

func (c *testCluster) start(nd *node, bootstrap []raft.Server) {
	c.t.Helper()
	p, err := Open(Config{
		ID:            c.part,
		Store:         nd.store,
		Transport:     nd.trans,
		LocalID:       nd.id,
		Bootstrap:     bootstrap,
		Raft:          c.raft(),
		MaxInflight:   c.maxInflight,
		Logger:        quietLogger(),
		RaftLogOutput: io.Discard,
		OnLeadership: func(v bool) {
			nd.mu.Lock()
			nd.leaderLog = append(nd.leaderLog, v)
			nd.mu.Unlock()
		},
	})
	if err != nil {
		c.t.Fatalf("open partition on %s: %v", nd.id, err)
	}
	nd.p = p
}

// stop closes a node's partition and store, as a process exit would.
func (c *testCluster) stop(nd *node) {
	c.t.Helper()
	if nd.p != nil {
		if err := nd.p.Close(); err != nil {
			c.t.Errorf("close partition %s: %v", nd.id, err)
		}
		nd.p = nil
	}
	if nd.store != nil {
		if err := nd.store.Close(); err != nil {
			c.t.Errorf("close store %s: %v", nd.id, err)
		}
		nd.store = nil
	}
}

// restart reopens a stopped node's store and partition, with a fresh
// transport at the same address (raft closes its transport on shutdown).
func (c *testCluster) restart(nd *node) {
	c.t.Helper()
	nd.addr, nd.trans = raft.NewInmemTransport(nd.addr)
	for _, o := range c.nodes {
		if o == nd {
			continue
		}
		o.trans.Connect(nd.addr, nd.trans)
		nd.trans.Connect(o.addr, o.trans)
	}
	c.openStore(nd)
	c.start(nd, nil)
}

func (c *testCluster) close() {
	for _, nd := range c.nodes {
		c.stop(nd)
	}
}

func (c *testCluster) running() []*node {
	var out []*node
	for _, nd := range c.nodes {
		if nd.p != nil {
			out = append(out, nd)
		}
	}
	return out
}

// leader waits for a ready leader among the running nodes.
func (c *testCluster) leader(timeout time.Duration) *node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, nd := range c.running() {
			if nd.p.IsReady() {
				return nd
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no ready leader within %s", timeout)
	return nil
}

func (c *testCluster) followers(leader *node) []*node {
	var out []*node
	for _, nd := range c.running() {
		if nd != leader {
			out = append(out, nd)
		}
	}
	return out
}

// converge waits until every running replica's namespace has applied the
// leader's last applied journal entry. It reads the stored applied index,
// not raft's AppliedIndex, which raft advances before its FSM goroutine has
// run Apply.
func (c *testCluster) converge(timeout time.Duration) {
	c.t.Helper()
	l := c.leader(timeout)
	want := storedApplied(c.t, l)
	deadline := time.Now().Add(timeout)
	for _, nd := range c.running() {
		for storedApplied(c.t, nd) < want {
			if time.Now().After(deadline) {
				c.t.Fatalf("%s applied %d, leader %d", nd.id, storedApplied(c.t, nd), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func storedApplied(t testing.TB, nd *node) uint64 {
	t.Helper()
	idx, err := nd.p.LocalView().AppliedIndex()
	if err != nil {
		t.Fatalf("%s: applied index: %v", nd.id, err)
	}
	return idx
}

func ev(n uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(n) }

func write(a persistence.ActorKey, from, to uint64) *persistence.Write {
	w := &persistence.Write{Actor: a, FirstSeq: from}
	for s := from; s <= to; s++ {
		w.Events = append(w.Events, ev(s))
	}
	return w
}

func actor(i int) persistence.ActorKey {
	return persistence.ActorKey{Kind: "test", ID: fmt.Sprintf("a%03d", i)}
}

func describe(l *persistence.Loaded) string {
	out := fmt.Sprintf("last=%d", l.LastSeq)
	if l.Snapshot != nil {
		out += fmt.Sprintf(" snap@%d", l.Snapshot.Seq)
	}
	out += " events="
	for _, e := range l.Events {
		out += fmt.Sprintf("%d,", e.(*wrapperspb.UInt64Value).GetValue())
	}
	return out
}

func localLoad(t testing.TB, nd *node, a persistence.ActorKey) string {
	t.Helper()
	l, err := nd.p.LocalView().Load(a)
	if err != nil {
		t.Fatalf("%s: local load %s: %v", nd.id, a, err)
	}
	return describe(l)
}

// commitRetry commits on whichever node is the leader, retrying while
// leadership moves; it gives up on any other error.
func (c *testCluster) commitRetry(ctx context.Context, w *persistence.Write) error {
	for {
		l := c.leader(10 * time.Second)
		err := l.p.Commit(ctx, w)
		if err == nil || !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrOutcomeUnknown) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seqs is describe's output for an actor holding events 1..n.
func seqs(n uint64) string {
	l := &persistence.Loaded{LastSeq: n}
	for s := uint64(1); s <= n; s++ {
		l.Events = append(l.Events, ev(s))
	}
	return describe(l)
}
