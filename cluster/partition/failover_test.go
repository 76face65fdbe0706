package partition

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
)

// writer commits to one actor in a loop on whichever node leads, the way a
// host would: load on the leader, then append; on any error, reload.
type writer struct {
	a     persistence.ActorKey
	acked atomic.Uint64 // last seq whose Commit returned nil
	lost  atomic.Uint64 // set to the acked seq a ready leader did not have
}

func (w *writer) run(ctx context.Context, c *testCluster, mu *sync.Mutex) {
	for ctx.Err() == nil {
		mu.Lock()
		var p *Partition
		for _, nd := range c.running() {
			if nd.p.IsReady() {
				p = nd.p
			}
		}
		mu.Unlock()
		if p == nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		l, err := p.Load(w.a)
		if err != nil {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if l.LastSeq < w.acked.Load() {
			// An acknowledged write is missing on a ready leader.
			w.lost.Store(w.acked.Load())
			return
		}
		for seq := l.LastSeq + 1; ctx.Err() == nil; seq++ {
			if err := p.Commit(ctx, write(w.a, seq, seq)); err != nil {
				break
			}
			w.acked.Store(seq)
		}
	}
}

func TestLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.leader(10 * time.Second)

	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var mu sync.Mutex // guards c.nodes' partitions against stop()
	writers := make([]*writer, 16)
	var wg sync.WaitGroup
	for i := range writers {
		writers[i] = &writer{a: actor(i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			writers[i].run(ctx, c, &mu)
		}()
	}
	time.Sleep(400 * time.Millisecond)
	before := make([]uint64, len(writers))
	for i, w := range writers {
		before[i] = w.acked.Load()
	}

	mu.Lock()
	stopped := time.Now()
	c.stop(old)
	mu.Unlock()
	nl := c.leader(5 * time.Second)
	failover := time.Since(stopped)
	t.Logf("new leader %s ready %s after the old one stopped", nl.id, failover)
	if failover > 3*time.Second {
		t.Errorf("failover took %s, want < 3s", failover)
	}
	time.Sleep(400 * time.Millisecond)
	cancel()
	wg.Wait()

	c.converge(5 * time.Second)
	a, b := c.running()[0], c.running()[1]
	for i, w := range writers {
		acked := w.acked.Load()
		if lost := w.lost.Load(); lost != 0 {
			t.Fatalf("%s: a ready leader did not have acknowledged seq %d", w.a, lost)
		}
		if acked <= before[i] {
			t.Errorf("%s made no progress after failover (acked %d, before %d)", w.a, acked, before[i])
		}
		la, _ := a.p.LocalView().Load(w.a)
		if la.LastSeq < acked {
			t.Fatalf("%s: acknowledged seq %d lost, replica holds %d", w.a, acked, la.LastSeq)
		}
		if got := describe(la); got != seqs(la.LastSeq) {
			t.Fatalf("%s: journal not contiguous: %s", w.a, got)
		}
		if ga, gb := describe(la), localLoad(t, b, w.a); ga != gb {
			t.Fatalf("%s: replicas differ: %s vs %s", w.a, ga, gb)
		}
	}

	// A stale write is refused on every replica alike: its result on the
	// leader is a conflict, and both replicas counted the same refusals over
	// the same log (they applied every entry from the first).
	if err := nl.p.Commit(bg, write(actor(0), 1, 1)); !errors.Is(err, persistence.ErrSeqConflict) {
		t.Fatalf("stale write: %v, want ErrSeqConflict", err)
	}
	c.converge(5 * time.Second)
	sa, sb := a.store.Stats(), b.store.Stats()
	if sa.Rejected != sb.Rejected || sa.Writes != sb.Writes || sa.Rejected == 0 {
		t.Fatalf("replicas disagree on validation: %+v vs %+v", sa, sb)
	}
	if got := localLoad(t, a, actor(0)); got != localLoad(t, b, actor(0)) {
		t.Fatalf("conflict changed a replica: %s", got)
	}
	if ev := old.leaderEvents(); len(ev) == 0 || ev[len(ev)-1] {
		t.Errorf("old leader's OnLeadership calls %v, want ending in false", ev)
	}
	if ev := nl.leaderEvents(); len(ev) == 0 || !ev[len(ev)-1] {
		t.Errorf("new leader's OnLeadership calls %v, want ending in true", ev)
	}

	// The old leader comes back as a follower and catches up.
	c.restart(old)
	c.converge(10 * time.Second)
	for _, w := range writers {
		if ga, go_ := localLoad(t, a, w.a), localLoad(t, old, w.a); ga != go_ {
			t.Fatalf("%s: restarted replica holds %s, want %s", w.a, go_, ga)
		}
	}
}

func TestRestartReplaysWithoutDoubleApply(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	for s := uint64(1); s <= 6; s++ {
		for i := range 5 {
			if err := l.p.Commit(bg, write(actor(i), s, s)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.converge(5 * time.Second)
	f := c.followers(l)[0]
	c.stop(f)
	for i := range 5 {
		if err := l.p.Commit(bg, write(actor(i), 7, 8)); err != nil {
			t.Fatal(err)
		}
	}
	c.restart(f)
	c.converge(10 * time.Second)
	for i := range 5 {
		if got := localLoad(t, f, actor(i)); got != seqs(8) {
			t.Fatalf("%s after restart: %s", actor(i), got)
		}
	}
	st, _ := f.p.Stats()
	if st.SkippedEntries == 0 {
		t.Errorf("restarted replica skipped no entries: replay did not happen")
	}
	if ss := f.store.Stats(); ss.Rejected != 0 {
		t.Fatalf("replay refused %d writes (double apply)", ss.Rejected)
	}
	if idx, err := f.p.LocalView().AppliedIndex(); err != nil || idx == 0 || idx > f.p.Raft().AppliedIndex() {
		t.Fatalf("stored applied index %d (raft %d), %v", idx, f.p.Raft().AppliedIndex(), err)
	}
	t.Logf("restarted follower skipped %d replayed entries", st.SkippedEntries)

	// The leader restarts too: a new leader is elected, the old one
	// replays, and every replica ends identical.
	c.stop(l)
	nl := c.leader(5 * time.Second)
	if err := nl.p.Commit(bg, write(actor(0), 9, 9)); err != nil {
		t.Fatal(err)
	}
	c.restart(l)
	c.converge(10 * time.Second)
	for _, nd := range c.nodes {
		if got := localLoad(t, nd, actor(0)); got != seqs(9) {
			t.Fatalf("%s: %s", nd.id, got)
		}
		if ss := nd.store.Stats(); ss.Rejected != 0 {
			t.Fatalf("%s refused %d writes", nd.id, ss.Rejected)
		}
	}
}

func TestSnapshotBringsUpNewVoter(t *testing.T) {
	conf := func() *raft.Config {
		c := testRaftConfig()
		c.SnapshotThreshold = 16
		c.SnapshotInterval = 100 * time.Millisecond
		c.TrailingLogs = 4
		return c
	}
	c := newCluster(t, 3, conf)
	l := c.leader(10 * time.Second)
	for s := uint64(1); s <= 20; s++ {
		for i := range 4 {
			w := write(actor(i), s, s)
			if s%10 == 0 {
				w.Snapshot = &persistence.Snapshot{Seq: s, State: ev(s * 100)}
			}
			if err := l.p.Commit(bg, w); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.p.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// More entries after the snapshot, so the new voter needs both.
	for i := range 4 {
		if err := l.p.Commit(bg, write(actor(i), 21, 21)); err != nil {
			t.Fatal(err)
		}
	}
	n := c.addNode("n3")
	c.start(n, nil)
	if err := l.p.AddVoter(n.id, n.addr, 5*time.Second); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	c.converge(10 * time.Second)
	if got := n.p.Raft().Stats()["last_snapshot_index"]; got == "0" {
		t.Fatalf("new voter installed no snapshot")
	}
	want := "last=21 snap@20 events=21,"
	for _, nd := range c.nodes {
		for i := range 4 {
			if got := localLoad(t, nd, actor(i)); got != want {
				t.Fatalf("%s: %s holds %s, want %s", nd.id, actor(i), got, want)
			}
		}
	}
	st, err := l.p.Stats()
	if err != nil || len(st.Configuration.Servers) != 4 {
		t.Fatalf("configuration %+v, %v", st.Configuration, err)
	}
	// It takes part from now on, and can lead.
	if err := l.p.LeadershipTransferToServer(n.id, n.addr); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	if nl := c.leader(5 * time.Second); nl != n {
		// Another election may have won meanwhile; only insist it is ready.
		t.Logf("leader after transfer is %s", nl.id)
	}
	nl := c.leader(5 * time.Second)
	if err := nl.p.Commit(bg, write(actor(0), 22, 22)); err != nil {
		t.Fatal(err)
	}
	if err := nl.p.RemoveServer(c.nodes[0].id, 5*time.Second); err != nil && nl != c.nodes[0] {
		t.Fatalf("RemoveServer: %v", err)
	}
}

// Close while commits are in flight: every Commit returns (raft drops
// futures queued for its FSM at shutdown; see waitFuture), and each error
// says whether the outcome is known.
func TestCloseAnswersEveryCommit(t *testing.T) {
	for round := range 3 {
		c := newCluster(t, 3, nil)
		l := c.leader(10 * time.Second)
		var wg sync.WaitGroup
		var unknown, closed atomic.Int64
		p := l.p // c.stop clears l.p
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := uint64(1); ; seq++ {
					err := p.Commit(bg, write(actor(i), seq, seq))
					switch {
					case err == nil:
						continue
					case errors.Is(err, ErrOutcomeUnknown):
						unknown.Add(1)
					case errors.Is(err, ErrClosed), errors.Is(err, ErrNotLeader):
						closed.Add(1)
					default:
						t.Errorf("commit: unexpected error %v", err)
					}
					return
				}
			}()
		}
		time.Sleep(time.Duration(50+50*round) * time.Millisecond)
		done := make(chan struct{})
		go func() {
			wg.Wait()
			close(done)
		}()
		c.stop(l)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("commits still blocked 5s after Close")
		}
		t.Logf("round %d: %d outcome unknown, %d refused", round, unknown.Load(), closed.Load())
	}
}
