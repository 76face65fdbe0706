package partition

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
)

// TestThreeReplicasOverLoopbackTCP runs the partition over real sockets
// (raft's own TCP transport; cluster/raftmux will multiplex groups over one
// listener and can replace it here once it exists).
func TestThreeReplicasOverLoopbackTCP(t *testing.T) {
	type tnode struct {
		id    raft.ServerID
		store *persistence.Store
		trans *raft.NetworkTransport
		p     *Partition
	}
	nodes := make([]*tnode, 3)
	var servers []raft.Server
	for i := range nodes {
		trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		s, err := persistence.Open(t.TempDir(), persistence.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &tnode{id: raft.ServerID(string(rune('a' + i))), store: s, trans: trans}
		servers = append(servers, raft.Server{ID: nodes[i].id, Address: trans.LocalAddr()})
	}
	for _, n := range nodes {
		p, err := Open(Config{
			ID: 0, Store: n.store, Transport: n.trans, LocalID: n.id, Bootstrap: servers,
			Raft: testRaftConfig(), Logger: quietLogger(), RaftLogOutput: io.Discard,
		})
		if err != nil {
			t.Fatal(err)
		}
		n.p = p
	}
	defer func() {
		for _, n := range nodes {
			if err := n.p.Close(); err != nil {
				t.Errorf("close %s: %v", n.id, err)
			}
			if err := n.store.Close(); err != nil {
				t.Errorf("close store %s: %v", n.id, err)
			}
		}
	}()
	var leader *tnode
	deadline := time.Now().Add(10 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.p.IsReady() {
				leader = n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no leader over TCP")
	}
	for s := uint64(1); s <= 5; s++ {
		for i := range 8 {
			if err := leader.p.Commit(bg, write(actor(i), s, s)); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, _ := leader.p.LocalView().AppliedIndex()
	for _, n := range nodes {
		for {
			idx, err := n.p.LocalView().AppliedIndex()
			if err != nil {
				t.Fatal(err)
			}
			if idx >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s applied %d of %d", n.id, idx, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i := range 8 {
			l, err := n.p.LocalView().Load(actor(i))
			if err != nil || describe(l) != seqs(5) {
				t.Fatalf("%s: %s: %v %v", n.id, actor(i), l, err)
			}
		}
	}
}
