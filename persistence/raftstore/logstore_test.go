package raftstore

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Every test runs against the raw store and against the LogCache-wrapped
// one raft is given, since the cache must not change what raft observes.
func forLogStores(t *testing.T, f func(t *testing.T, d *testDB, log func() raft.LogStore)) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"raw", -1}, {"cached", 16}} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDB(t)
			var s *Stores
			open := func() { s = mustNew(t, d.DB, 7, Options{LogCacheSize: tc.cache}) }
			open()
			f(t, d, func() raft.LogStore {
				// After a reopen the caller asks again and gets fresh stores.
				if s.RawLog.db != d.DB {
					open()
				}
				return s.Log
			})
		})
	}
}

func TestLogStoreEmpty(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		checkBounds(t, log(), 0, 0)
		var l raft.Log
		for _, i := range []uint64{0, 1, math.MaxUint64} {
			if err := log().GetLog(i, &l); err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(%d) on empty store = %v, want raft.ErrLogNotFound", i, err)
			}
		}
		if err := log().DeleteRange(1, 10); err != nil {
			t.Fatalf("DeleteRange on empty store: %v", err)
		}
		if err := log().StoreLogs(nil); err != nil {
			t.Fatalf("StoreLogs(nil): %v", err)
		}
		checkBounds(t, log(), 0, 0)
	})
}

func TestLogStoreStoreAndGet(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		full := mkLog(1, 3)
		full.Type = raft.LogConfiguration
		if err := log().StoreLog(full); err != nil {
			t.Fatal(err)
		}
		// Zero time, no data, no extensions: raft's own noop entries.
		bare := &raft.Log{Index: 2, Term: 3, Type: raft.LogNoop}
		if err := log().StoreLog(bare); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, log(), 1, 2)

		// raft reuses Log values; GetLog must overwrite every field.
		got := *mkLog(99, 99)
		if err := log().GetLog(1, &got); err != nil {
			t.Fatal(err)
		}
		if !logsEqual(&got, full) {
			t.Fatalf("GetLog(1) = %+v, want %+v", got, *full)
		}
		if err := log().GetLog(2, &got); err != nil {
			t.Fatal(err)
		}
		if !logsEqual(&got, bare) || got.Data != nil || got.Extensions != nil || !got.AppendedAt.IsZero() {
			t.Fatalf("GetLog(2) = %+v, want %+v", got, *bare)
		}

		if _, raw := log().(*LogStore); !raw {
			// raft.LogCache hands back the caller's own entries by design.
			return
		}
		// Data returned must not alias storage or the caller's input.
		full.Data[0] = 'X'
		if err := log().GetLog(1, &got); err != nil {
			t.Fatal(err)
		}
		if got.Data[0] != 'd' {
			t.Fatalf("stored entry changed with the caller's slice: %q", got.Data)
		}
		got.Data = append(got.Data, "more"...)
		var again raft.Log
		if err := log().GetLog(1, &again); err != nil {
			t.Fatal(err)
		}
		if string(again.Extensions) != "ext-1" {
			t.Fatalf("extensions = %q after appending to data", again.Extensions)
		}
	})
}

func TestLogStoreGaps(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		// raft.LogStore: "the logs stored may not be contiguous".
		logs := []*raft.Log{mkLog(3, 1), mkLog(4, 1), mkLog(9, 1)}
		if err := log().StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, log(), 3, 9)
		present := func(i uint64) bool { return i == 3 || i == 4 || i == 9 }
		checkPresent(t, log(), 0, 12, 1, present)
	})
}

func TestLogStoreStoreLogsBatch(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		if err := log().StoreLogs(mkLogs(1, 100, 1)); err != nil {
			t.Fatal(err)
		}
		if err := log().StoreLogs(mkLogs(101, 164, 2)[:0]); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, log(), 1, 100)
		checkPresent(t, log(), 0, 101, 1, between(1, 100))

		// A follower overwrites a conflicting suffix with a new term.
		if err := log().DeleteRange(51, 100); err != nil {
			t.Fatal(err)
		}
		if err := log().StoreLogs(mkLogs(51, 80, 2)); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, log(), 1, 80)
		checkPresent(t, log(), 1, 50, 1, between(1, 50))
		checkPresent(t, log(), 51, 81, 2, between(51, 80))
	})
}

func TestLogStoreDeleteRange(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		if err := log().StoreLogs(mkLogs(1, 20, 1)); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name        string
			min, max    uint64
			first, last uint64
			present     func(uint64) bool
		}{
			{"head (compaction)", 1, 5, 6, 20, between(6, 20)},
			{"head overlapping nothing below", 0, 7, 8, 20, between(8, 20)},
			{"tail (conflict)", 18, 20, 8, 17, between(8, 17)},
			{"tail beyond last", 16, math.MaxUint64, 8, 15, between(8, 15)},
			{"middle", 10, 11, 8, 15, func(i uint64) bool { return between(8, 15)(i) && i != 10 && i != 11 }},
			{"head through a hole", 8, 10, 12, 15, between(12, 15)},
			{"below first", 1, 3, 12, 15, between(12, 15)},
			{"above last", 30, 40, 12, 15, between(12, 15)},
			{"reversed is a no-op", 14, 13, 12, 15, between(12, 15)},
			{"everything", 0, math.MaxUint64, 0, 0, func(uint64) bool { return false }},
		}
		for _, st := range steps {
			if err := log().DeleteRange(st.min, st.max); err != nil {
				t.Fatalf("%s: DeleteRange(%d, %d): %v", st.name, st.min, st.max, err)
			}
			checkBounds(t, log(), st.first, st.last)
			checkPresent(t, log(), 0, 22, 1, st.present)
		}
		// Appending after the log emptied out restarts the bounds.
		if err := log().StoreLogs(mkLogs(21, 22, 1)); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, log(), 21, 22)
	})
}

func TestLogStoreRestart(t *testing.T) {
	forLogStores(t, func(t *testing.T, d *testDB, log func() raft.LogStore) {
		if err := log().StoreLogs(mkLogs(1, 50, 4)); err != nil {
			t.Fatal(err)
		}
		if err := log().DeleteRange(1, 10); err != nil { // head
			t.Fatal(err)
		}
		if err := log().DeleteRange(45, 50); err != nil { // tail
			t.Fatal(err)
		}
		d.reopen()
		checkBounds(t, log(), 11, 44)
		checkPresent(t, log(), 0, 51, 4, between(11, 44))

		// Every acknowledged write was synced: a power cut keeps it all.
		if err := log().StoreLog(mkLog(45, 4)); err != nil {
			t.Fatal(err)
		}
		if err := log().DeleteRange(11, 20); err != nil {
			t.Fatal(err)
		}
		d.crash()
		checkBounds(t, log(), 21, 45)
		checkPresent(t, log(), 0, 51, 4, between(21, 45))
	})
}

func TestGroupsIsolated(t *testing.T) {
	d := newTestDB(t)
	// The extreme group ids exercise the prefix arithmetic at both ends.
	groups := []uint32{0, 1, 2, math.MaxUint32}
	stores := map[uint32]*Stores{}
	for _, g := range groups {
		s := mustNew(t, d.DB, g, Options{})
		stores[g] = s
		if err := s.Log.StoreLogs(mkLogs(1, 10, uint64(g)+1)); err != nil {
			t.Fatal(err)
		}
		if err := s.Stable.SetUint64([]byte("CurrentTerm"), uint64(g)+1); err != nil {
			t.Fatal(err)
		}
		writeSnapshot(t, s.Snapshots, 10, uint64(g)+1, []byte("state"))
	}
	// Keys around ours that the main store or another user might hold.
	foreign := [][]byte{{0, 0, 0, 1, 'e', 1}, {0xEF, 0xFF}, {0xF1}, {0xF1, 0, 0, 0, 0}}
	for _, k := range foreign {
		if err := d.DB.Set(k, []byte("foreign"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}

	if err := stores[1].Log.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if err := DeleteGroup(d.DB, math.MaxUint32); err != nil {
		t.Fatal(err)
	}
	d.reopen()

	for _, g := range groups {
		s := mustNew(t, d.DB, g, Options{})
		term := uint64(g) + 1
		switch g {
		case 1:
			checkBounds(t, s.Log, 0, 0)
		case math.MaxUint32:
			checkBounds(t, s.Log, 0, 0)
			if _, err := s.Stable.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
				t.Fatalf("deleted group's stable key: err = %v", err)
			}
			if metas, err := s.Snapshots.List(); err != nil || len(metas) != 0 {
				t.Fatalf("deleted group's snapshots: %v, %v", metas, err)
			}
			continue
		default:
			checkBounds(t, s.Log, 1, 10)
			checkPresent(t, s.Log, 0, 11, term, between(1, 10))
		}
		if v, err := s.Stable.GetUint64([]byte("CurrentTerm")); err != nil || v != term {
			t.Fatalf("group %d CurrentTerm = %d, %v; want %d", g, v, err, term)
		}
		if metas, err := s.Snapshots.List(); err != nil || len(metas) != 1 || metas[0].Term != term {
			t.Fatalf("group %d snapshots = %v, %v", g, metas, err)
		}
	}
	for _, k := range foreign {
		v, closer, err := d.DB.Get(k)
		if err != nil {
			t.Fatalf("foreign key %x: %v", k, err)
		}
		if string(v) != "foreign" {
			t.Fatalf("foreign key %x = %q", k, v)
		}
		_ = closer.Close()
	}
}

func TestLogStoreCorruption(t *testing.T) {
	d := newTestDB(t)
	var reported []error
	s := mustNew(t, d.DB, 3, Options{LogCacheSize: -1, OnCorrupt: func(err error) { reported = append(reported, err) }})
	if err := s.Log.StoreLogs(mkLogs(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	get := func(i uint64) []byte {
		v, closer, err := d.DB.Get(logKey(3, i))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = closer.Close() }()
		return append([]byte(nil), v...)
	}
	put := func(i uint64, v []byte) {
		if err := d.DB.Set(logKey(3, i), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}

	flipped := get(2)
	flipped[len(flipped)-3] ^= 0x40 // a bit inside the data
	put(2, flipped)
	put(3, get(3)[:4]) // shorter than the frame header
	badVersion := get(4)
	badVersion[0] = 9
	put(4, badVersion)
	put(5, get(6)) // a valid value under the wrong key
	header := get(7)
	header[2] ^= 1 // the checksum itself
	put(7, header)

	for _, tc := range []struct {
		index uint64
		want  string
	}{
		{2, "checksum mismatch"},
		{3, "shorter than"},
		{4, "unknown encoding version 9"},
		{5, "holds index 6"},
		{7, "checksum mismatch"},
	} {
		var l raft.Log
		err := s.Log.GetLog(tc.index, &l)
		if err == nil || err == raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) of a damaged entry = %v, want a corruption error", tc.index, err)
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("GetLog(%d) = %q, want ErrCorrupt mentioning %q", tc.index, err, tc.want)
		}
		// The owner hears of every damaged read, with the same error.
		if len(reported) == 0 || reported[len(reported)-1].Error() != err.Error() {
			t.Fatalf("GetLog(%d): OnCorrupt got %v, want the read's error %q", tc.index, reported, err)
		}
	}
	// Undamaged neighbours still read, and a missing entry is not damage.
	checkPresent(t, s.Log, 8, 10, 1, between(8, 10))
	var l raft.Log
	if err := s.Log.GetLog(99, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(99) = %v, want ErrLogNotFound", err)
	}
	if len(reported) != 5 {
		t.Fatalf("OnCorrupt called %d times, want once per damaged read (5): %v", len(reported), reported)
	}

	// A stray key of the wrong length in the log family fails the open.
	if err := d.DB.Set(append(logKey(3, 11), 0), []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := New(d.DB, 3, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("New over a malformed log key = %v, want ErrCorrupt", err)
	}
}

// TestLogStoreConcurrent runs raft's access pattern under the race
// detector: an appender, a compactor and readers at once.
func TestLogStoreConcurrent(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{})
	const n = 400
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := uint64(1); i <= n; i += 8 {
			if err := s.Log.StoreLogs(mkLogs(i, i+7, 1)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			last, _ := s.Log.LastIndex()
			if last > 64 {
				if err := s.Log.DeleteRange(0, last-64); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				first, _ := s.Log.FirstIndex()
				last, _ := s.Log.LastIndex()
				if first > last {
					t.Errorf("first %d > last %d", first, last)
					return
				}
				var l raft.Log
				if err := s.Log.GetLog(last, &l); err != nil && err != raft.ErrLogNotFound {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	last, _ := s.Log.LastIndex()
	if last != n+(8-n%8)%8 {
		t.Fatalf("last = %d", last)
	}
}
