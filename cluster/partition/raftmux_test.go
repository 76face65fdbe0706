package partition

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/cluster/raftmux"
	"github.com/wardhq/ward/persistence"
)

// TestTwoPartitionsOverRaftmux runs two partitions on three nodes, each
// node with ONE raftmux listener on loopback carrying both partitions' raft
// groups (group p+1, as Open uses for its stores).
func TestTwoPartitionsOverRaftmux(t *testing.T) {
	const nodes, parts = 3, 2
	muxes := make([]*raftmux.Mux, nodes)
	stores := make([]*persistence.Store, nodes)
	ps := make([][parts]*Partition, nodes)
	for i := range nodes {
		m, err := raftmux.Listen("127.0.0.1:0", raftmux.Options{
			Logger: quietLogger(), TransportLogger: hclog.NewNullLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		muxes[i] = m
		s, err := persistence.Open(t.TempDir(), persistence.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	var servers []raft.Server
	for i, m := range muxes {
		servers = append(servers, raft.Server{ID: raft.ServerID(string(rune('a' + i))), Address: raft.ServerAddress(m.Addr().String())})
	}
	defer func() {
		for i := range nodes {
			for _, p := range ps[i] {
				if p != nil {
					if err := p.Close(); err != nil {
						t.Errorf("close partition: %v", err)
					}
				}
			}
			if err := muxes[i].Close(); err != nil {
				t.Errorf("close mux: %v", err)
			}
			if err := stores[i].Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
	}()
	for i := range nodes {
		for part := range uint32(parts) {
			tr, err := muxes[i].Transport(part + 1)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Open(Config{
				ID: part, Store: stores[i], Transport: tr, LocalID: servers[i].ID, Bootstrap: servers,
				Raft: testRaftConfig(), Logger: quietLogger(), RaftLogOutput: io.Discard,
			})
			if err != nil {
				t.Fatal(err)
			}
			ps[i][part] = p
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for part := range parts {
		var leader *Partition
		for leader == nil {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: no leader over raftmux", part)
			}
			for i := range nodes {
				if ps[i][part].IsReady() {
					leader = ps[i][part]
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The same actor key in both partitions: namespaces keep them apart.
		// Leadership may move under a loaded race-detector run (300 ms
		// heartbeats): a lost or unknown write is retried at the new
		// leader unless the new leader shows it applied.
		for s := uint64(1); s <= uint64(3+part); s++ {
			for {
				err := leader.Commit(bg, write(actor(1), s, s))
				if err == nil {
					break
				}
				if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown) {
					t.Fatal(err)
				}
				t.Logf("partition %d write %d: %v; finding the new leader", part, s, err)
				leader = nil
				for leader == nil {
					if time.Now().After(deadline) {
						t.Fatalf("partition %d: no leader after %v", part, err)
					}
					for i := range nodes {
						if ps[i][part].IsReady() {
							leader = ps[i][part]
						}
					}
					time.Sleep(10 * time.Millisecond)
				}
				if l, err := leader.LocalView().Load(actor(1)); err == nil && describe(l) == seqs(s) {
					break // it was applied before leadership moved
				}
			}
		}
		want, _ := leader.LocalView().AppliedIndex()
		for i := range nodes {
			v := ps[i][part].LocalView()
			for {
				idx, err := v.AppliedIndex()
				if err != nil {
					t.Fatal(err)
				}
				if idx >= want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %d partition %d applied %d of %d", i, part, idx, want)
				}
				time.Sleep(5 * time.Millisecond)
			}
			l, err := v.Load(actor(1))
			if err != nil || describe(l) != seqs(uint64(3+part)) {
				t.Fatalf("node %d partition %d: %v %v", i, part, l, err)
			}
		}
	}
}
