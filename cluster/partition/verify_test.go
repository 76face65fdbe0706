package partition

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/persistence"
)

// TestVerifyLeaderBatchesAndFences: concurrent VerifyLeader calls share
// raft verifications; after a leadership transfer the old leader's epoch is
// refused (on the old leader, and on the new one), and an epoch of a lost
// and regained leadership is refused too.
func TestVerifyLeaderBatchesAndFences(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	epoch := l.p.LeaderEpoch()
	if epoch == 0 {
		t.Fatal("ready leader reports epoch 0")
	}
	ctx := context.Background()
	if err := l.p.VerifyLeader(ctx, epoch); err != nil {
		t.Fatalf("verify on the leader: %v", err)
	}
	before := l.p.stats.verifies.Load()
	const callers = 64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.p.VerifyLeader(ctx, epoch)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent verify: %v", err)
		}
	}
	rounds := l.p.stats.verifies.Load() - before
	t.Logf("%d concurrent verifications took %d raft rounds", callers, rounds)
	if rounds >= callers {
		t.Fatalf("%d callers ran %d raft verifications: not batched", callers, rounds)
	}

	for _, f := range c.followers(l) {
		if err := f.p.VerifyLeader(ctx, epoch); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("verify on follower %s: %v, want ErrNotLeader", f.id, err)
		}
	}

	target := c.followers(l)[0]
	if err := l.p.LeadershipTransferToServer(target.id, target.addr); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	nl := c.leader(10 * time.Second)
	if err := l.p.VerifyLeader(ctx, epoch); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("verify on the deposed leader: %v, want ErrNotLeader", err)
	}
	if err := nl.p.VerifyLeader(ctx, epoch); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("old epoch on the new leader: %v, want ErrNotLeader", err)
	}
	if err := nl.p.VerifyLeader(ctx, nl.p.LeaderEpoch()); err != nil {
		t.Fatalf("new leader, own epoch: %v", err)
	}

	// Back to the first node: a new leadership, a new epoch.
	if nl != l {
		if err := nl.p.LeadershipTransferToServer(l.id, l.addr); err != nil {
			t.Fatalf("transfer back: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !l.p.IsReady() {
			if time.Now().After(deadline) {
				t.Fatal("first node did not lead again")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := l.p.VerifyLeader(ctx, epoch); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("epoch of a lost and regained leadership: %v, want ErrNotLeader", err)
		}
		if e := l.p.LeaderEpoch(); e <= epoch {
			t.Fatalf("regained epoch %d, not after %d", e, epoch)
		}
	}
}

// TestRepliesReplicated: a write's reply is replicated with it and the next
// leader loads it.
func TestRepliesReplicated(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := actor(1)
	w := write(a, 1, 1)
	w.Reply = &persistence.Reply{RequestID: "req-1", Response: wrapperspb.String("answer")}
	if err := c.commitRetry(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	// A reply-only write is replicated too.
	if err := c.commitRetry(context.Background(), &persistence.Write{Actor: a,
		Reply: &persistence.Reply{RequestID: "req-2", Response: wrapperspb.String("two")}}); err != nil {
		t.Fatal(err)
	}
	l := c.leader(10 * time.Second)
	target := c.followers(l)[0]
	if err := l.p.LeadershipTransferToServer(target.id, target.addr); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	nl := c.leader(10 * time.Second)
	loaded, err := nl.p.Load(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Replies) != 2 || loaded.Replies[0].RequestID != "req-1" || loaded.Replies[1].RequestID != "req-2" {
		t.Fatalf("new leader loaded replies %+v", loaded.Replies)
	}
	if got := loaded.Replies[0].Response.(*wrapperspb.StringValue).GetValue(); got != "answer" {
		t.Fatalf("reply %q", got)
	}
}
