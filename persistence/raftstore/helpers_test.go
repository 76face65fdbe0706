package raftstore

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// testDB is a pebble database on an in-memory filesystem that a test can
// close and reopen, or crash (keep only what was synced) and reopen.
type testDB struct {
	t  testing.TB
	fs *vfs.MemFS
	DB *pebble.DB
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	d := &testDB{t: t, fs: vfs.NewCrashableMem()}
	d.open()
	t.Cleanup(func() {
		if d.DB != nil {
			if err := d.DB.Close(); err != nil {
				t.Errorf("close pebble: %v", err)
			}
		}
	})
	return d
}

func (d *testDB) open() {
	d.t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: d.fs, Logger: quietLogger{}})
	if err != nil {
		d.t.Fatalf("open pebble: %v", err)
	}
	d.DB = db
}

// reopen closes the database cleanly and opens it again.
func (d *testDB) reopen() {
	d.t.Helper()
	if err := d.DB.Close(); err != nil {
		d.t.Fatalf("close pebble: %v", err)
	}
	d.open()
}

// crash simulates a power cut: the database is reopened on a copy of the
// filesystem holding only what had been synced.
func (d *testDB) crash() {
	d.t.Helper()
	clone := d.fs.CrashClone(vfs.CrashCloneCfg{})
	if err := d.DB.Close(); err != nil {
		d.t.Fatalf("close pebble: %v", err)
	}
	d.fs = clone
	d.open()
}

// quietLogger drops pebble's informational chatter; fatal errors still stop
// the test binary as pebble intends.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(format string, a ...any) { fmt.Printf("pebble: "+format+"\n", a...) }
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf("pebble: "+format, a...)) }

func mustNew(t testing.TB, db *pebble.DB, group uint32, opts Options) *Stores {
	t.Helper()
	s, err := New(db, group, opts)
	if err != nil {
		t.Fatalf("New(group %d): %v", group, err)
	}
	return s
}

func mkLog(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "data-%d", index),
		Extensions: fmt.Appendf(nil, "ext-%d", index),
		AppendedAt: time.Unix(1_700_000_000+int64(index), int64(index)).UTC(),
	}
}

func mkLogs(from, to, term uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, mkLog(i, term))
	}
	return logs
}

func logsEqual(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

func checkBounds(t testing.TB, s raft.LogStore, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if f != first || l != last {
		t.Fatalf("bounds = [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

// checkPresent asserts exactly the listed indexes in [lo, hi] are readable
// and hold what mkLog(i, term) made.
func checkPresent(t testing.TB, s raft.LogStore, lo, hi, term uint64, present func(uint64) bool) {
	t.Helper()
	for i := lo; i <= hi; i++ {
		var got raft.Log
		err := s.GetLog(i, &got)
		if !present(i) {
			if err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(%d) = %v, want exactly raft.ErrLogNotFound", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if want := mkLog(i, term); !logsEqual(&got, want) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
		}
	}
}

func between(lo, hi uint64) func(uint64) bool {
	return func(i uint64) bool { return i >= lo && i <= hi }
}

// countKeys counts the keys in [lower, upper).
func countKeys(t testing.TB, db *pebble.DB, lower, upper []byte) int {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}
