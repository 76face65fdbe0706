package partition

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

type feeder interface {
	Feed(after uint64, limit int) ([]persistence.FeedEntry, error)
}

func feedText(t testing.TB, f feeder) string {
	t.Helper()
	entries, err := f.Feed(0, 10)
	if err != nil {
		t.Fatalf("feed: %v", err)
	}
	var s []string
	for _, e := range entries {
		s = append(s, fmt.Sprintf("%d:%s", e.Position, e.Event.GetId()))
	}
	return fmt.Sprint(s)
}

// TestFeedReplicatedAndTrimmedThroughRaft: emitted events land in every
// replica's feed at the same positions; the leader serves the feed, a
// follower refuses; a trim goes through the log and trims every replica,
// and the positions carry on after a leader change.
func TestFeedReplicatedAndTrimmedThroughRaft(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	a, b := actor(1), actor(2)
	wa := write(a, 1, 1)
	wa.Emitted = []*protocol.EventEnvelope{{Id: "a1", Type: "identity.user.registered.v1", Tenant: "t"}}
	wb := write(b, 1, 2)
	wb.Emitted = []*protocol.EventEnvelope{{Id: "b1", Type: "identity.user.registered.v1", Tenant: "t"}, {Id: "b2", Type: "identity.user.locked.v1", Tenant: "t"}}
	for _, w := range []*persistence.Write{wa, wb} {
		if err := l.p.Commit(bg, w); err != nil {
			t.Fatal(err)
		}
	}
	want := "[1:a1 2:b1 3:b2]"
	if got := feedText(t, l.p); got != want {
		t.Fatalf("leader feed %s, want %s", got, want)
	}
	c.converge(5 * time.Second)
	for _, f := range c.followers(l) {
		if _, err := f.p.Feed(0, 10); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower %s served the feed: %v", f.id, err)
		}
		if got := feedText(t, f.p.LocalView()); got != want {
			t.Fatalf("follower %s feed %s, want %s", f.id, got, want)
		}
		if err := f.p.TrimFeed(bg, 3); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower %s trimmed: %v", f.id, err)
		}
	}
	if err := l.p.TrimFeed(bg, 2); err != nil {
		t.Fatal(err)
	}
	c.converge(5 * time.Second)
	for _, nd := range c.nodes {
		if got := feedText(t, nd.p.LocalView()); got != "[3:b2]" {
			t.Fatalf("%s after trim: %s", nd.id, got)
		}
	}

	// A new leader numbers on from the replicated head.
	if err := l.p.LeadershipTransfer(); err != nil {
		t.Fatal(err)
	}
	var nl *node
	deadline := time.Now().Add(10 * time.Second)
	for nl == nil || nl == l {
		if time.Now().After(deadline) {
			t.Fatal("no new leader")
		}
		nl = c.leader(10 * time.Second)
		time.Sleep(10 * time.Millisecond)
	}
	w := write(a, 2, 2)
	w.Emitted = []*protocol.EventEnvelope{{Id: "a2", Type: "identity.user.locked.v1", Tenant: "t"}}
	eventuallyCommit(t, nl, w)
	if got := feedText(t, nl.p); got != "[3:b2 4:a2]" {
		t.Fatalf("new leader feed %s", got)
	}
}

// eventuallyCommit retries a commit while the new leader is not ready yet.
func eventuallyCommit(t testing.TB, nd *node, w *persistence.Write) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := nd.p.Commit(bg, w)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotReady) || time.Now().After(deadline) {
			t.Fatalf("commit on %s: %v", nd.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
