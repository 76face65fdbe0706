package persistence

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const frameHeader = 4

// frame prepends the CRC32C of payload. Checksumming in our layer, on top of
// pebble's own block checksums, also catches damage that happens above the
// storage engine (a bad batch builder, a buggy migration, memory corruption
// before the write).
func frame(payload []byte) []byte {
	v := make([]byte, frameHeader, frameHeader+len(payload))
	binary.BigEndian.PutUint32(v, crc32.Checksum(payload, castagnoli))
	return append(v, payload...)
}

// unframe verifies and strips the checksum. The returned payload aliases v.
// what describes the key ("event user/42 seq 7") for the error message.
func unframe(v []byte, what string) ([]byte, error) {
	if len(v) < frameHeader {
		return nil, fmt.Errorf("persistence: %s: value is %d bytes, shorter than its checksum: %w", what, len(v), ErrCorrupt)
	}
	want := binary.BigEndian.Uint32(v)
	payload := v[frameHeader:]
	if got := crc32.Checksum(payload, castagnoli); got != want {
		return nil, fmt.Errorf("persistence: %s: checksum mismatch (stored %08x, computed %08x): %w", what, want, got, ErrCorrupt)
	}
	return payload, nil
}

// snapshotValue is the payload of a snapshot key: seq then state.
func snapshotValue(seq uint64, state []byte) []byte {
	p := make([]byte, 8, 8+len(state))
	binary.BigEndian.PutUint64(p, seq)
	return frame(append(p, state...))
}

func decodeSnapshotValue(v []byte, what string) (seq uint64, state []byte, err error) {
	p, err := unframe(v, what)
	if err != nil {
		return 0, nil, err
	}
	if len(p) < 8 {
		return 0, nil, fmt.Errorf("persistence: %s: snapshot payload is %d bytes, shorter than its seq: %w", what, len(p), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(p), p[8:], nil
}

// timerValue is the payload of a timer primary key: the due time, which
// locates the due-index entry to delete on replace or cancel.
func timerValue(due int64) []byte {
	return frame(binary.BigEndian.AppendUint64(nil, dueBits(due)))
}

func decodeTimerValue(v []byte, what string) (int64, error) {
	p, err := unframe(v, what)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("persistence: %s: timer payload is %d bytes, want 8: %w", what, len(p), ErrCorrupt)
	}
	return dueFromBits(binary.BigEndian.Uint64(p)), nil
}

// replyValue is the payload of a reply key: str(request id) then the
// response as protocol.Marshal bytes.
func replyValue(requestID, response []byte) []byte {
	p := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(requestID)+len(response)), uint64(len(requestID)))
	p = append(p, requestID...)
	return frame(append(p, response...))
}

func decodeReplyValue(v []byte, what string) (requestID string, response []byte, err error) {
	p, err := unframe(v, what)
	if err != nil {
		return "", nil, err
	}
	n, w := binary.Uvarint(p)
	if w <= 0 || n == 0 || n > MaxRequestIDLen || n > uint64(len(p)-w) {
		return "", nil, fmt.Errorf("persistence: %s: malformed request id: %w", what, ErrCorrupt)
	}
	return string(p[w : w+int(n)]), p[w+int(n):], nil
}
