package raftstore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Defaults used for zero Options fields.
const (
	// DefaultLogCacheSize is the number of recent entries kept in memory in
	// front of the pebble log: followers being caught up and the FSM apply
	// loop read recent entries, which then cost no pebble lookup.
	DefaultLogCacheSize = 512
	// DefaultSnapshotRetain keeps one older snapshot to fall back on if the
	// newest cannot be opened.
	DefaultSnapshotRetain = 2
	// DefaultSnapshotChunkSize bounds each stored snapshot value, keeping
	// single pebble values (and the memory a sink buffers) modest.
	DefaultSnapshotChunkSize = 1 << 20
)

// Options tune New. The zero value gives the defaults above.
type Options struct {
	// LogCacheSize is the capacity of the raft.LogCache wrapped around the
	// log; 0 means DefaultLogCacheSize, negative means no cache.
	LogCacheSize int
	// SnapshotRetain is how many snapshots to keep; 0 means
	// DefaultSnapshotRetain.
	SnapshotRetain int
	// SnapshotChunkSize is the size of each stored snapshot data value;
	// 0 means DefaultSnapshotChunkSize.
	SnapshotChunkSize int
	// OnCorrupt, if set, is called (once per damaged read) with the error
	// of every log read that finds stored bytes failing their checksum or
	// decode. raft itself only logs some of those reads (a leader that
	// cannot read an entry to replicate just retries), so the owner needs
	// its own signal to fail loudly.
	OnCorrupt func(error)
}

// Stores holds one raft group's stores, ready for raft.NewRaft(conf, fsm,
// s.Log, s.Stable, s.Snapshots, transport).
type Stores struct {
	// Log is what raft should use: RawLog behind a raft.LogCache unless the
	// cache is disabled, in which case it is RawLog itself.
	Log raft.LogStore
	// RawLog is the pebble-backed log without the cache.
	RawLog    *LogStore
	Stable    *StableStore
	Snapshots *SnapshotStore
}

// New opens the stores of one raft group on db. Nothing is written unless
// a previous run left unfinished snapshot data to clean up.
func New(db *pebble.DB, group uint32, opts Options) (*Stores, error) {
	if db == nil {
		return nil, errors.New("raftstore: nil pebble database")
	}
	if opts.LogCacheSize == 0 {
		opts.LogCacheSize = DefaultLogCacheSize
	}
	if opts.SnapshotRetain == 0 {
		opts.SnapshotRetain = DefaultSnapshotRetain
	}
	if opts.SnapshotChunkSize == 0 {
		opts.SnapshotChunkSize = DefaultSnapshotChunkSize
	}

	raw, err := NewLogStore(db, group)
	if err != nil {
		return nil, err
	}
	raw.onCorrupt = opts.OnCorrupt
	var log raft.LogStore = raw
	if opts.LogCacheSize > 0 {
		if log, err = raft.NewLogCache(opts.LogCacheSize, raw); err != nil {
			return nil, fmt.Errorf("raftstore: group %d: log cache: %w", group, err)
		}
	}
	stable, err := NewStableStore(db, group)
	if err != nil {
		return nil, err
	}
	snaps, err := NewSnapshotStore(db, group, opts.SnapshotRetain, opts.SnapshotChunkSize)
	if err != nil {
		return nil, err
	}
	return &Stores{Log: log, RawLog: raw, Stable: stable, Snapshots: snaps}, nil
}

// DeleteGroup removes everything stored for a group (log, stable state,
// snapshots) in one synced range deletion, for when a replica leaves the
// node. The group's raft instance must be shut down and its Stores dropped
// first: their cached bounds would no longer match.
func DeleteGroup(db *pebble.DB, group uint32) error {
	if db == nil {
		return errors.New("raftstore: nil pebble database")
	}
	if err := db.DeleteRange(groupPrefix(group), groupEnd(group), pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: delete group %d: %w", group, err)
	}
	return nil
}
