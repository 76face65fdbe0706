package partition

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
)

var bg = context.Background()

func TestReplicatesToEveryReplicaAndRefusesOnFollowers(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	a := actor(1)
	if err := l.p.Commit(bg, write(a, 1, 3)); err != nil {
		t.Fatalf("commit on leader: %v", err)
	}
	w := write(a, 4, 4)
	w.Snapshot = &persistence.Snapshot{Seq: 4, State: ev(99)}
	w.Timers = []persistence.TimerChange{{Name: "wake", Due: time.Unix(100, 0)}}
	if err := l.p.Commit(bg, w); err != nil {
		t.Fatalf("second commit: %v", err)
	}
	// Commit returned after the local apply: the leader reads it at once.
	got, err := l.p.Load(a)
	if err != nil {
		t.Fatalf("leader load: %v", err)
	}
	want := "last=4 snap@4 events="
	if describe(got) != want {
		t.Fatalf("leader load %s, want %s", describe(got), want)
	}
	c.converge(5 * time.Second)
	for _, nd := range c.nodes {
		if s := localLoad(t, nd, a); s != want {
			t.Errorf("%s holds %s, want %s", nd.id, s, want)
		}
		ts, err := nd.p.LocalView().DueTimers(time.Unix(200, 0), 0)
		if err != nil || len(ts) != 1 || ts[0].Name != "wake" {
			t.Errorf("%s timers %v, %v", nd.id, ts, err)
		}
	}

	for _, f := range c.followers(l) {
		err := f.p.Commit(bg, write(a, 5, 5))
		var nle *NotLeaderError
		if !errors.As(err, &nle) || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("commit on follower %s: %v, want NotLeaderError", f.id, err)
		}
		if nle.LeaderID != l.id || nle.LeaderAddress != l.addr {
			t.Errorf("follower %s names leader %s at %s, want %s", f.id, nle.LeaderID, nle.LeaderAddress, l.id)
		}
		if _, err := f.p.Load(a); !errors.Is(err, ErrNotLeader) {
			t.Errorf("load on follower %s: %v, want ErrNotLeader", f.id, err)
		}
		if _, err := f.p.DueTimers(time.Unix(200, 0), 0); !errors.Is(err, ErrNotLeader) {
			t.Errorf("due timers on follower %s: %v, want ErrNotLeader", f.id, err)
		}
	}
	if ts, err := l.p.DueTimers(time.Unix(200, 0), 0); err != nil || len(ts) != 1 {
		t.Errorf("leader due timers %v, %v", ts, err)
	}
	// The follower's refusal proposed nothing.
	c.converge(5 * time.Second)
	if s := localLoad(t, l, a); s != want {
		t.Fatalf("after follower commits: %s", s)
	}
	if ev := l.leaderEvents(); len(ev) != 1 || !ev[0] {
		t.Errorf("leader's OnLeadership calls %v, want [true]", ev)
	}
	st, err := l.p.Stats()
	if err != nil || st.State != raft.Leader || len(st.Configuration.Servers) != 3 || st.AppliedIndex < st.CommitIndex-1 {
		t.Errorf("stats %+v, %v", st, err)
	}
}

func TestConcurrentCommitsShareLogEntries(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	const actors, perActor = 64, 25
	var wg sync.WaitGroup
	errs := make(chan error, actors)
	for i := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := uint64(1); s <= perActor; s++ {
				if err := l.p.Commit(bg, write(actor(i), s, s)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("commit: %v", err)
	}
	c.converge(5 * time.Second)
	want := seqs(perActor)
	for _, nd := range c.nodes {
		for i := range actors {
			if got := localLoad(t, nd, actor(i)); got != want {
				t.Fatalf("%s: %s holds %s, want %s", nd.id, actor(i), got, want)
			}
		}
	}
	st, _ := l.p.Stats()
	t.Logf("%d writes in %d log entries (%.1f per entry)", st.Writes, st.Entries, float64(st.Writes)/float64(st.Entries))
	if st.Writes != actors*perActor || st.Entries >= st.Writes/2 {
		t.Fatalf("batching not visible: %d writes in %d entries", st.Writes, st.Entries)
	}
}
