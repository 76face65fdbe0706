package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

var testConfiguration = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "a", Address: "addr-a"},
	{Suffrage: raft.Nonvoter, ID: "b", Address: "addr-b"},
}}

// writeSnapshot creates, fills and closes a snapshot, returning its id.
func writeSnapshot(t testing.TB, s *SnapshotStore, index, term uint64, data []byte) string {
	t.Helper()
	sink, err := s.Create(1, index, term, testConfiguration, index-1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes cross chunk boundaries at every offset.
	for p := data; len(p) > 0; {
		n := min(len(p), 333)
		if _, err := sink.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func readSnapshot(t testing.TB, s *SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer func() {
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return meta, data
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func listIDs(t testing.TB, s *SnapshotStore) []string {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, m := range metas {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestSnapshotStoreCreateListOpen(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{SnapshotRetain: 5, SnapshotChunkSize: 1000})
	if ids := listIDs(t, s.Snapshots); len(ids) != 0 {
		t.Fatalf("fresh List = %v", ids)
	}

	_, trans := raft.NewInmemTransport("addr-a")
	sink, err := s.Snapshots.Create(1, 100, 3, testConfiguration, 90, trans)
	if err != nil {
		t.Fatal(err)
	}
	data := payload(4321, 1) // 4 full chunks and a partial one
	if _, err := sink.Write(data); err != nil {
		t.Fatal(err)
	}
	// Not visible until closed.
	if ids := listIDs(t, s.Snapshots); len(ids) != 0 {
		t.Fatalf("List before Close = %v", ids)
	}
	if _, _, err := s.Snapshots.Open(sink.ID()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("Open before Close = %v, want ErrSnapshotNotFound", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := sink.Write([]byte("late")); err == nil {
		t.Fatal("Write after Close succeeded")
	}

	meta, got := readSnapshot(t, s.Snapshots, sink.ID())
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(data))
	}
	want := raft.SnapshotMeta{
		Version: 1, ID: sink.ID(), Index: 100, Term: 3,
		Configuration: testConfiguration, ConfigurationIndex: 90, Size: int64(len(data)),
	}
	peers := meta.Peers
	meta.Peers = nil
	if !reflect.DeepEqual(*meta, want) {
		t.Fatalf("meta = %+v, want %+v", *meta, want)
	}
	if len(peers) == 0 {
		t.Fatal("Peers not filled in although a transport was given")
	}
	// Same bytes as raft's in-memory store writes for the same input.
	ref := raft.NewInmemSnapshotStore()
	refSink, _ := ref.Create(1, 100, 3, testConfiguration, 90, trans)
	_ = refSink.Close()
	refMetas, _ := ref.List()
	if !bytes.Equal(peers, refMetas[0].Peers) {
		t.Fatalf("Peers = %x, raft's own store writes %x", peers, refMetas[0].Peers)
	}

	// An empty snapshot is legal and reads back empty.
	empty := writeSnapshot(t, s.Snapshots, 101, 3, nil)
	if _, got := readSnapshot(t, s.Snapshots, empty); len(got) != 0 {
		t.Fatalf("empty snapshot read %d bytes", len(got))
	}

	// Newest first: by term, then index, then creation.
	a := writeSnapshot(t, s.Snapshots, 50, 4, []byte("a"))  // higher term beats higher index
	b := writeSnapshot(t, s.Snapshots, 50, 4, []byte("b"))  // same term and index: later first
	c := writeSnapshot(t, s.Snapshots, 500, 2, []byte("c")) // older term
	ids := listIDs(t, s.Snapshots)
	wantIDs := []string{b, a, empty, sink.ID(), c}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Fatalf("List = %v, want %v", ids, wantIDs)
	}

	for _, bad := range []string{"", "nope", "3-100-999", "3-100-x", strings.Replace(a, "4-", "5-", 1)} {
		if _, _, err := s.Snapshots.Open(bad); !errors.Is(err, ErrSnapshotNotFound) {
			t.Fatalf("Open(%q) = %v, want ErrSnapshotNotFound", bad, err)
		}
	}
	if _, err := s.Snapshots.Create(0, 1, 1, testConfiguration, 1, nil); err == nil {
		t.Fatal("Create accepted snapshot version 0")
	}
}

func TestSnapshotStoreRetain(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{SnapshotRetain: 2, SnapshotChunkSize: 64})
	var ids []string
	for i := uint64(1); i <= 5; i++ {
		ids = append(ids, writeSnapshot(t, s.Snapshots, i*10, 1, payload(200, byte(i))))
	}
	if got, want := listIDs(t, s.Snapshots), []string{ids[4], ids[3]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	// Reaped snapshots leave nothing behind: 2 metas, 2 × 4 chunks.
	lo, hi := familyBounds(1, famSnapshotMeta)
	if n := countKeys(t, d.DB, lo, hi); n != 2 {
		t.Fatalf("%d meta keys, want 2", n)
	}
	lo, hi = familyBounds(1, famSnapshotData)
	if n := countKeys(t, d.DB, lo, hi); n != 8 {
		t.Fatalf("%d data keys, want 8", n)
	}
	if _, _, err := s.Snapshots.Open(ids[0]); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("Open(reaped) = %v", err)
	}

	// A reader keeps its point-in-time view while its snapshot is reaped,
	// as a follower being sent a snapshot needs.
	_, rc, err := s.Snapshots.Open(ids[3])
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 10)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	writeSnapshot(t, s.Snapshots, 60, 1, payload(200, 6))
	writeSnapshot(t, s.Snapshots, 70, 1, payload(200, 7))
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading a reaped snapshot: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := append(first, rest...); !bytes.Equal(got, payload(200, 4)) {
		t.Fatal("reaped snapshot read back different bytes")
	}

	// A snapshot older than all retained ones is reaped at once.
	old := writeSnapshot(t, s.Snapshots, 5, 1, []byte("old"))
	if ids := listIDs(t, s.Snapshots); len(ids) != 2 || ids[1] == old {
		t.Fatalf("List = %v, old snapshot %s retained", ids, old)
	}
}

func TestSnapshotStoreCancel(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{SnapshotChunkSize: 16})
	kept := writeSnapshot(t, s.Snapshots, 10, 1, []byte("kept"))
	sink, err := s.Snapshots.Create(1, 20, 1, testConfiguration, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(payload(100, 0)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close after Cancel: %v", err)
	}
	if ids := listIDs(t, s.Snapshots); !reflect.DeepEqual(ids, []string{kept}) {
		t.Fatalf("List = %v, want only %s", ids, kept)
	}
	lo, hi := familyBounds(1, famSnapshotData)
	if n := countKeys(t, d.DB, lo, hi); n != 1 {
		t.Fatalf("%d data keys after cancel, want 1", n)
	}
}

func TestSnapshotStoreRestart(t *testing.T) {
	d := newTestDB(t)
	opts := Options{SnapshotRetain: 3, SnapshotChunkSize: 100}
	s := mustNew(t, d.DB, 1, opts)
	a := writeSnapshot(t, s.Snapshots, 10, 1, payload(250, 1))
	b := writeSnapshot(t, s.Snapshots, 20, 1, payload(250, 2))
	// A snapshot in progress at the crash: chunks written, never closed.
	sink, err := s.Snapshots.Create(1, 30, 1, testConfiguration, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(payload(250, 3)); err != nil {
		t.Fatal(err)
	}

	check := func() {
		t.Helper()
		s = mustNew(t, d.DB, 1, opts)
		if ids := listIDs(t, s.Snapshots); !reflect.DeepEqual(ids, []string{b, a}) {
			t.Fatalf("List after restart = %v, want [%s %s]", ids, b, a)
		}
		for i, id := range []string{a, b} {
			if _, got := readSnapshot(t, s.Snapshots, id); !bytes.Equal(got, payload(250, byte(i+1))) {
				t.Fatalf("%s read back different bytes", id)
			}
		}
		// The unfinished snapshot's chunks are gone: 2 × 3 remain.
		lo, hi := familyBounds(1, famSnapshotData)
		if n := countKeys(t, d.DB, lo, hi); n != 6 {
			t.Fatalf("%d data keys after restart, want 6", n)
		}
	}
	// A clean close keeps the orphaned chunks for New to find and delete,
	// and their sequence number is not handed out again.
	d.reopen()
	check()
	probe, err := s.Snapshots.Create(1, 30, 1, testConfiguration, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	if probe.ID() == sink.ID() {
		t.Fatalf("id %s of the unfinished snapshot reused", probe.ID())
	}
	if err := probe.Cancel(); err != nil {
		t.Fatal(err)
	}
	// Close is synced: a power cut keeps both snapshots. (The unfinished
	// one's chunks were never synced; whether they come back depends on
	// what else was synced, and New copes either way.)
	d.crash()
	check()

	// New ids never collide with those of retained snapshots.
	c := writeSnapshot(t, s.Snapshots, 30, 1, payload(10, 9))
	if c == a || c == b {
		t.Fatalf("id %s reused", c)
	}
	if ids := listIDs(t, s.Snapshots); !reflect.DeepEqual(ids, []string{c, b, a}) {
		t.Fatalf("List = %v", ids)
	}
}

func TestSnapshotStoreCorruption(t *testing.T) {
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{SnapshotRetain: 5, SnapshotChunkSize: 100})
	ids := []string{
		writeSnapshot(t, s.Snapshots, 10, 1, payload(250, 1)),
		writeSnapshot(t, s.Snapshots, 20, 1, payload(250, 2)),
		writeSnapshot(t, s.Snapshots, 30, 1, payload(250, 3)),
	}
	seq := func(id string) uint64 { n, _ := parseSnapshotID(id); return n }

	// Snapshot 0: a flipped byte inside chunk 1.
	key := snapDataKey(1, seq(ids[0]), 1)
	v, closer, err := d.DB.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	v = append([]byte(nil), v...)
	_ = closer.Close()
	v[50] ^= 1
	if err := d.DB.Set(key, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	// Snapshot 1: its last chunk lost.
	if err := d.DB.Delete(snapDataKey(1, seq(ids[1]), 2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	// Snapshot 2: its middle chunk lost.
	if err := d.DB.Delete(snapDataKey(1, seq(ids[2]), 1), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"checksum mismatch", "data ends after 2 chunks", "found chunk 2 where chunk 1 belongs"} {
		_, rc, err := s.Snapshots.Open(ids[i])
		if rc != nil {
			_ = rc.Close()
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open(%s) = %v, want ErrCorrupt mentioning %q", ids[i], err, want)
		}
	}

	// Damaged meta fails List loudly rather than hiding a snapshot.
	if err := d.DB.Set(snapMetaKey(1, seq(ids[2])), frame([]byte("{not json")), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.List(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List over damaged meta = %v, want ErrCorrupt", err)
	}
	if _, err := New(d.DB, 1, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("New over damaged meta = %v, want ErrCorrupt", err)
	}
}

func TestSnapshotSinkWriteSizes(t *testing.T) {
	// Sizes around the chunk size catch off-by-one chunking.
	d := newTestDB(t)
	s := mustNew(t, d.DB, 1, Options{SnapshotRetain: 1, SnapshotChunkSize: 64})
	for _, n := range []int{1, 63, 64, 65, 128, 129, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := payload(n, byte(n))
			id := writeSnapshot(t, s.Snapshots, uint64(n), 1, data)
			meta, got := readSnapshot(t, s.Snapshots, id)
			if !bytes.Equal(got, data) || meta.Size != int64(n) {
				t.Fatalf("size %d: read %d bytes, meta.Size %d", n, len(got), meta.Size)
			}
		})
	}
}
