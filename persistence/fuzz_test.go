package persistence

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/wardhq/ward/protocol"
)

// FuzzDecodeValue feeds arbitrary bytes to every value decoder: none may
// panic, and any failure of the framing must be reported as ErrCorrupt.
func FuzzDecodeValue(f *testing.F) {
	ev, _ := protocol.Marshal(ev(7))
	st, _ := protocol.Marshal(state("s"))
	f.Add(frame(ev))
	f.Add(snapshotValue(3, st))
	f.Add(timerValue(-1))
	f.Add(frame(nil))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(append(frame(ev)[:4], 0xff, 0x01))
	f.Fuzz(func(t *testing.T, v []byte) {
		if p, err := unframe(v, "value"); err == nil {
			// Bytes that pass the checksum still go through the protobuf
			// decoder, which must not panic either.
			_, _ = protocol.Unmarshal(p)
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("unframe error without ErrCorrupt: %v", err)
		}
		if _, _, err := decodeSnapshotValue(v, "snapshot"); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("snapshot error without ErrCorrupt: %v", err)
		}
		if _, err := decodeTimerValue(v, "timer"); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("timer error without ErrCorrupt: %v", err)
		}
		// Framing round-trips any payload.
		if p, err := unframe(frame(v), "value"); err != nil || !bytes.Equal(p, v) {
			t.Fatalf("frame round trip: %x, %v", p, err)
		}
	})
}

// FuzzDecodeKey feeds arbitrary bytes to the key decoders. Whatever they
// accept must re-encode to a key that decodes to the same parts.
func FuzzDecodeKey(f *testing.F) {
	a := encodeActor(ActorKey{Kind: "session", ID: "abc"})
	f.Add(eventKey(0, a, 1))
	f.Add(eventKey(7, a, 1<<63))
	f.Add(dueKey(0, -5, a, "expire"))
	f.Add(dueKey(0, 1<<62, encodeActor(ActorKey{Kind: "k"}), ""))
	f.Add([]byte{0, 0, 0, 0, 'e', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0, 0, 0, 0, 'd'})
	f.Fuzz(func(t *testing.T, k []byte) {
		if ns, actor, seq, err := decodeEventKey(k); err == nil {
			again := eventKey(ns, encodeActor(actor), seq)
			ns2, actor2, seq2, err := decodeEventKey(again)
			if err != nil || ns2 != ns || actor2 != actor || seq2 != seq {
				t.Fatalf("event key %x: re-decode gave %v %v %v %v", k, ns2, actor2, seq2, err)
			}
		}
		if ns, due, actor, name, err := decodeDueKey(k); err == nil {
			again := dueKey(ns, due, encodeActor(actor), name)
			ns2, due2, actor2, name2, err := decodeDueKey(again)
			if err != nil || ns2 != ns || due2 != due || actor2 != actor || name2 != name {
				t.Fatalf("due key %x: re-decode gave %v %v %v %q %v", k, ns2, due2, actor2, name2, err)
			}
		}
		_, _, _ = readActor(k)
	})
}

// FuzzActorEncodingIsPrefixFree checks the property the key layout relies
// on: distinct actors never have one encoding a prefix of the other's, and
// every encoding decodes back.
func FuzzActorEncodingIsPrefixFree(f *testing.F) {
	f.Add("a", "bc", "ab", "c")
	f.Add("a", "b", "a", "b\x00")
	f.Add("", "", "x", "")
	f.Add(strings.Repeat("k", 130), "", strings.Repeat("k", 129), "k")
	f.Fuzz(func(t *testing.T, k1, id1, k2, id2 string) {
		a, b := ActorKey{Kind: k1, ID: id1}, ActorKey{Kind: k2, ID: id2}
		ea, eb := encodeActor(a), encodeActor(b)
		for _, c := range []struct {
			k   ActorKey
			enc []byte
		}{{a, ea}, {b, eb}} {
			if len(c.k.Kind) > maxNameLen || len(c.k.ID) > maxNameLen {
				continue
			}
			got, rest, err := readActor(c.enc)
			if err != nil || got != c.k || len(rest) != 0 {
				t.Fatalf("decode(encode(%q)) = %q, rest %x, %v", c.k, got, rest, err)
			}
		}
		if a != b && (bytes.HasPrefix(ea, eb) || bytes.HasPrefix(eb, ea)) {
			t.Fatalf("encodings of %q (%x) and %q (%x) are prefix-related", a, ea, b, eb)
		}
	})
}
