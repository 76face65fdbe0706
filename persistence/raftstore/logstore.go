package raftstore

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// batchRecordOverhead bounds pebble's per-record framing in a batch (kind
// byte and two uvarint lengths); it only sizes the batch buffer up front.
const batchRecordOverhead = 1 + 2*binaryMaxVarintLen32

const binaryMaxVarintLen32 = 5

// LogStore is a raft.LogStore for one group, one pebble key per entry.
type LogStore struct {
	db           *pebble.DB
	group        uint32
	lower, upper []byte // bounds of this group's log family

	// mu serialises writers so that the cached bounds always describe the
	// committed state in commit order. Readers never take it.
	mu sync.Mutex
	// first and last are the smallest and largest stored index, 0 when the
	// log is empty. They are loaded on open and maintained by every write,
	// because raft asks for them on every append and heartbeat.
	first, last atomic.Uint64

	onCorrupt func(error) // see Options.OnCorrupt; set before use
}

var _ raft.LogStore = (*LogStore)(nil)

// NewLogStore opens the log of one group, reading its first and last index.
func NewLogStore(db *pebble.DB, group uint32) (*LogStore, error) {
	if db == nil {
		return nil, errors.New("raftstore: nil pebble database")
	}
	s := &LogStore{db: db, group: group}
	s.lower, s.upper = familyBounds(group, famLog)
	first, last, err := s.scanBounds(s.lower, s.upper)
	if err != nil {
		return nil, err
	}
	s.first.Store(first)
	s.last.Store(last)
	return s, nil
}

// scanBounds returns the first index at or after from and the last index
// before to (both keys inside the log family), 0 where there is none.
func (s *LogStore) scanBounds(from, to []byte) (first, last uint64, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: s.lower, UpperBound: s.upper})
	if err != nil {
		return 0, 0, fmt.Errorf("raftstore: group %d: open log iterator: %w", s.group, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("raftstore: group %d: close log iterator: %w", s.group, cerr)
		}
	}()
	if it.SeekGE(from) {
		if first, err = parseLogKey(it.Key()); err != nil {
			return 0, 0, fmt.Errorf("raftstore: group %d: %w", s.group, err)
		}
	}
	if it.SeekLT(to) {
		if last, err = parseLogKey(it.Key()); err != nil {
			return 0, 0, fmt.Errorf("raftstore: group %d: %w", s.group, err)
		}
	}
	if err := it.Error(); err != nil {
		return 0, 0, fmt.Errorf("raftstore: group %d: scan log bounds: %w", s.group, err)
	}
	return first, last, nil
}

// FirstIndex returns the first index written, 0 for an empty log.
func (s *LogStore) FirstIndex() (uint64, error) { return s.first.Load(), nil }

// LastIndex returns the last index written, 0 for an empty log.
func (s *LogStore) LastIndex() (uint64, error) { return s.last.Load(), nil }

// GetLog reads the entry at index into log. A missing entry is exactly
// raft.ErrLogNotFound, which raft compares with ==; a damaged one is an error
// wrapping ErrCorrupt, so raft fails loudly instead of treating it as a gap.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	var kb [logKeyLen]byte
	putLogKey(kb[:], s.group, index)
	v, closer, err := s.db.Get(kb[:])
	if err == pebble.ErrNotFound {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: group %d: read log index %d: %w", s.group, index, err)
	}
	err = decodeLog(v, log)
	_ = closer.Close() // decodeLog copied what it keeps; Get's closer cannot fail.
	if err != nil {
		return s.corrupt(fmt.Errorf("raftstore: group %d: log index %d: %w", s.group, index, err))
	}
	if log.Index != index {
		return s.corrupt(fmt.Errorf("raftstore: group %d: log index %d: %w: value holds index %d", s.group, index, ErrCorrupt, log.Index))
	}
	return nil
}

// corrupt reports err to the owner when it is damage (not, say, a closed
// database) and returns it.
func (s *LogStore) corrupt(err error) error {
	if s.onCorrupt != nil && errors.Is(err, ErrCorrupt) {
		s.onCorrupt(err)
	}
	return err
}

// StoreLog stores one entry, synced.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one pebble batch committed with one fsync.
// Each entry is encoded straight into the batch's buffer, so the only
// allocation is the batch buffer itself (pooled by pebble).
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	size := 0
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		size += batchRecordOverhead + logKeyLen + encodedLogLen(l)
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}
	b := s.db.NewBatchWithSize(size + 32) // 32 covers pebble's batch header.
	defer func() { _ = b.Close() }()      // Close only recycles the batch.
	for _, l := range logs {
		op := b.SetDeferred(logKeyLen, encodedLogLen(l))
		putLogKey(op.Key, s.group, l.Index)
		if err := encodeLog(op.Value, l); err != nil {
			return fmt.Errorf("raftstore: group %d: %w", s.group, err)
		}
		if err := op.Finish(); err != nil {
			return fmt.Errorf("raftstore: group %d: stage log index %d: %w", s.group, l.Index, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: group %d: store logs %d..%d: %w", s.group, lo, hi, err)
	}
	// Gaps are allowed (raft.LogStore says so), so min/max rather than
	// assuming the batch extends the log contiguously.
	if first := s.first.Load(); first == 0 || lo < first {
		s.first.Store(lo)
	}
	if hi > s.last.Load() {
		s.last.Store(hi)
	}
	return nil
}

// DeleteRange deletes entries lo through hi, inclusive, synced. raft uses
// it both to compact the head after a snapshot and to cut a conflicting
// tail on a follower.
func (s *LogStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	start := logKey(s.group, lo)
	end := s.upper // pebble's end is exclusive; hi+1 would wrap at MaxUint64.
	if hi < math.MaxUint64 {
		end = logKey(s.group, hi+1)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.DeleteRange(start, end, pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: group %d: delete logs %d..%d: %w", s.group, lo, hi, err)
	}
	first, last := s.first.Load(), s.last.Load()
	switch {
	case first == 0 || hi < first || lo > last:
		// Nothing stored was in range: the bounds stand.
	case lo <= first && hi >= last:
		s.first.Store(0)
		s.last.Store(0)
	case lo <= first || hi >= last:
		// A head or tail cut: seek for the survivors rather than assume the
		// log is contiguous. Each seek starts at the edge of the deleted
		// range (or at the surviving bound) so it does not wade through
		// earlier truncations' tombstones.
		from := logKey(s.group, first)
		if lo <= first {
			from = end
		}
		to := s.upper
		if hi >= last {
			to = start
		} else if last < math.MaxUint64 {
			to = logKey(s.group, last+1)
		}
		newFirst, newLast, err := s.scanBounds(from, to)
		if err != nil {
			// The delete is durable but the cache may now be stale, and
			// raft would act on wrong bounds: report it.
			return err
		}
		s.first.Store(newFirst)
		s.last.Store(newLast)
	default:
		// A cut strictly inside the log leaves both bounds in place.
	}
	return nil
}
