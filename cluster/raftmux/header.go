package raftmux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Every connection to a mux starts with a 9-byte header from the dialer:
//
//	magic "WRMX" (4) | version (1) | group ID, big-endian uint32 (4)
//
// and the mux answers with one status byte before any Raft traffic. The magic
// makes a stray client (a port scanner, a misdirected HTTP request, an old
// node speaking plain Raft) fail fast and be logged as what it is; the version
// lets a future layout be refused clearly instead of misparsed; the answer
// lets the dialer report "unknown group" instead of an EOF on its first RPC.
const (
	HeaderSize = 9
	Version    = 1
)

var magic = [4]byte{'W', 'R', 'M', 'X'}

// Status bytes the mux answers a header with.
const (
	statusOK           byte = 0
	statusUnknownGroup byte = 1
	statusBadVersion   byte = 2
)

var (
	// ErrBadMagic: the connection does not speak this protocol.
	ErrBadMagic = errors.New("raftmux: bad magic")
	// ErrBadVersion: the peer speaks another version of the header.
	ErrBadVersion = errors.New("raftmux: unsupported header version")
	// ErrUnknownGroup: no transport is registered for the group.
	ErrUnknownGroup = errors.New("raftmux: unknown group")
)

func appendHeader(b []byte, group uint32) []byte {
	b = append(b, magic[:]...)
	b = append(b, Version)
	return binary.BigEndian.AppendUint32(b, group)
}

// decodeHeader parses a header. On ErrBadVersion the group is still returned
// (the layout after the version byte is not trusted, but logging it helps).
func decodeHeader(b []byte) (uint32, error) {
	if len(b) < HeaderSize {
		return 0, fmt.Errorf("raftmux: header is %d bytes, want %d", len(b), HeaderSize)
	}
	if [4]byte(b[:4]) != magic {
		return 0, fmt.Errorf("%w %q", ErrBadMagic, b[:4])
	}
	group := binary.BigEndian.Uint32(b[5:9])
	if b[4] != Version {
		return group, fmt.Errorf("%w %d (this node speaks %d)", ErrBadVersion, b[4], Version)
	}
	return group, nil
}
