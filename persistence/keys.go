package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// formatVersion is written to a fresh store and must match on every Open.
// Bump it when the key layout or value framing changes incompatibly.
const formatVersion = "ward-store/1"

// Key families; see doc.go for the layout each one uses.
const (
	famVersion  byte = 'V'
	famEvent    byte = 'e'
	famSnapshot byte = 's'
	famTimer    byte = 't'
	famDue      byte = 'd'
	famReply    byte = 'r'
)

const (
	nsLen = 4
	// localNamespace is the node-local keyspace. All actor data lives here
	// until Raft partitions take ownership of namespaces 1..P.
	localNamespace uint32 = 0
	// maxNameLen bounds actor kinds, ids and timer names: keys carry them
	// verbatim, and unbounded keys would bloat every index block.
	maxNameLen = 4096
)

var errBadKey = errors.New("malformed key")

// versionKey is the single format-version key.
func versionKey() []byte {
	return familyPrefix(localNamespace, famVersion)
}

func familyPrefix(ns uint32, fam byte) []byte {
	k := make([]byte, 0, 64)
	k = binary.BigEndian.AppendUint32(k, ns)
	return append(k, fam)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendActor appends the prefix-free encoding of an actor key.
func appendActor(b []byte, a ActorKey) []byte {
	return appendStr(appendStr(b, a.Kind), a.ID)
}

// encodeActor returns the encoding appendActor produces, on its own.
func encodeActor(a ActorKey) []byte {
	return appendActor(make([]byte, 0, len(a.Kind)+len(a.ID)+4), a)
}

// eventPrefix is the common prefix of all of one actor's event keys.
func eventPrefix(ns uint32, actor []byte) []byte {
	return append(familyPrefix(ns, famEvent), actor...)
}

func eventKey(ns uint32, actor []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(eventPrefix(ns, actor), seq)
}

func snapshotKey(ns uint32, actor []byte) []byte {
	return append(familyPrefix(ns, famSnapshot), actor...)
}

// replyPrefix is the common prefix of all of one actor's reply keys.
func replyPrefix(ns uint32, actor []byte) []byte {
	return append(familyPrefix(ns, famReply), actor...)
}

// replyKey is the key of the actor's n-th stored reply (n counts from 1 over
// the actor's whole life, so key order is reply order).
func replyKey(ns uint32, actor []byte, n uint64) []byte {
	return binary.BigEndian.AppendUint64(replyPrefix(ns, actor), n)
}

func timerKey(ns uint32, actor []byte, name string) []byte {
	return appendStr(append(familyPrefix(ns, famTimer), actor...), name)
}

func dueKey(ns uint32, due int64, actor []byte, name string) []byte {
	return appendStr(append(dueBound(ns, due), actor...), name)
}

// dueBound is the prefix of every due-index key due exactly at due.
func dueBound(ns uint32, due int64) []byte {
	return binary.BigEndian.AppendUint64(familyPrefix(ns, famDue), dueBits(due))
}

// dueBits maps signed nanoseconds to unsigned bits with the same order.
func dueBits(n int64) uint64 { return uint64(n) ^ (1 << 63) }

func dueFromBits(u uint64) int64 { return int64(u ^ (1 << 63)) }

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil (no upper bound) when p is all 0xff.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// timeToNanos clamps t into the int64-nanosecond range (years 1678..2262)
// rather than letting UnixNano overflow into a wrong order.
func timeToNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func nanosToTime(n int64) time.Time { return time.Unix(0, n).UTC() }

// readStr decodes str(x) from b, returning x and the rest. It never panics
// on arbitrary input.
func readStr(b []byte) (string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return "", nil, fmt.Errorf("%w: bad length prefix", errBadKey)
	}
	b = b[w:]
	if n > uint64(len(b)) || n > maxNameLen {
		return "", nil, fmt.Errorf("%w: length %d exceeds %d remaining bytes", errBadKey, n, len(b))
	}
	return string(b[:n]), b[n:], nil
}

func readActor(b []byte) (ActorKey, []byte, error) {
	kind, rest, err := readStr(b)
	if err != nil {
		return ActorKey{}, nil, fmt.Errorf("actor kind: %w", err)
	}
	id, rest, err := readStr(rest)
	if err != nil {
		return ActorKey{}, nil, fmt.Errorf("actor id: %w", err)
	}
	return ActorKey{Kind: kind, ID: id}, rest, nil
}

func readFamily(k []byte, fam byte) (ns uint32, rest []byte, err error) {
	if len(k) < nsLen+1 {
		return 0, nil, fmt.Errorf("%w: %d bytes is shorter than a key header", errBadKey, len(k))
	}
	if k[nsLen] != fam {
		return 0, nil, fmt.Errorf("%w: family %q, want %q", errBadKey, k[nsLen], fam)
	}
	return binary.BigEndian.Uint32(k), k[nsLen+1:], nil
}

// decodeEventKey splits an event key into its parts.
func decodeEventKey(k []byte) (ns uint32, actor ActorKey, seq uint64, err error) {
	ns, rest, err := readFamily(k, famEvent)
	if err != nil {
		return 0, ActorKey{}, 0, err
	}
	actor, rest, err = readActor(rest)
	if err != nil {
		return 0, ActorKey{}, 0, err
	}
	if len(rest) != 8 {
		return 0, ActorKey{}, 0, fmt.Errorf("%w: event key has %d seq bytes, want 8", errBadKey, len(rest))
	}
	return ns, actor, binary.BigEndian.Uint64(rest), nil
}

// decodeDueKey splits a timer due-index key into its parts.
func decodeDueKey(k []byte) (ns uint32, due int64, actor ActorKey, name string, err error) {
	ns, rest, err := readFamily(k, famDue)
	if err != nil {
		return 0, 0, ActorKey{}, "", err
	}
	if len(rest) < 8 {
		return 0, 0, ActorKey{}, "", fmt.Errorf("%w: due-index key too short", errBadKey)
	}
	due = dueFromBits(binary.BigEndian.Uint64(rest))
	actor, rest, err = readActor(rest[8:])
	if err != nil {
		return 0, 0, ActorKey{}, "", err
	}
	name, rest, err = readStr(rest)
	if err != nil {
		return 0, 0, ActorKey{}, "", fmt.Errorf("timer name: %w", err)
	}
	if len(rest) != 0 {
		return 0, 0, ActorKey{}, "", fmt.Errorf("%w: %d trailing bytes in due-index key", errBadKey, len(rest))
	}
	return ns, due, actor, name, nil
}

func validName(what, s string, allowEmpty bool) error {
	if s == "" && !allowEmpty {
		return fmt.Errorf("%w: empty %s", ErrInvalidWrite, what)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidWrite, what, len(s), maxNameLen)
	}
	return nil
}

func validActor(a ActorKey) error {
	if err := validName("actor kind", a.Kind, false); err != nil {
		return err
	}
	return validName("actor id", a.ID, true)
}
