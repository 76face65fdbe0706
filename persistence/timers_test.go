package persistence

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestTimers(t *testing.T) {
	fs := vfs.NewMem()
	s := openT(t, fs, "/data")
	a := ActorKey{Kind: "session", ID: "a"}
	b := ActorKey{Kind: "session", ID: "b"}
	due := func(s *Store, until int64, limit int) string {
		t.Helper()
		ts, err := s.DueTimers(unix(until), limit)
		if err != nil {
			t.Fatalf("DueTimers: %v", err)
		}
		return describeTimers(ts)
	}

	// Timers ride along with events, or alone.
	w := events(a, 1, 1)
	w.Timers = []TimerChange{
		{Name: "expire", Due: unix(30), Payload: state("exp-a")},
		{Name: "touch", Due: unix(10)},
	}
	commitT(t, s, w)
	commitT(t, s, &Write{Actor: b, Timers: []TimerChange{
		{Name: "expire", Due: unix(10), Payload: state("exp-b")},
		{Name: "early", Due: unix(-5), Payload: state("before 1970")},
	}})

	if got, want := due(s, 100, 0), "session/b/early@-5:before 1970 session/a/touch@10:- session/b/expire@10:exp-b session/a/expire@30:exp-a "; got != want {
		t.Errorf("all due:\n got %s\nwant %s", got, want)
	}
	if got, want := due(s, 10, 0), "session/b/early@-5:before 1970 session/a/touch@10:- session/b/expire@10:exp-b "; got != want {
		t.Errorf("due by 10 (inclusive):\n got %s\nwant %s", got, want)
	}
	if got, want := due(s, 100, 2), "session/b/early@-5:before 1970 session/a/touch@10:- "; got != want {
		t.Errorf("limit 2:\n got %s\nwant %s", got, want)
	}
	if got := due(s, -6, 0); got != "" {
		t.Errorf("nothing due yet: %s", got)
	}

	// Replace moves the due-index entry; cancel removes both records;
	// cancelling an unknown timer is a no-op; within one write the last
	// change of a name wins.
	commitT(t, s, &Write{Actor: a, FirstSeq: 2, Events: events(a, 2, 2).Events, Timers: []TimerChange{
		{Name: "expire", Due: unix(5), Payload: state("exp-a2")},
		{Name: "touch", Cancel: true},
		{Name: "never-set", Cancel: true},
		{Name: "twice", Due: unix(50)},
		{Name: "twice", Due: unix(60), Payload: state("second")},
		{Name: "gone", Due: unix(70)},
		{Name: "gone", Cancel: true},
	}})
	commitT(t, s, &Write{Actor: b, Timers: []TimerChange{{Name: "early", Cancel: true}}})
	want := "session/a/expire@5:exp-a2 session/b/expire@10:exp-b session/a/twice@60:second "
	if got := due(s, 100, 0); got != want {
		t.Errorf("after replace/cancel:\n got %s\nwant %s", got, want)
	}
	if n := countKeys(t, s, famTimer); n != 3 {
		t.Errorf("%d timer primary keys, want 3", n)
	}
	if n := countKeys(t, s, famDue); n != 3 {
		t.Errorf("%d due-index keys, want 3", n)
	}

	closeT(t, s)
	s = openT(t, fs, "/data")
	defer closeT(t, s)
	if got := due(s, 100, 0); got != want {
		t.Errorf("after reopen:\n got %s\nwant %s", got, want)
	}
	// Replacing after a restart finds the old due entry through the
	// primary key, not a cache.
	commitT(t, s, &Write{Actor: b, Timers: []TimerChange{{Name: "expire", Due: unix(1)}}})
	if got, want := due(s, 100, 0), "session/b/expire@1:- session/a/expire@5:exp-a2 session/a/twice@60:second "; got != want {
		t.Errorf("replace after reopen:\n got %s\nwant %s", got, want)
	}
}

func TestTimerTimesClamp(t *testing.T) {
	s := openT(t, vfs.NewMem(), "/data")
	defer closeT(t, s)
	a := ActorKey{Kind: "k", ID: "1"}
	commitT(t, s, &Write{Actor: a, Timers: []TimerChange{
		{Name: "zero", Due: time.Time{}},
		{Name: "far", Due: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Name: "now", Due: time.Unix(1_700_000_000, 123)},
	}})
	ts, err := s.DueTimers(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[0].Name != "zero" || ts[1].Name != "now" || ts[2].Name != "far" {
		t.Fatalf("order: %s", describeTimers(ts))
	}
	if !ts[1].Due.Equal(time.Unix(1_700_000_000, 123)) {
		t.Errorf("due lost precision: %v", ts[1].Due)
	}
	if !ts[0].Due.Equal(minTime) || !ts[2].Due.Equal(maxTime) {
		t.Errorf("clamped dues: %v, %v", ts[0].Due, ts[2].Due)
	}
}

func countKeys(t *testing.T, s *Store, fam byte) int {
	t.Helper()
	p := familyPrefix(s.ns, fam)
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.SeekGE(p); ok && len(it.Key()) > len(p) && string(it.Key()[:len(p)]) == string(p); ok = it.Next() {
		n++
	}
	return n
}
