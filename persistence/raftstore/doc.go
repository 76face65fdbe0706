// Package raftstore stores hashicorp/raft groups (the P partition groups and
// the meta group) on the node's single pebble database.
//
// The node's main store owns the *pebble.DB; this package receives it and a
// group id and touches only keys under that group's prefix, so every group's
// log, stable state and snapshots can be dropped with one range deletion
// (DeleteGroup) when a replica leaves the node.
//
// New returns the three stores raft.NewRaft needs for one group:
//
//   - LogStore (raft.LogStore): one key per entry; StoreLogs writes one batch
//     with one fsync; first and last index are cached in memory.
//   - StableStore (raft.StableStore): current term, vote and the like.
//   - SnapshotStore (raft.SnapshotStore): snapshots as chunked values, made
//     visible atomically and durably by the sink's Close.
//
// All writes that raft relies on for safety are committed with pebble.Sync
// before the call returns. This assumes the database runs with its WAL
// enabled (pebble's default); with the WAL disabled nothing here is durable.
//
// # Key layout
//
// Every key starts with the byte 0xF0 (the main store uses other leading
// bytes: its keys start with a 4-byte namespace that stays far below
// 0xF0000000), then the group id as a fixed-width big-endian uint32, then one
// sub-family byte. Integers are big-endian so that byte order is numeric
// order, which is what makes first/last index lookups single seeks.
//
//	family          key                                            value
//	--------------  ---------------------------------------------  -------------------------
//	log entry       F0 | group(4) | 'l' | index(8)                 frame(log entry, below)
//	stable          F0 | group(4) | 's' | key bytes                frame(value bytes)
//	snapshot meta   F0 | group(4) | 'm' | seq(8)                   frame(JSON snapshot record)
//	snapshot data   F0 | group(4) | 'd' | seq(8) | chunk(4)        frame(up to SnapshotChunkSize bytes)
//
// seq is a per-group snapshot sequence number, assigned at Create and never
// reused; a snapshot's data chunks are numbered 0, 1, 2, ... Data chunks
// without a meta record belong to a snapshot that was cancelled or never
// closed (a crash mid-snapshot); they are invisible and New deletes them.
//
// # Values
//
// Every value is framed as
//
//	version(1) = 1 | crc32c(body) (4 bytes, big-endian, Castagnoli) | body
//
// A short value, an unknown version or a checksum mismatch is reported as an
// error wrapping ErrCorrupt, never skipped: raft must stop loudly rather than
// replicate or apply damaged state.
//
// A log entry body (version 1) holds every raft.Log field:
//
//	uvarint index | uvarint term | type(1) | flags(1)
//	[ varint appendedAt unix seconds | uvarint nanoseconds ]   if flags&1
//	uvarint len(data) | data | uvarint len(extensions) | extensions
//
// The index is stored in the value as well as in the key so that a value
// written under the wrong key is detected. AppendedAt is optional because raft
// leaves it zero on entries it creates for itself and a zero time.Time has no
// Unix representation worth storing; it is read back in UTC.
//
// # Concurrency
//
// Each store is safe for concurrent use, as raft requires (replication
// goroutines read the log while the main loop appends and the snapshot
// goroutine truncates). At most one Stores value may exist per group and
// database at a time: the cached log bounds and the snapshot sequence live
// in memory.
package raftstore
