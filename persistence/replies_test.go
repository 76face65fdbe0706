package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/protocol"
)

func reply(id, answer string) *Reply {
	return &Reply{RequestID: id, Response: wrapperspb.String(answer)}
}

// describeReplies renders replies as "id=answer,...".
func describeReplies(rs []Reply) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s=%s,", r.RequestID, r.Response.(*wrapperspb.StringValue).GetValue())
	}
	return b.String()
}

// TestRepliesSurviveReopen: replies committed with events, with timers, or
// alone are returned by Load after the store is reopened, in order, and
// writes without a reply leave them alone.
func TestRepliesSurviveReopen(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "db")
	a := ActorKey{Kind: "user", ID: "1"}
	b := ActorKey{Kind: "user", ID: "2"}

	w := events(a, 1, 2)
	w.Reply = reply("r1", "one")
	commitT(t, s, w)
	commitT(t, s, events(a, 3, 3)) // no reply
	commitT(t, s, &Write{Actor: a, Timers: []TimerChange{{Name: "t", Due: unix(5)}}, Reply: reply("r2", "two")})
	commitT(t, s, &Write{Actor: a, Reply: reply("r3", "three")}) // a reply alone is stored too
	w = events(b, 1, 1)
	w.Reply = reply("rb", "b")
	commitT(t, s, w)
	closeT(t, s)

	s = openT(t, fs, "db")
	defer closeT(t, s)
	l := loadT(t, s, a)
	if got := describe(l); got != "last=3 events=1,2,3," {
		t.Fatalf("journal: %s", got)
	}
	if got := describeReplies(l.Replies); got != "r1=one,r2=two,r3=three," {
		t.Fatalf("replies of a: %s", got)
	}
	if got := describeReplies(loadT(t, s, b).Replies); got != "rb=b," {
		t.Fatalf("replies of b: %s", got)
	}
	// A snapshot deletes events, never replies.
	w = events(a, 4, 4)
	w.Snapshot = &Snapshot{Seq: 4, State: state("s4")}
	commitT(t, s, w)
	if got := describeReplies(loadT(t, s, a).Replies); got != "r1=one,r2=two,r3=three," {
		t.Fatalf("replies after snapshot: %s", got)
	}
}

// TestRepliesPruned: an actor keeps its last MaxReplies replies; each new
// one deletes the oldest in the same batch, also within one batch of many
// writes.
func TestRepliesPruned(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "db")
	a := ActorKey{Kind: "user", ID: "1"}
	const n = MaxReplies + 10
	// Concurrent commits share batches, exercising the batch's own count.
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.Commit(context.Background(), &Write{Actor: a, Reply: reply(fmt.Sprintf("r%03d", i), "x")})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, s)
	s = openT(t, fs, "db")
	defer closeT(t, s)
	for i := range 3 { // and one at a time, with a cold cache
		commitT(t, s, &Write{Actor: a, Reply: reply(fmt.Sprintf("z%d", i), "x")})
	}
	rs := loadT(t, s, a).Replies
	if len(rs) != MaxReplies {
		t.Fatalf("%d replies kept, want %d", len(rs), MaxReplies)
	}
	if last := rs[len(rs)-1].RequestID; last != "z2" {
		t.Fatalf("newest reply %s, want z2", last)
	}
	// Exactly MaxReplies keys are stored, not just returned.
	prefix := replyPrefix(localNamespace, encodeActor(a))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for ok := it.First(); ok; ok = it.Next() {
		keys++
	}
	_ = it.Close()
	if keys != MaxReplies {
		t.Fatalf("%d reply keys stored, want %d", keys, MaxReplies)
	}
}

func TestReplyValidation(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	a := ActorKey{Kind: "user", ID: "1"}
	for name, r := range map[string]*Reply{
		"empty id":    reply("", "x"),
		"long id":     reply(strings.Repeat("x", MaxRequestIDLen+1), "x"),
		"no response": {RequestID: "r"},
	} {
		err := s.Commit(context.Background(), &Write{Actor: a, Reply: r})
		if !errors.Is(err, ErrInvalidWrite) {
			t.Errorf("%s: %v, want ErrInvalidWrite", name, err)
		}
		if _, err := EncodeReplicatedWrite(&Write{Actor: a, Reply: r}); !errors.Is(err, ErrInvalidWrite) {
			t.Errorf("%s: encode: %v, want ErrInvalidWrite", name, err)
		}
	}
	commitT(t, s, &Write{Actor: a, Reply: reply(strings.Repeat("x", MaxRequestIDLen), "x")})

	// The replicated path refuses the same from untrusted entries, alone.
	jw := &protocol.JournalWrite{Kind: []byte("user"), Id: []byte("1"),
		Reply: &protocol.JournalReply{RequestId: bytes.Repeat([]byte("x"), MaxRequestIDLen+1), Response: []byte("junk")}}
	res, err := s.ApplyReplicated(1, 1, []*protocol.JournalWrite{jw,
		{Kind: []byte("user"), Id: []byte("1"), Reply: &protocol.JournalReply{RequestId: []byte("r"), Response: []byte("junk")}}})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res.Errs {
		if !errors.Is(e, ErrInvalidWrite) {
			t.Errorf("replicated write %d: %v, want ErrInvalidWrite", i, e)
		}
	}
}

// TestRepliesReplicatedAndSnapshotted: replies applied through
// ApplyReplicated are loaded from the namespace, pruned the same way, and
// travel in namespace snapshots.
func TestRepliesReplicatedAndSnapshotted(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "a"}
	w := events(a, 1, 1)
	w.Reply = reply("r1", "one")
	applyT(t, s, 1, 1, w, &Write{Actor: a, Reply: reply("r2", "two")})
	if got := describeReplies(mustLoad(t, s.Namespace(1), a).Replies); got != "r1=one,r2=two," {
		t.Fatalf("applied replies: %s", got)
	}
	// A second replica applying the same entries ends with the same keys.
	other := openT(t, vfs.NewMem(), "db2")
	defer closeT(t, other)
	var idx uint64 = 1
	applyT(t, other, 1, idx, w, &Write{Actor: a, Reply: reply("r2", "two")})
	for i := range MaxReplies {
		idx++
		r := &Write{Actor: a, Reply: reply(fmt.Sprintf("p%d", i), "x")}
		applyT(t, s, 1, idx, r)
		applyT(t, other, 1, idx, r)
	}
	rs := mustLoad(t, s.Namespace(1), a).Replies
	if len(rs) != MaxReplies || rs[0].RequestID != "p0" {
		t.Fatalf("pruned replicated replies: %d, oldest %s", len(rs), rs[0].RequestID)
	}

	snapStream := func(st *Store) []byte {
		snap, err := st.SnapshotNamespace(1)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		var buf bytes.Buffer
		if _, err := snap.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	stream := snapStream(s)
	if !bytes.Equal(stream, snapStream(other)) {
		t.Fatal("replicas applying the same entries hold different namespaces")
	}
	if err := s.RestoreNamespace(5, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if got, want := describeReplies(mustLoad(t, s.Namespace(5), a).Replies), describeReplies(rs); got != want {
		t.Fatalf("restored replies:\n got %s\nwant %s", got, want)
	}
	// The restored count continues: the next reply prunes the oldest.
	idx++
	applyT(t, s, 5, idx, &Write{Actor: a, Reply: reply("next", "x")})
	rs = mustLoad(t, s.Namespace(5), a).Replies
	if len(rs) != MaxReplies || rs[0].RequestID != "p1" || rs[len(rs)-1].RequestID != "next" {
		t.Fatalf("after restore and one more: %d, %s..%s", len(rs), rs[0].RequestID, rs[len(rs)-1].RequestID)
	}
}

func TestCorruptReply(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "db")
	a := ActorKey{Kind: "user", ID: "1"}
	w := events(a, 1, 1)
	w.Reply = reply("r1", "one")
	commitT(t, s, w)
	closeT(t, s)
	plant(t, fs, "db", func(db *pebble.DB) {
		flipLastByte(t, db, replyKey(localNamespace, encodeActor(a), 1))
	})
	s = openT(t, fs, "db")
	defer closeT(t, s)
	if _, err := s.Load(a); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "reply") {
		t.Fatalf("load with a corrupt reply: %v, want ErrCorrupt naming the reply", err)
	}
	// A malformed request-id prefix behind a valid checksum is corrupt too.
	if _, _, err := decodeReplyValue(frame([]byte{0xff}), "reply"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad request id: %v", err)
	}
}
