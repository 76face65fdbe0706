package persistence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/wardhq/ward/protocol"
)

func encodeT(t testing.TB, ws ...*Write) []*protocol.JournalWrite {
	t.Helper()
	out := make([]*protocol.JournalWrite, len(ws))
	for i, w := range ws {
		jw, err := EncodeReplicatedWrite(w)
		if err != nil {
			t.Fatalf("EncodeReplicatedWrite(%s): %v", w.Actor, err)
		}
		out[i] = jw
	}
	return out
}

func applyT(t testing.TB, s *Store, ns uint32, index uint64, ws ...*Write) ApplyResult {
	t.Helper()
	entry, err := MarshalReplicatedBatch(encodeT(t, ws...))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := DecodeReplicatedBatch(entry)
	if err != nil {
		t.Fatalf("DecodeReplicatedBatch: %v", err)
	}
	res, err := s.ApplyReplicated(ns, index, jws)
	if err != nil {
		t.Fatalf("ApplyReplicated(%d, %d): %v", ns, index, err)
	}
	return res
}

func TestApplyReplicatedNamespacesAndIdempotency(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "db")
	a := ActorKey{Kind: "user", ID: "1"}
	b := ActorKey{Kind: "user", ID: "2"}

	res := applyT(t, s, 1, 1, events(a, 1, 2), events(b, 1, 1))
	if res.Skipped || res.Errs[0] != nil || res.Errs[1] != nil {
		t.Fatalf("first entry: %+v", res)
	}
	// A conflicting write fails alone; the other write of the entry applies.
	res = applyT(t, s, 1, 2, events(a, 2, 3), events(b, 2, 2))
	if !errors.Is(res.Errs[0], ErrSeqConflict) || res.Errs[1] != nil {
		t.Fatalf("second entry: %+v", res)
	}
	// Replaying an applied index changes nothing and reports Skipped, even
	// though the same writes would now conflict.
	if res := applyT(t, s, 1, 2, events(b, 2, 2)); !res.Skipped {
		t.Fatalf("replay not skipped: %+v", res)
	}

	v := s.Namespace(1)
	if got := describe(mustLoad(t, v, a)); got != "last=2 events=1,2," {
		t.Fatalf("ns1 a: %s", got)
	}
	if got := describe(mustLoad(t, v, b)); got != "last=2 events=1,2," {
		t.Fatalf("ns1 b: %s", got)
	}
	// Other namespaces, the local one included, see nothing.
	if got := describe(loadT(t, s, a)); got != "last=0 events=" {
		t.Fatalf("local a: %s", got)
	}
	if got := describe(mustLoad(t, s.Namespace(2), a)); got != "last=0 events=" {
		t.Fatalf("ns2 a: %s", got)
	}
	if idx, err := v.AppliedIndex(); err != nil || idx != 2 {
		t.Fatalf("applied index %d, %v", idx, err)
	}

	// The applied index survives a restart (it was written without sync,
	// but Close flushes; crash behaviour is covered by the WAL argument).
	closeT(t, s)
	s = openT(t, fs, "db")
	defer closeT(t, s)
	if res := applyT(t, s, 1, 2, events(b, 3, 3)); !res.Skipped {
		t.Fatalf("replay after reopen not skipped: %+v", res)
	}
	if _, err := s.ApplyReplicated(0, 9, nil); !errors.Is(err, ErrInvalidWrite) {
		t.Fatalf("namespace 0 accepted: %v", err)
	}
}

func mustLoad(t testing.TB, v *View, a ActorKey) *Loaded {
	t.Helper()
	l, err := v.Load(a)
	if err != nil {
		t.Fatalf("Load(%s): %v", a, err)
	}
	return l
}

func TestApplyReplicatedSnapshotsAndTimers(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "a"}
	w := events(a, 1, 3)
	w.Snapshot = &Snapshot{Seq: 2, State: state("two")}
	w.Timers = []TimerChange{{Name: "t1", Due: unix(100), Payload: state("p")}, {Name: "t2", Due: unix(50)}}
	applyT(t, s, 3, 10, w)
	v := s.Namespace(3)
	if got := describe(mustLoad(t, v, a)); got != "last=3 snap@2=two events=3," {
		t.Fatalf("load: %s", got)
	}
	ts, err := v.DueTimers(unix(1000), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := describeTimers(ts); got != "k/a/t2@50:- k/a/t1@100:p " {
		t.Fatalf("timers: %s", got)
	}
	if ts, _ := s.DueTimers(unix(1000), 0); len(ts) != 0 {
		t.Fatalf("timers leaked into the local namespace: %s", describeTimers(ts))
	}
	applyT(t, s, 3, 11, &Write{Actor: a, Timers: []TimerChange{{Name: "t2", Cancel: true}}})
	ts, _ = v.DueTimers(unix(1000), 0)
	if got := describeTimers(ts); got != "k/a/t1@100:p " {
		t.Fatalf("timers after cancel: %s", got)
	}
}

func TestApplyReplicatedRejectsMalformedWrites(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	good := encodeT(t, events(ActorKey{Kind: "k", ID: "a"}, 1, 1))[0]
	bad := []*protocol.JournalWrite{
		{Kind: nil, Id: []byte("x"), FirstSeq: 1, Events: good.Events},                      // empty kind
		{Kind: []byte("k"), Id: []byte("b"), FirstSeq: 0, Events: good.Events},              // seq 0
		{Kind: []byte("k"), Id: []byte("c"), FirstSeq: 1, Events: [][]byte{{0xff, 0xff}}},   // not an Any
		{Kind: []byte("k"), Id: []byte("d"), Timers: []*protocol.JournalTimer{{Name: nil}}}, // no timer name
		{Kind: []byte("k"), Id: []byte("e"), Snapshot: &protocol.JournalSnapshot{Seq: 0}},   // no state
		{Kind: []byte("k"), Id: []byte("f"), FirstSeq: ^uint64(0), Events: good.Events},     // overflow
		good,
	}
	res, err := s.ApplyReplicated(1, 1, bad)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res.Errs[:len(bad)-1] {
		if !errors.Is(e, ErrInvalidWrite) {
			t.Errorf("write %d: %v, want ErrInvalidWrite", i, e)
		}
	}
	if res.Errs[len(bad)-1] != nil {
		t.Fatalf("good write refused: %v", res.Errs[len(bad)-1])
	}
}

func TestNamespaceSnapshotRestore(t *testing.T) {
	s := openT(t, vfs.NewMem(), "db")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "a"}
	w := events(a, 1, 2)
	w.Timers = []TimerChange{{Name: "t", Due: unix(5)}}
	applyT(t, s, 1, 7, w)
	applyT(t, s, 2, 3, events(a, 1, 5)) // a neighbour that must not move

	snap, err := s.SnapshotNamespace(1)
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot are not in it.
	applyT(t, s, 1, 8, events(a, 3, 3))
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}

	// Restore into another namespace, which had different data.
	applyT(t, s, 4, 1, events(ActorKey{Kind: "k", ID: "zzz"}, 1, 1))
	if err := s.RestoreNamespace(4, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	v := s.Namespace(4)
	if got := describe(mustLoad(t, v, a)); got != "last=2 events=1,2," {
		t.Fatalf("restored: %s", got)
	}
	if got := describe(mustLoad(t, v, ActorKey{Kind: "k", ID: "zzz"})); got != "last=0 events=" {
		t.Fatalf("old data survived restore: %s", got)
	}
	if idx, _ := v.AppliedIndex(); idx != 7 {
		t.Fatalf("restored applied index %d, want 7", idx)
	}
	if ts, _ := v.DueTimers(unix(10), 0); describeTimers(ts) != "k/a/t@5:- " {
		t.Fatalf("restored timers: %s", describeTimers(ts))
	}
	// Entries up to the restored index are skipped; the next one validates
	// against the restored journal.
	if res := applyT(t, s, 4, 7, events(a, 3, 3)); !res.Skipped {
		t.Fatal("entry at restored index applied")
	}
	if res := applyT(t, s, 4, 8, events(a, 3, 3)); res.Errs[0] != nil {
		t.Fatalf("write after restore: %v", res.Errs[0])
	}
	if got := describe(mustLoad(t, s.Namespace(2), a)); got != "last=5 events=1,2,3,4,5," {
		t.Fatalf("neighbour namespace: %s", got)
	}

	// Damaged streams are refused and change nothing.
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": buf.Bytes()[:buf.Len()-6],
		"bitflip":   flip(buf.Bytes(), len(nsSnapshotMagic)+3),
		"magic":     flip(buf.Bytes(), 0),
	} {
		if err := s.RestoreNamespace(4, bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	if got := describe(mustLoad(t, v, a)); got != "last=3 events=1,2,3," {
		t.Fatalf("after refused restores: %s", got)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

// FuzzDecodeReplicatedBatch feeds arbitrary bytes to the log entry decoder
// and, when they decode, to the apply path: neither may panic, decode
// failures wrap ErrCorrupt, and per-write failures are validation results,
// never store errors.
func FuzzDecodeReplicatedBatch(f *testing.F) {
	seed, _ := MarshalReplicatedBatch(encodeT(f, events(ActorKey{Kind: "k", ID: "a"}, 1, 2),
		&Write{Actor: ActorKey{Kind: "k", ID: "b"}, Timers: []TimerChange{{Name: "t", Due: unix(1), Payload: state("x")}}}))
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{2, 0})
	f.Add(seed[:len(seed)/2])
	s := openT(f, vfs.NewMem(), "db")
	f.Cleanup(func() { closeT(f, s) })
	index := uint64(0)
	f.Fuzz(func(t *testing.T, entry []byte) {
		jws, err := DecodeReplicatedBatch(entry)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode error without ErrCorrupt: %v", err)
			}
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := MarshalReplicatedBatch(jws)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if _, err := DecodeReplicatedBatch(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		index++
		res, err := s.ApplyReplicated(1, index, jws)
		if err != nil {
			t.Fatalf("apply of decodable entry failed the store: %v", err)
		}
		for i, e := range res.Errs {
			if e != nil && !errors.Is(e, ErrInvalidWrite) && !errors.Is(e, ErrSeqConflict) {
				t.Fatalf("write %d: unexpected error kind: %v", i, e)
			}
		}
	})
}
