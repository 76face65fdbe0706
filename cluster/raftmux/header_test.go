package raftmux

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, g := range []uint32{0, 1, 16, 1 << 31, ^uint32(0)} {
		b := appendHeader(nil, g)
		if len(b) != HeaderSize {
			t.Fatalf("header is %d bytes", len(b))
		}
		got, err := decodeHeader(b)
		if err != nil || got != g {
			t.Errorf("group %d: decoded %d, %v", g, got, err)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	good := appendHeader(nil, 5)
	if _, err := decodeHeader(good[:8]); err == nil {
		t.Error("short header decoded")
	}
	bad := bytes.Clone(good)
	bad[0] = 'X'
	if _, err := decodeHeader(bad); !errors.Is(err, ErrBadMagic) {
		t.Errorf("bad magic: %v", err)
	}
	bad = bytes.Clone(good)
	bad[4] = 2
	if g, err := decodeHeader(bad); !errors.Is(err, ErrBadVersion) || g != 5 {
		t.Errorf("bad version: %d, %v", g, err)
	}
}

// FuzzDecodeHeader: the decoder never panics, accepts exactly the headers
// appendHeader writes, and reads the same group back.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(appendHeader(nil, 0))
	f.Add(appendHeader(nil, 12345))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := decodeHeader(b)
		if err != nil {
			return
		}
		if want := appendHeader(nil, g); !bytes.Equal(b[:HeaderSize], want) {
			t.Fatalf("accepted %x, which re-encodes as %x", b[:HeaderSize], want)
		}
	})
}
