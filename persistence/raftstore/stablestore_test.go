package raftstore

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

func TestStableStoreMissingKey(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{})

	v, err := s.Stable.Get([]byte("LastVoteCand"))
	if v != nil || err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) = %q, %v; want nil and exactly \"not found\"", v, err)
	}
	if !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Get(missing) error is not ErrKeyNotFound: %v", err)
	}
	n, err := s.Stable.GetUint64([]byte("CurrentTerm"))
	if n != 0 || err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) = %d, %v; want 0 and exactly \"not found\"", n, err)
	}

	// raft's own reading of the contract: a fresh group has no state...
	has, err := raft.HasExistingState(s.Log, s.Stable, s.Snapshots)
	if err != nil || has {
		t.Fatalf("HasExistingState(fresh) = %v, %v; want false, nil", has, err)
	}
	// ...and a group with a term does.
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	has, err = raft.HasExistingState(s.Log, s.Stable, s.Snapshots)
	if err != nil || !has {
		t.Fatalf("HasExistingState(term 1) = %v, %v; want true, nil", has, err)
	}
}

func TestStableStoreRoundTrip(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{})
	kv := map[string][]byte{
		"LastVoteCand":   []byte("server-a"),
		"":               []byte("empty key"),
		"empty value":    {},
		"binary\x00\xff": {0, 1, 2, 0xff},
	}
	for k, v := range kv {
		if err := s.Stable.Set([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	nums := map[string]uint64{"CurrentTerm": 42, "LastVoteTerm": math.MaxUint64, "zero": 0}
	for k, v := range nums {
		if err := s.Stable.SetUint64([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite wins.
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 43); err != nil {
		t.Fatal(err)
	}
	nums["CurrentTerm"] = 43

	check := func() {
		t.Helper()
		for k, want := range kv {
			got, err := s.Stable.Get([]byte(k))
			if err != nil || !bytes.Equal(got, want) || got == nil {
				t.Fatalf("Get(%q) = %q, %v; want %q (non-nil)", k, got, err, want)
			}
		}
		for k, want := range nums {
			got, err := s.Stable.GetUint64([]byte(k))
			if err != nil || got != want {
				t.Fatalf("GetUint64(%q) = %d, %v; want %d", k, got, err, want)
			}
		}
	}
	check()

	// Returned values are copies, not views into pebble or shared buffers.
	got, _ := s.Stable.Get([]byte("LastVoteCand"))
	got[0] = 'X'
	check()

	d.reopen()
	s = mustNew(t, d.DB, 1, Options{})
	check()
	d.crash() // Set is synced: a power cut keeps it.
	s = mustNew(t, d.DB, 1, Options{})
	check()
}

func TestStableStoreCorruption(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{})
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Stable.Set([]byte("short"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stable.GetUint64([]byte("short")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of a 3-byte value = %v, want ErrCorrupt", err)
	}
	key := stableKey(1, []byte("CurrentTerm"))
	v, closer, err := d.DB.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	v = append([]byte(nil), v...)
	_ = closer.Close()
	v[len(v)-1] ^= 1
	if err := d.DB.Set(key, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err = s.Stable.GetUint64([]byte("CurrentTerm"))
	if !errors.Is(err, ErrCorrupt) || err.Error() == "not found" {
		t.Fatalf("GetUint64 of a damaged value = %v, want ErrCorrupt", err)
	}
	// raft refuses to start on it rather than treating the term as unset.
	if _, err := raft.HasExistingState(s.Log, s.Stable, s.Snapshots); err == nil {
		t.Fatal("HasExistingState accepted a damaged current term")
	}
}
