package persistence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/protocol"
)

// Tests use well-known wrapper types as events and states: they are
// registered in every binary, so the tests do not depend on domain protos.

func ev(seq uint64) protocol.Message { return wrapperspb.UInt64(seq) }

func state(s string) protocol.Message { return wrapperspb.String(s) }

func openT(t testing.TB, fs vfs.FS, dir string, opts ...func(*Options)) *Store {
	t.Helper()
	o := Options{FS: fs}
	for _, f := range opts {
		f(&o)
	}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func closeT(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func commitT(t testing.TB, s *Store, w *Write) {
	t.Helper()
	if err := s.Commit(context.Background(), w); err != nil {
		t.Fatalf("Commit(%s from %d): %v", w.Actor, w.FirstSeq, err)
	}
}

// events builds a write of events from..to (inclusive).
func events(a ActorKey, from, to uint64) *Write {
	w := &Write{Actor: a, FirstSeq: from}
	for s := from; s <= to; s++ {
		w.Events = append(w.Events, ev(s))
	}
	return w
}

func loadT(t testing.TB, s *Store, a ActorKey) *Loaded {
	t.Helper()
	l, err := s.Load(a)
	if err != nil {
		t.Fatalf("Load(%s): %v", a, err)
	}
	return l
}

// describe renders a Loaded as text for comparisons and failure messages.
func describe(l *Loaded) string {
	out := fmt.Sprintf("last=%d", l.LastSeq)
	if l.Snapshot != nil {
		out += fmt.Sprintf(" snap@%d=%v", l.Snapshot.Seq, l.Snapshot.State.(*wrapperspb.StringValue).GetValue())
	}
	out += " events="
	for _, e := range l.Events {
		out += fmt.Sprintf("%d,", e.(*wrapperspb.UInt64Value).GetValue())
	}
	return out
}

func describeTimers(ts []Timer) string {
	out := ""
	for _, t := range ts {
		p := "-"
		if t.Payload != nil {
			p = t.Payload.(*wrapperspb.StringValue).GetValue()
		}
		out += fmt.Sprintf("%s/%s@%d:%s ", t.Actor, t.Name, t.Due.Unix(), p)
	}
	return out
}

// rawDB opens the store's pebble database directly, for tests that plant
// bad bytes. The store must be closed.
func rawDB(t testing.TB, fs vfs.FS, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: testLogger{t}})
	if err != nil {
		t.Fatalf("raw pebble open: %v", err)
	}
	return db
}

type testLogger struct{ t testing.TB }

func (l testLogger) Infof(string, ...any)         {}
func (l testLogger) Errorf(f string, args ...any) { l.t.Logf("pebble: "+f, args...) }
func (l testLogger) Fatalf(f string, args ...any) { l.t.Fatalf("pebble fatal: "+f, args...) }
func unix(sec int64) time.Time                    { return time.Unix(sec, 0) }
