package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/wardhq/ward/protocol"
)

func envelope(id string) *protocol.EventEnvelope {
	return &protocol.EventEnvelope{Id: id, Type: "identity.user.registered.v1", Tenant: "t", Subject: id}
}

func emitting(w *Write, ids ...string) *Write {
	for _, id := range ids {
		w.Emitted = append(w.Emitted, envelope(id))
	}
	return w
}

// feedIDs renders a feed read as "pos:id ...".
func feedIDs(t testing.TB, v *View, after uint64, limit int) string {
	t.Helper()
	entries, err := v.Feed(after, limit)
	if err != nil {
		t.Fatalf("Feed: %v", err)
	}
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%s", e.Position, e.Event.GetId())
	}
	return b.String()
}

// TestFeedLocal: emitted events are numbered in commit order, survive a
// reopen, are trimmed by position, and positions are never reused, not even
// after every entry was trimmed.
func TestFeedLocal(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "db")
	a := ActorKey{Kind: "user", ID: "1"}
	b := ActorKey{Kind: "user", ID: "2"}
	commitT(t, s, emitting(events(a, 1, 1), "a1", "a2"))
	commitT(t, s, emitting(events(b, 1, 1), "b1"))
	// A write may carry only emitted events.
	commitT(t, s, emitting(&Write{Actor: a, FirstSeq: 2}, "a3"))
	// A refused write emits nothing.
	if err := s.Commit(context.Background(), emitting(events(a, 9, 9), "lost")); !errors.Is(err, ErrSeqConflict) {
		t.Fatalf("conflicting write: %v", err)
	}
	if got, want := feedIDs(t, s.Namespace(0), 0, 100), "1:a1 2:a2 3:b1 4:a3"; got != want {
		t.Fatalf("feed = %q, want %q", got, want)
	}
	if got, want := feedIDs(t, s.Namespace(0), 2, 1), "3:b1"; got != want {
		t.Fatalf("feed after 2 limit 1 = %q, want %q", got, want)
	}
	if err := s.TrimFeed(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	if got := feedIDs(t, s.Namespace(0), 0, 100); got != "" {
		t.Fatalf("after trim: %q", got)
	}
	closeT(t, s)
	s = openT(t, fs, "db")
	defer closeT(t, s)
	commitT(t, s, emitting(events(b, 2, 2), "b2"))
	if got, want := feedIDs(t, s.Namespace(0), 0, 100), "5:b2"; got != want {
		t.Fatalf("after reopen = %q, want %q", got, want)
	}
}

func TestFeedRefusesBadEmitted(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	a := ActorKey{Kind: "user", ID: "1"}
	w := events(a, 1, 1)
	w.Emitted = []*protocol.EventEnvelope{nil}
	if err := s.Commit(context.Background(), w); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("nil emitted: %v", err)
	}
	w = events(a, 1, 1)
	for i := range MaxEmitted + 1 {
		w.Emitted = append(w.Emitted, envelope(fmt.Sprint(i)))
	}
	if err := s.Commit(context.Background(), w); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("too many emitted: %v", err)
	}
	if got := feedIDs(t, s.Namespace(0), 0, 100); got != "" {
		t.Fatalf("refused writes left %q in the feed", got)
	}
	// A replicated write with an undecodable emitted event is refused by
	// every replica alike, and leaves nothing.
	jw, err := EncodeReplicatedWrite(emitting(events(a, 1, 1), "ok"))
	if err != nil {
		t.Fatal(err)
	}
	jw.Emitted[0] = []byte("not an Any")
	res, err := s.ApplyReplicated(1, 1, []*protocol.JournalWrite{jw})
	if err != nil || !errors.Is(res.Errs[0], ErrInvalidWrite) {
		t.Fatalf("bad replicated emitted: res %+v err %v", res, err)
	}
	if got := feedIDs(t, s.Namespace(1), 0, 100); got != "" {
		t.Fatalf("refused replicated write left %q", got)
	}
}

// TestFeedReplicated: two replicas applying the same entries number their
// feeds the same, a trim entry trims both, a replayed entry changes
// nothing, and a restored namespace snapshot carries the feed and its head.
func TestFeedReplicated(t *testing.T) {
	fs := vfs.NewMem()
	r1 := openT(t, fs, "r1")
	r2 := openT(t, fs, "r2")
	defer closeT(t, r2)
	a := ActorKey{Kind: "session", ID: "s"}
	b := ActorKey{Kind: "user", ID: "u"}
	entries := [][]*Write{
		{emitting(events(a, 1, 1), "a1"), emitting(events(b, 1, 1), "b1", "b2")},
		{emitting(events(a, 5, 5), "conflict"), emitting(events(b, 2, 2), "b3")},
	}
	for _, r := range []*Store{r1, r2} {
		for i, ws := range entries {
			applyT(t, r, 3, uint64(i+1), ws...)
		}
		// Replay of an applied index: skipped, feed unchanged.
		applyT(t, r, 3, 2, emitting(events(a, 2, 2), "replayed"))
	}
	want := "1:a1 2:b1 3:b2 4:b3"
	for i, r := range []*Store{r1, r2} {
		if got := feedIDs(t, r.Namespace(3), 0, 100); got != want {
			t.Fatalf("replica %d feed = %q, want %q", i+1, got, want)
		}
	}
	trim, err := MarshalFeedTrim(2)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := DecodeReplicatedEntry(trim)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Store{r1, r2} {
		if _, err := r.ApplyReplicatedEntry(3, 3, entry); err != nil {
			t.Fatal(err)
		}
	}
	if got := feedIDs(t, r1.Namespace(3), 0, 100); got != "3:b2 4:b3" {
		t.Fatalf("after trim: %q", got)
	}
	// Other namespaces have their own feeds.
	applyT(t, r1, 4, 1, emitting(events(a, 1, 1), "other"))
	if got := feedIDs(t, r1.Namespace(4), 0, 100); got != "1:other" {
		t.Fatalf("namespace 4: %q", got)
	}

	// A snapshot installed on a third replica carries feed and head.
	snap, err := r1.SnapshotNamespace(3)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_ = snap.Close()
	closeT(t, r1)
	r3 := openT(t, fs, "r3")
	defer closeT(t, r3)
	applyT(t, r3, 3, 1, emitting(events(a, 1, 1), "stale")) // replaced by the restore
	if err := r3.RestoreNamespace(3, &buf); err != nil {
		t.Fatal(err)
	}
	applyT(t, r3, 3, 4, emitting(events(b, 3, 3), "b4"))
	if got, want := feedIDs(t, r3.Namespace(3), 0, 100), "3:b2 4:b3 5:b4"; got != want {
		t.Fatalf("restored replica = %q, want %q", got, want)
	}
}
