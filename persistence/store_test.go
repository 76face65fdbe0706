package persistence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/protocol"
)

func TestRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	a := ActorKey{Kind: "session", ID: "s1"}
	b := ActorKey{Kind: "session", ID: "s2"}

	if l := loadT(t, s, a); describe(l) != "last=0 events=" {
		t.Fatalf("new actor: %s", describe(l))
	}
	commitT(t, s, events(a, 1, 3))
	commitT(t, s, events(b, 1, 1))
	commitT(t, s, events(a, 4, 4))
	// Events and a snapshot covering all of them in one write.
	w := events(a, 5, 6)
	w.Snapshot = &Snapshot{Seq: 6, State: state("at6")}
	commitT(t, s, w)
	commitT(t, s, events(a, 7, 9))
	commitT(t, s, events(b, 2, 3))

	want := map[ActorKey]string{
		a: "last=9 snap@6=at6 events=7,8,9,",
		b: "last=3 events=1,2,3,",
	}
	check := func(s *Store) {
		t.Helper()
		for k, w := range want {
			if got := describe(loadT(t, s, k)); got != w {
				t.Errorf("Load(%s) = %s, want %s", k, got, w)
			}
		}
	}
	check(s)

	// A snapshot-only write in the middle of the journal keeps later events.
	commitT(t, s, &Write{Actor: a, Snapshot: &Snapshot{Seq: 8, State: state("at8")}})
	want[a] = "last=9 snap@8=at8 events=9,"
	check(s)

	closeT(t, s)
	s = openT(t, fs, "/data")
	defer closeT(t, s)
	check(s)
	// The journal continues where it was after a restart.
	commitT(t, s, events(a, 10, 10))
	want[a] = "last=10 snap@8=at8 events=9,10,"
	check(s)

	st := s.Stats()
	if st.Writes != 1 || st.Events != 1 {
		t.Errorf("Stats after reopen = %+v, want 1 write, 1 event", st)
	}
}

func TestSnapshotDeletesCoveredEvents(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "1"}
	commitT(t, s, events(a, 1, 5))
	commitT(t, s, &Write{Actor: a, Snapshot: &Snapshot{Seq: 3, State: state("s3")}})
	commitT(t, s, &Write{Actor: a, Snapshot: &Snapshot{Seq: 5, State: state("s5")}})

	// No event key of a may remain: every one is at or below seq 5.
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	prefix := eventPrefix(s.ns, encodeActor(a))
	for ok := it.First(); ok; ok = it.Next() {
		if strings.HasPrefix(string(it.Key()), string(prefix)) {
			t.Errorf("event key %x survived its snapshot", it.Key())
		}
	}
	if got := describe(loadT(t, s, a)); got != "last=5 snap@5=s5 events=" {
		t.Errorf("Load = %s", got)
	}
}

func TestActorKeysDoNotCollide(t *testing.T) {
	s := openT(t, vfs.NewMem(), "/data")
	defer closeT(t, s)
	actors := []ActorKey{
		{Kind: "a", ID: "bc"}, {Kind: "ab", ID: "c"}, {Kind: "abc", ID: ""},
		{Kind: "a", ID: "b"}, {Kind: "a", ID: "b\x00"}, {Kind: "a\x01", ID: "b"},
		{Kind: "a", ID: strings.Repeat("x", 200)}, {Kind: "a", ID: strings.Repeat("x", 201)},
	}
	for i, a := range actors {
		commitT(t, s, events(a, 1, uint64(i+1)))
		commitT(t, s, &Write{Actor: a, Timers: []TimerChange{{Name: "t", Due: unix(int64(i)), Payload: state(a.String())}}})
	}
	for i, a := range actors {
		l := loadT(t, s, a)
		if l.LastSeq != uint64(i+1) || len(l.Events) != i+1 {
			t.Errorf("Load(%q) = %s, want %d events", a, describe(l), i+1)
		}
	}
	ts, err := s.DueTimers(unix(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, tm := range ts {
		if tm.Actor != actors[i] {
			t.Errorf("timer %d belongs to %q, want %q", i, tm.Actor, actors[i])
		}
	}
}

func TestSeqConflictChangesNothing(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	a := ActorKey{Kind: "k", ID: "1"}
	commitT(t, s, events(a, 1, 3))
	before := describe(loadT(t, s, a))

	bad := []*Write{
		events(a, 3, 4), // overlaps
		events(a, 5, 5), // gap
		events(a, 1, 1), // stale activation
		// A snapshot beyond the journal.
		{Actor: a, Snapshot: &Snapshot{Seq: 9, State: state("x")}},
		// A valid-looking write whose timers must not land either.
		{Actor: a, FirstSeq: 2, Events: events(a, 2, 2).Events, Timers: []TimerChange{{Name: "t", Due: unix(1)}}},
	}
	for _, w := range bad {
		err := s.Commit(context.Background(), w)
		if !errors.Is(err, ErrSeqConflict) {
			t.Errorf("Commit(first=%d, snap=%v) = %v, want ErrSeqConflict", w.FirstSeq, w.Snapshot != nil, err)
		}
	}
	if got := describe(loadT(t, s, a)); got != before {
		t.Errorf("after refused writes: %s, want %s", got, before)
	}
	if ts, _ := s.DueTimers(unix(10), 0); len(ts) != 0 {
		t.Errorf("refused write left timers: %s", describeTimers(ts))
	}
	if st := s.Stats(); st.Rejected != uint64(len(bad)) {
		t.Errorf("Stats.Rejected = %d, want %d", st.Rejected, len(bad))
	}

	// Snapshot older than the stored one, and conflicts after a restart
	// (cold cache, journal end known only from the snapshot key).
	commitT(t, s, &Write{Actor: a, Snapshot: &Snapshot{Seq: 3, State: state("s3")}})
	closeT(t, s)
	s = openT(t, fs, "/data")
	defer closeT(t, s)
	for _, w := range []*Write{events(a, 3, 3), {Actor: a, Snapshot: &Snapshot{Seq: 2, State: state("old")}}} {
		if err := s.Commit(context.Background(), w); !errors.Is(err, ErrSeqConflict) {
			t.Errorf("after restart Commit(first=%d) = %v, want ErrSeqConflict", w.FirstSeq, err)
		}
	}
	commitT(t, s, events(a, 4, 4))
}

func TestInvalidWrites(t *testing.T) {
	s := openT(t, vfs.NewMem(), "/data")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "1"}
	cases := map[string]*Write{
		"nil write":      nil,
		"empty kind":     events(ActorKey{ID: "x"}, 1, 1),
		"seq zero":       events(a, 0, 0),
		"nil event":      {Actor: a, FirstSeq: 1, Events: []protocol.Message{nil}},
		"nil state":      {Actor: a, Snapshot: &Snapshot{Seq: 0}},
		"empty timer":    {Actor: a, Timers: []TimerChange{{Due: unix(1)}}},
		"huge id":        events(ActorKey{Kind: "k", ID: strings.Repeat("x", maxNameLen+1)}, 1, 1),
		"seq overflow":   {Actor: a, FirstSeq: 1<<64 - 1, Events: events(a, 1, 2).Events},
		"huge timer nam": {Actor: a, Timers: []TimerChange{{Name: strings.Repeat("x", maxNameLen+1)}}},
	}
	for name, w := range cases {
		if err := s.Commit(context.Background(), w); !errors.Is(err, ErrInvalidWrite) {
			t.Errorf("%s: Commit = %v, want ErrInvalidWrite", name, err)
		}
	}
	if _, err := s.Load(ActorKey{}); !errors.Is(err, ErrInvalidWrite) {
		t.Errorf("Load(empty key) = %v", err)
	}
	// An empty write is a no-op, not an error.
	if err := s.Commit(context.Background(), &Write{Actor: a}); err != nil {
		t.Errorf("empty write: %v", err)
	}
}

func TestConcurrentCommits(t *testing.T) {
	const actors, writes = 64, 200
	fs := vfs.NewMem()
	reg := prometheus.NewRegistry()
	s := openT(t, fs, "/data", func(o *Options) { o.Registerer = reg })
	var wg sync.WaitGroup
	errs := make(chan error, actors)
	for g := range actors {
		wg.Go(func() {
			a := ActorKey{Kind: "k", ID: fmt.Sprint(g)}
			for i := uint64(1); i <= writes; i++ {
				w := events(a, i, i)
				if i%50 == 0 {
					w.Snapshot = &Snapshot{Seq: i, State: state(fmt.Sprint(i))}
				}
				if err := s.Commit(context.Background(), w); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("stats: %+v (%.1f writes/batch)", st, float64(st.Writes)/float64(st.Batches))
	if st.Writes != actors*writes || st.Events != actors*writes {
		t.Errorf("Stats = %+v, want %d writes and events", st, actors*writes)
	}
	if st.Batches >= st.Writes {
		t.Errorf("no batching: %d batches for %d writes", st.Batches, st.Writes)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range fams {
		seen[mf.GetName()] = true
		if mf.GetName() == "ward_persist_events_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != actors*writes {
				t.Errorf("ward_persist_events_total = %v", v)
			}
		}
		if mf.GetName() == "ward_persist_batch_writes" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != st.Batches {
				t.Errorf("ward_persist_batch_writes has %d samples, want %d", n, st.Batches)
			}
		}
	}
	for _, name := range []string{"ward_persist_batch_writes", "ward_persist_batch_events", "ward_persist_commit_seconds", "ward_persist_sync_seconds", "ward_persist_events_total"} {
		if !seen[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
	closeT(t, s)

	// Reopening registers the metrics again on the same registry.
	s = openT(t, fs, "/data", func(o *Options) { o.Registerer = reg })
	defer closeT(t, s)
	for g := range actors {
		a := ActorKey{Kind: "k", ID: fmt.Sprint(g)}
		if got := describe(loadT(t, s, a)); got != "last=200 snap@200=200 events=" {
			t.Fatalf("Load(%s) = %s", a, got)
		}
	}
}

// TestBatchValidatesAgainstItself drives one batch directly, so that several
// writes for one actor are certain to share it.
func TestBatchValidatesAgainstItself(t *testing.T) {
	s := openT(t, vfs.NewMem(), "/data")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "1"}
	b := ActorKey{Kind: "k", ID: "2"}
	commitT(t, s, events(a, 1, 1))

	ws := []*Write{
		events(a, 2, 3),
		events(a, 3, 3), // conflicts with the write before it in the batch
		events(b, 1, 1),
		events(a, 4, 4), // follows the first write
		{Actor: a, Snapshot: &Snapshot{Seq: 4, State: state("s4")}, Timers: []TimerChange{{Name: "t", Due: unix(5)}}},
		events(a, 5, 5),
		{Actor: a, Timers: []TimerChange{{Name: "t", Due: unix(7)}}}, // replaces a timer set earlier in the batch
		events(b, 1, 1), // conflicts with the third write
	}
	var reqs []*request
	for _, w := range ws {
		enc, err := encodeWrite(s.ns, w)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, &request{w: enc, done: make(chan error, 1), state: reqTaken})
	}
	// The committer is idle (its queue is empty), so driving a batch from
	// here does not race with it.
	s.commitBatch(&batchBuilder{pending: map[string]actorSeqs{}, timers: map[string]timerState{}}, reqs)
	wantConflict := map[int]bool{1: true, 7: true}
	for i, r := range reqs {
		err := <-r.done
		if wantConflict[i] != errors.Is(err, ErrSeqConflict) || (!wantConflict[i] && err != nil) {
			t.Errorf("write %d: %v, want conflict=%v", i, err, wantConflict[i])
		}
	}
	if got := describe(loadT(t, s, a)); got != "last=5 snap@4=s4 events=5," {
		t.Errorf("Load(a) = %s", got)
	}
	if got := describe(loadT(t, s, b)); got != "last=1 events=1," {
		t.Errorf("Load(b) = %s", got)
	}
	ts, err := s.DueTimers(unix(100), 0)
	if err != nil || describeTimers(ts) != "k/1/t@7:- " {
		t.Errorf("timers = %s, %v", describeTimers(ts), err)
	}
	if st := s.Stats(); st.Batches != 2 || st.Writes != 7 || st.Rejected != 2 {
		t.Errorf("Stats = %+v", st)
	}
	// The committer's cache must agree with what was stored.
	commitT(t, s, events(a, 6, 6))
	if err := s.Commit(context.Background(), events(b, 2, 3)); err != nil {
		t.Error(err)
	}
}

func TestContextAndClose(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	a := ActorKey{Kind: "k", ID: "1"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Commit(ctx, events(a, 1, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit(canceled) = %v", err)
	}
	if l := loadT(t, s, a); l.LastSeq != 0 {
		t.Errorf("canceled write stored: %s", describe(l))
	}

	// Close while writers are active: every Commit either succeeded (and
	// is durable) or reports ErrClosed.
	var wg sync.WaitGroup
	acked := make([]uint64, 16)
	for g := range acked {
		wg.Go(func() {
			a := ActorKey{Kind: "w", ID: fmt.Sprint(g)}
			for i := uint64(1); ; i++ {
				err := s.Commit(context.Background(), events(a, i, i))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
				acked[g] = i
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	closeT(t, s)
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Load(a); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v", err)
	}
	if _, err := s.DueTimers(time.Now(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("DueTimers after Close = %v", err)
	}

	s = openT(t, fs, "/data")
	defer closeT(t, s)
	for g, n := range acked {
		a := ActorKey{Kind: "w", ID: fmt.Sprint(g)}
		if l := loadT(t, s, a); l.LastSeq != n {
			t.Errorf("%s: stored %d, acknowledged %d", a, l.LastSeq, n)
		}
	}
}

// TestCancelWhileQueued: a caller that gives up while its write is still
// queued gets ctx.Err() and the write is never applied.
func TestCancelWhileQueued(t *testing.T) {
	s := openT(t, vfs.NewMem(), "/data")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "1"}
	// Hold the queue's lock so the committer cannot take the write.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s.mu.Lock()
	go func() { done <- s.Commit(ctx, events(a, 1, 1)) }()
	time.Sleep(10 * time.Millisecond)
	// Commit is blocked enqueuing; cancel, then let it run. It either sees
	// the cancellation before enqueuing or abandons its queued request.
	cancel()
	s.mu.Unlock()
	err := <-done
	l := loadT(t, s, a)
	switch {
	case errors.Is(err, context.Canceled) && l.LastSeq == 0:
	case err == nil && l.LastSeq == 1:
	default:
		t.Errorf("Commit = %v with journal %s", err, describe(l))
	}

	// A request abandoned while queued is skipped by the committer.
	ghost := &Write{Actor: a, Timers: []TimerChange{{Name: "ghost", Due: unix(1)}}}
	r := &request{w: mustEncode(t, s, ghost), done: make(chan error, 1), state: reqAbandoned}
	s.mu.Lock()
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	s.signal()
	commitT(t, s, events(a, l.LastSeq+1, l.LastSeq+1))
	if ts, err := s.DueTimers(unix(10), 0); err != nil || len(ts) != 0 {
		t.Errorf("abandoned write applied: %s %v", describeTimers(ts), err)
	}
	select {
	case err := <-r.done:
		t.Errorf("abandoned request answered: %v", err)
	default:
	}
}

func mustEncode(t *testing.T, s *Store, w *Write) encodedWrite {
	t.Helper()
	enc, err := encodeWrite(s.ns, w)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
