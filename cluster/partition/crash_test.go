package partition

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// TestPowerCutReplaysUnsyncedApplies cuts the power under the leader while
// writes flow: its store comes back with only what was synced, so the
// newest applies (written without fsync) are gone while their entries are
// still in the synced raft log. Raft replays them, the applied index makes
// the replay exact, and no acknowledged write is missing anywhere.
func TestPowerCutReplaysUnsyncedApplies(t *testing.T) {
	c := &testCluster{t: t, part: 3, raft: testRaftConfig}
	t.Cleanup(c.close)
	mem := vfs.NewCrashableMem()
	var servers []raft.Server
	for i := range 3 {
		var fs vfs.FS
		if i == 0 {
			fs = mem
		}
		nd := c.addNodeFS(string(rune('x'+i)), fs)
		servers = append(servers, raft.Server{ID: nd.id, Address: nd.addr})
	}
	victim := c.nodes[0]
	for _, nd := range c.nodes {
		c.start(nd, servers)
	}
	// Make the crashable node the leader so it proposes and applies first.
	l := c.leader(10 * time.Second)
	if l != victim {
		if err := l.p.LeadershipTransferToServer(victim.id, victim.addr); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !victim.p.IsReady() {
			if time.Now().After(deadline) {
				t.Fatal("victim never became ready leader")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	p := victim.p
	acked := make([]uint64, 16)
	var wg sync.WaitGroup
	for i := range acked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				if err := p.Commit(ctx, write(actor(i), seq, seq)); err != nil {
					return
				}
				acked[i] = seq
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// The power cut: keep only what was synced, at this instant.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	cancel()
	c.stop(victim) // the pre-crash process is gone; its FS is discarded
	wg.Wait()

	victim.fs = crashed
	c.restart(victim)
	idx0, _ := victim.p.LocalView().AppliedIndex()
	t.Logf("applied index right after restart: %d; raft last index %d", idx0, victim.p.Raft().LastIndex())
	c.converge(10 * time.Second)
	for i, a := range acked {
		for _, nd := range c.nodes {
			l, err := nd.p.LocalView().Load(actor(i))
			if err != nil {
				t.Fatal(err)
			}
			if l.LastSeq < a {
				t.Fatalf("%s: %s holds seq %d, acknowledged %d", nd.id, actor(i), l.LastSeq, a)
			}
			if describe(l) != localLoad(t, c.nodes[1], actor(i)) {
				t.Fatalf("%s: %s differs: %s vs %s", nd.id, actor(i), describe(l), localLoad(t, c.nodes[1], actor(i)))
			}
		}
	}
	if ss := victim.store.Stats(); ss.Rejected != 0 {
		t.Fatalf("replay after power cut refused %d writes", ss.Rejected)
	}
	st, _ := victim.p.Stats()
	t.Logf("acked %v; after the cut the victim re-applied %d writes and skipped %d entries", acked, victim.store.Stats().Writes, st.SkippedEntries)
}
