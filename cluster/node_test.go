package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

func startTestNode(t *testing.T, store *persistence.Store, p int) *Node {
	t.Helper()
	n, err := StartNode(NodeConfig{
		Store:      store,
		Partitions: p,
		Host: Config{
			Kinds:      []actors.Kind{probeKind},
			Logger:     testLogger(),
			Registerer: prometheus.NewRegistry(),
			TimerPoll:  20 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

func stopTestNode(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Errorf("stop node: %v", err)
	}
}

// TestNodeOnPartitions: a dev-style node (P=4, R=1) serves sessions, keeps
// their state across a restart, and spreads identities over partitions
// (namespace p+1 holds partition p's events).
func TestNodeOnPartitions(t *testing.T) {
	const P = 4
	dir := t.TempDir()
	store := openStore(t, nil, dir)
	n := startTestNode(t, store, P)
	ctx := context.Background()

	const sessions = 32
	before := make(map[string]any, sessions)
	for i := range sessions {
		id := fmt.Sprintf("s%d", i)
		createSession(t, n.Host, id, time.Hour)
		m, err := n.Request(ctx, session.KindName, id, snapshotProbe)
		if err != nil {
			t.Fatalf("snapshot %s: %v", id, err)
		}
		before[id] = m
	}
	stopTestNode(t, n)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openStore(t, nil, dir)
	defer store.Close()
	n = startTestNode(t, store, P)
	defer stopTestNode(t, n)
	used := make(map[int]bool)
	for i := range sessions {
		id := fmt.Sprintf("s%d", i)
		m, err := n.Request(ctx, session.KindName, id, snapshotProbe)
		if err != nil {
			t.Fatalf("snapshot %s after restart: %v", id, err)
		}
		if got, want := fmt.Sprint(m), fmt.Sprint(before[id]); got != want {
			t.Fatalf("%s after restart:\n got %s\nwant %s", id, got, want)
		}
		p := placement.PartitionOf(session.KindName, id, P)
		used[p] = true
		l, err := store.Namespace(uint32(p + 1)).Load(persistence.ActorKey{Kind: session.KindName, ID: id})
		if err != nil {
			t.Fatalf("load %s from namespace %d: %v", id, p+1, err)
		}
		if l.Snapshot == nil && len(l.Events) == 0 {
			t.Fatalf("%s: namespace %d holds nothing", id, p+1)
		}
		// The default namespace holds nothing of it.
		if l, err := store.Load(persistence.ActorKey{Kind: session.KindName, ID: id}); err == nil && (l.Snapshot != nil || len(l.Events) > 0) {
			t.Fatalf("%s found in the default namespace", id)
		}
	}
	if len(used) < 2 {
		t.Fatalf("identities used %d of %d partitions", len(used), P)
	}
	_ = protocol.ErrorCode_ERROR_CODE_UNAVAILABLE
}

// TestReplicaLagAtArrival: a replica's announced applied index is measured
// against this node's commit index when the announcement arrives, and only
// a replica within catchUpSlack counts as caught up (for promotion to voter
// and for being handed leadership).
func TestReplicaLagAtArrival(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	defer store.Close()
	n := startTestNode(t, store, 1)
	defer stopTestNode(t, n)
	r := n.slots[0].get().Raft()
	for i := 0; r.CommitIndex() <= catchUpSlack+10; i++ {
		if i == 1000 {
			t.Fatalf("commit index still %d after %d writes", r.CommitIndex(), i)
		}
		createSession(t, n.Host, fmt.Sprintf("lag-%d", i), time.Hour)
	}
	announce := func(applied uint64) []byte {
		b := []byte{announceVersion, 0, 1} // leads nothing; one other replica
		b = binary.AppendUvarint(b, 0)
		return binary.AppendUvarint(b, applied)
	}
	commit := r.CommitIndex()
	if _, known := n.lag("peer", 0); known || n.caughtUp("peer", 0) {
		t.Fatal("a member that never announced counts as known")
	}
	n.onMessage("peer", announce(commit-catchUpSlack-5))
	if lag, _ := n.lag("peer", 0); lag != catchUpSlack+5 {
		t.Fatalf("lag %d, want %d", lag, catchUpSlack+5)
	}
	if n.caughtUp("peer", 0) {
		t.Fatal("a replica 69 entries behind counts as caught up")
	}
	// Later writes move the commit index on; the lag stays what it was
	// when the replica spoke.
	createSession(t, n.Host, "lag-after", time.Hour)
	n.onMessage("peer", announce(commit))
	if !n.caughtUp("peer", 0) {
		lag, _ := n.lag("peer", 0)
		t.Fatalf("a replica %d behind at arrival is not caught up", lag)
	}
	// Ahead of us (we are a lagging follower ourselves): no lag.
	n.onMessage("peer", announce(r.CommitIndex()+1000))
	if lag, _ := n.lag("peer", 0); lag != 0 {
		t.Fatalf("lag %d for a replica ahead of us", lag)
	}
	// A malformed announcement changes nothing.
	n.onMessage("peer", []byte{announceVersion, 5})
	if !n.caughtUp("peer", 0) {
		t.Fatal("a malformed announcement changed the replica's progress")
	}
}
