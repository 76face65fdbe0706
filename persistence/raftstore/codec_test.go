package raftstore

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func encodeForTest(t testing.TB, l *raft.Log) []byte {
	t.Helper()
	v := make([]byte, encodedLogLen(l))
	if err := encodeLog(v, l); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLogCodecRoundTrip(t *testing.T) {
	cases := []*raft.Log{
		{},
		{Index: 1, Term: 1, Type: raft.LogNoop},
		mkLog(7, 2),
		{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogType(255),
			Data: make([]byte, 70000), Extensions: []byte{0},
			AppendedAt: time.Unix(math.MaxInt64/2, 999_999_999)},
		{Index: 3, AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}, // just past zero
		{Index: 4, AppendedAt: time.Unix(-1, 5)},                         // before 1970
	}
	for _, l := range cases {
		v := encodeForTest(t, l)
		var got raft.Log
		if err := decodeLog(v, &got); err != nil {
			t.Fatalf("decode(encode(%+v)): %v", l, err)
		}
		if !logsEqual(&got, l) {
			t.Fatalf("round trip of %+v gave %+v", l, got)
		}
	}
}

func TestLogCodecRejectsMalformedBodies(t *testing.T) {
	good := mkLog(5, 1)
	body := encodeForTest(t, good)[frameHeaderLen:]
	cases := map[string][]byte{
		"empty":          {},
		"truncated data": body[:len(body)-6],
		"trailing bytes": append(append([]byte(nil), body...), 0),
		"unknown flag":   {1, 1, 0, 0x02, 0, 0},
		"huge length":    {1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad nanos":      {1, 1, 0, 1, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0, 0}, // 1e9
		"varint overrun": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, b := range cases {
		var l raft.Log
		if err := decodeLog(frame(b), &l); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decode = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeLog feeds arbitrary bytes to the decoder, both raw (almost
// always stopped by the checksum) and as a correctly framed body (which
// reaches the field parser). It must never panic, and whatever it accepts
// must survive an encode/decode round trip unchanged. The seeds run as an
// ordinary test; `go test -fuzz FuzzDecodeLog ./persistence/raftstore/`
// explores further.
func FuzzDecodeLog(f *testing.F) {
	for _, l := range []*raft.Log{
		{}, mkLog(1, 1), {Index: 2, Term: 1, Type: raft.LogConfiguration, Data: []byte("cfg")},
		{Index: 9, AppendedAt: time.Unix(0, 1)},
	} {
		v := make([]byte, encodedLogLen(l))
		if err := encodeLog(v, l); err != nil {
			f.Fatal(err)
		}
		f.Add(v)
		f.Add(v[frameHeaderLen:])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range [][]byte{b, frame(b)} {
			var l raft.Log
			if err := decodeLog(v, &l); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("decode error does not wrap ErrCorrupt: %v", err)
				}
				continue
			}
			again := encodeForTest(t, &l)
			var l2 raft.Log
			if err := decodeLog(again, &l2); err != nil {
				t.Fatalf("re-decoding %+v: %v", l, err)
			}
			if !logsEqual(&l, &l2) {
				t.Fatalf("round trip changed %+v into %+v", l, l2)
			}
		}
	})
}
