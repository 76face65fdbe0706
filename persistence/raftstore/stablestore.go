package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is returned by StableStore for a key never set. raft checks
// err.Error() == "not found" (NewRaft, HasExistingState, requestVote), so
// the text is part of the contract and must not be wrapped or reworded.
var ErrKeyNotFound = errors.New("not found")

// StableStore is a raft.StableStore for one group.
type StableStore struct {
	db    *pebble.DB
	group uint32
}

var _ raft.StableStore = (*StableStore)(nil)

// NewStableStore returns the stable store of one group.
func NewStableStore(db *pebble.DB, group uint32) (*StableStore, error) {
	if db == nil {
		return nil, errors.New("raftstore: nil pebble database")
	}
	return &StableStore{db: db, group: group}, nil
}

// Set stores val under key, synced: raft writes its term and vote here and
// must not forget them across a crash.
func (s *StableStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(s.group, key), frame(val), pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: group %d: set stable key %q: %w", s.group, key, err)
	}
	return nil
}

// Get returns the value stored under key. A key never set yields
// (nil, ErrKeyNotFound); a key set to an empty value yields a non-nil empty
// slice, so the two stay distinguishable.
func (s *StableStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(s.group, key))
	if err == pebble.ErrNotFound {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: group %d: get stable key %q: %w", s.group, key, err)
	}
	defer func() { _ = closer.Close() }() // Get's closer cannot fail.
	body, err := openFrame(v)
	if err != nil {
		return nil, fmt.Errorf("raftstore: group %d: stable key %q: %w", s.group, key, err)
	}
	return append(make([]byte, 0, len(body)), body...), nil
}

// SetUint64 stores val under key as 8 big-endian bytes, synced.
func (s *StableStore) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value stored by SetUint64; a key never set yields
// (0, ErrKeyNotFound).
func (s *StableStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: group %d: stable key %q: %w: uint64 value has %d bytes", s.group, key, ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
