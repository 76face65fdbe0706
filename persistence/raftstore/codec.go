package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"time"

	"github.com/hashicorp/raft"
)

// ErrCorrupt is wrapped by every error caused by stored bytes that fail
// their checksum or cannot be decoded. Callers test with errors.Is.
var ErrCorrupt = errors.New("corrupt raft store data")

const (
	// frameVersion1 is the only value framing written today. A reader that
	// meets another version refuses it instead of guessing.
	frameVersion1  byte = 1
	frameHeaderLen      = 1 + 4
)

// flagAppendedAt marks a log entry that carries an AppendedAt time.
const flagAppendedAt byte = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealFrame fills in the header of v, whose body starts at frameHeaderLen
// and is already written.
func sealFrame(v []byte) {
	v[0] = frameVersion1
	binary.BigEndian.PutUint32(v[1:frameHeaderLen], crc32.Checksum(v[frameHeaderLen:], castagnoli))
}

// frame returns a framed copy of body.
func frame(body []byte) []byte {
	v := make([]byte, frameHeaderLen+len(body))
	copy(v[frameHeaderLen:], body)
	sealFrame(v)
	return v
}

// openFrame checks the header of v and returns its body (aliasing v).
func openFrame(v []byte) ([]byte, error) {
	if len(v) < frameHeaderLen {
		return nil, fmt.Errorf("%w: value of %d bytes is shorter than its %d-byte header", ErrCorrupt, len(v), frameHeaderLen)
	}
	if v[0] != frameVersion1 {
		return nil, fmt.Errorf("%w: unknown encoding version %d", ErrCorrupt, v[0])
	}
	body := v[frameHeaderLen:]
	stored := binary.BigEndian.Uint32(v[1:frameHeaderLen])
	if computed := crc32.Checksum(body, castagnoli); computed != stored {
		return nil, fmt.Errorf("%w: checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, stored, computed)
	}
	return body, nil
}

func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

func varintLen(x int64) int {
	// Zig-zag, as binary.AppendVarint does.
	return uvarintLen(uint64(x<<1) ^ uint64(x>>63))
}

// encodedLogLen is the exact length encodeLog writes for l.
func encodedLogLen(l *raft.Log) int {
	n := frameHeaderLen + uvarintLen(l.Index) + uvarintLen(l.Term) + 1 + 1
	if !l.AppendedAt.IsZero() {
		n += varintLen(l.AppendedAt.Unix()) + uvarintLen(uint64(l.AppendedAt.Nanosecond()))
	}
	n += uvarintLen(uint64(len(l.Data))) + len(l.Data)
	n += uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
	return n
}

// encodeLog writes the framed encoding of l into dst, which must be exactly
// encodedLogLen(l) bytes: StoreLogs hands it batch memory, so a wrong length
// must fail rather than spill into a fresh allocation pebble never sees.
func encodeLog(dst []byte, l *raft.Log) error {
	b := dst[frameHeaderLen:frameHeaderLen:len(dst)]
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	b = append(b, byte(l.Type), flags)
	if flags&flagAppendedAt != 0 {
		b = binary.AppendVarint(b, l.AppendedAt.Unix())
		b = binary.AppendUvarint(b, uint64(l.AppendedAt.Nanosecond()))
	}
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	b = append(b, l.Extensions...)
	if frameHeaderLen+len(b) != len(dst) || (len(b) > 0 && &b[0] != &dst[frameHeaderLen]) {
		return fmt.Errorf("raftstore: internal error: log %d encoded to %d bytes, sized %d", l.Index, frameHeaderLen+len(b), len(dst))
	}
	sealFrame(dst)
	return nil
}

// decodeLog decodes a framed log entry into l, overwriting every field
// (raft reuses Log values). Data and Extensions are copied out of v, which
// pebble only lends until the read is closed.
func decodeLog(v []byte, l *raft.Log) error {
	body, err := openFrame(v)
	if err != nil {
		return err
	}
	return decodeLogBody(body, l)
}

// logReader walks a log entry body; the first error sticks so the decoder
// reads straight through and checks once per field group.
type logReader struct {
	b   []byte
	err error
}

func (r *logReader) fail(field string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: log entry truncated or malformed at %s", ErrCorrupt, field)
	}
}

func (r *logReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(field)
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *logReader) varint(field string) int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(field)
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *logReader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail(field)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes reads a length-prefixed field. Both names are passed in, not built
// by concatenation, because this runs on every GetLog.
func (r *logReader) bytes(lenField, field string) []byte {
	n := r.uvarint(lenField)
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(field)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func decodeLogBody(body []byte, l *raft.Log) error {
	r := logReader{b: body}
	index := r.uvarint("index")
	term := r.uvarint("term")
	typ := r.byte("type")
	flags := r.byte("flags")
	var appendedAt time.Time
	if flags&flagAppendedAt != 0 {
		sec := r.varint("appendedAt seconds")
		nsec := r.uvarint("appendedAt nanoseconds")
		if r.err == nil && nsec >= uint64(time.Second) {
			return fmt.Errorf("%w: log entry appendedAt nanoseconds %d out of range", ErrCorrupt, nsec)
		}
		appendedAt = time.Unix(sec, int64(nsec)).UTC()
	}
	data := r.bytes("data length", "data")
	ext := r.bytes("extensions length", "extensions")
	if r.err != nil {
		return r.err
	}
	if flags&^flagAppendedAt != 0 {
		return fmt.Errorf("%w: log entry has unknown flags %#02x", ErrCorrupt, flags)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: log entry has %d trailing bytes", ErrCorrupt, len(r.b))
	}
	// One allocation for both byte fields; the three-index slice keeps an
	// append to Data from overwriting Extensions.
	var buf []byte
	if n := len(data) + len(ext); n > 0 {
		buf = make([]byte, n)
		copy(buf, data)
		copy(buf[len(data):], ext)
	}
	*l = raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogType(typ),
		AppendedAt: appendedAt,
	}
	if len(data) > 0 {
		l.Data = buf[:len(data):len(data)]
	}
	if len(ext) > 0 {
		l.Extensions = buf[len(data):]
	}
	return nil
}
