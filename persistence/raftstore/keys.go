package raftstore

import (
	"encoding/binary"
	"fmt"
	"math"
)

// keyPrefix is the leading byte of every key this package writes. The main
// store's keys begin with a 4-byte namespace that never gets this high.
const keyPrefix byte = 0xF0

// Sub-families; see doc.go for the layout of each.
const (
	famLog          byte = 'l'
	famStable       byte = 's'
	famSnapshotMeta byte = 'm'
	famSnapshotData byte = 'd'
)

const (
	groupPrefixLen  = 1 + 4
	familyPrefixLen = groupPrefixLen + 1
	logKeyLen       = familyPrefixLen + 8
	snapMetaKeyLen  = familyPrefixLen + 8
	snapDataKeyLen  = familyPrefixLen + 8 + 4
)

// groupPrefix returns the prefix shared by all of a group's keys.
func groupPrefix(group uint32) []byte {
	k := make([]byte, groupPrefixLen, logKeyLen)
	k[0] = keyPrefix
	binary.BigEndian.PutUint32(k[1:], group)
	return k
}

// groupEnd returns the exclusive upper bound of a group's keys.
func groupEnd(group uint32) []byte {
	if group == math.MaxUint32 {
		return []byte{keyPrefix + 1}
	}
	return groupPrefix(group + 1)
}

// familyPrefix returns the prefix of one sub-family of a group.
func familyPrefix(group uint32, fam byte) []byte {
	return append(groupPrefix(group), fam)
}

// familyBounds returns [lower, upper) covering exactly one sub-family. The
// upper bound is the next family byte, which is exclusive, so it never
// reaches into that family even when it is in use.
func familyBounds(group uint32, fam byte) (lower, upper []byte) {
	return familyPrefix(group, fam), familyPrefix(group, fam+1)
}

// putLogKey writes the key of a log entry into dst, which must be
// logKeyLen bytes long; taking the destination lets StoreLogs encode keys
// straight into batch memory.
func putLogKey(dst []byte, group uint32, index uint64) {
	dst[0] = keyPrefix
	binary.BigEndian.PutUint32(dst[1:5], group)
	dst[5] = famLog
	binary.BigEndian.PutUint64(dst[6:14], index)
}

func logKey(group uint32, index uint64) []byte {
	k := make([]byte, logKeyLen)
	putLogKey(k, group, index)
	return k
}

// parseLogKey returns the index of a key found inside the log family.
func parseLogKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen {
		return 0, fmt.Errorf("%w: log key %x has %d bytes, want %d", ErrCorrupt, k, len(k), logKeyLen)
	}
	return binary.BigEndian.Uint64(k[familyPrefixLen:]), nil
}

func stableKey(group uint32, key []byte) []byte {
	k := make([]byte, 0, familyPrefixLen+len(key))
	k = append(k, familyPrefix(group, famStable)...)
	return append(k, key...)
}

func snapMetaKey(group uint32, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(familyPrefix(group, famSnapshotMeta), seq)
}

func parseSnapMetaKey(k []byte) (uint64, error) {
	if len(k) != snapMetaKeyLen {
		return 0, fmt.Errorf("%w: snapshot meta key %x has %d bytes, want %d", ErrCorrupt, k, len(k), snapMetaKeyLen)
	}
	return binary.BigEndian.Uint64(k[familyPrefixLen:]), nil
}

func snapDataKey(group uint32, seq uint64, chunk uint32) []byte {
	k := binary.BigEndian.AppendUint64(familyPrefix(group, famSnapshotData), seq)
	return binary.BigEndian.AppendUint32(k, chunk)
}

// snapDataBounds returns [lower, upper) covering all chunks of one snapshot.
func snapDataBounds(group uint32, seq uint64) (lower, upper []byte) {
	if seq == math.MaxUint64 {
		// Only a damaged key can carry this seq; do not let seq+1 wrap.
		return snapDataKey(group, seq, 0), familyPrefix(group, famSnapshotData+1)
	}
	return snapDataKey(group, seq, 0), snapDataKey(group, seq+1, 0)
}

func parseSnapDataKey(k []byte) (seq uint64, chunk uint32, err error) {
	if len(k) != snapDataKeyLen {
		return 0, 0, fmt.Errorf("%w: snapshot data key %x has %d bytes, want %d", ErrCorrupt, k, len(k), snapDataKeyLen)
	}
	return binary.BigEndian.Uint64(k[familyPrefixLen:]), binary.BigEndian.Uint32(k[familyPrefixLen+8:]), nil
}
