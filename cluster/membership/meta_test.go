package membership

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func sampleMeta() Meta {
	return Meta{
		NodeName:   "ward-1",
		RemoteHost: "10.0.0.1",
		RemotePort: 8090,
		HTTPAddr:   "10.0.0.1:8080",
		QUICAddr:   "10.0.0.1:8443",
		RaftAddr:   "10.0.0.1:7000",
		Version:    "v0.3.1",
		Kinds:      []string{"account", "prototopic", "session", "vitals"},

		Incarnation: "5f0c1d7e9a2b4c6d",
		Partitions:  16,
		MasterKeyID: "0123456789abcdef",
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{{}, sampleMeta(), {Client: true, RemotePort: 65535, Kinds: []string{""}}} {
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if len(m.Kinds) == 0 {
			m.Kinds = nil
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
	b, _ := func() ([]byte, error) { m := sampleMeta(); return m.Encode() }()
	t.Logf("typical metadata: %d bytes of %d", len(b), MetaMaxSize)
}

func TestMetaDecodeRejectsDamage(t *testing.T) {
	m := sampleMeta()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Metadata of a node from before the appended fields ends after the
	// kinds and decodes with those fields zero; every other strict prefix is
	// truncated somewhere.
	old := m
	old.Incarnation, old.Partitions, old.MasterKeyID = "", 0, ""
	legacy, _ := old.Encode()
	legacy = legacy[:len(legacy)-3] // "", 0 and "": one byte each
	// Metadata from before MasterKeyID ends after Partitions.
	noKey := m
	noKey.MasterKeyID = ""
	beforeKey, _ := noKey.Encode()
	beforeKey = beforeKey[:len(beforeKey)-1]
	for i := range len(b) {
		got, err := DecodeMeta(b[:i])
		if i == len(legacy) {
			if err != nil || !reflect.DeepEqual(got, old) {
				t.Errorf("legacy metadata: %v %+v", err, got)
			}
			continue
		}
		if i == len(beforeKey) {
			if err != nil || !reflect.DeepEqual(got, noKey) {
				t.Errorf("metadata without a master key id: %v %+v", err, got)
			}
			continue
		}
		if err == nil {
			t.Errorf("prefix of %d/%d bytes decoded", i, len(b))
		}
	}
	// Appended bytes are a newer version's fields: ignored.
	if got, err := DecodeMeta(append(b, 0xff, 0x01)); err != nil || got.RaftAddr != m.RaftAddr {
		t.Errorf("with trailing bytes: %v %+v", err, got)
	}
	bad := append([]byte{}, b...)
	bad[0] = 2
	if _, err := DecodeMeta(bad); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v", err)
	}
}

func TestMetaEncodeLimits(t *testing.T) {
	m := Meta{Kinds: []string{strings.Repeat("k", MetaMaxSize)}}
	if _, err := m.Encode(); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	m = Meta{RemotePort: 70000}
	if _, err := m.Encode(); err == nil {
		t.Error("port 70000 encoded")
	}
	// The limit leaves room for a realistic node with many kinds.
	m = sampleMeta()
	for len(m.Kinds) < 24 {
		m.Kinds = append(m.Kinds, "some-kind-name")
	}
	if _, err := m.Encode(); err != nil {
		t.Errorf("24 kinds: %v", err)
	}
}

// FuzzDecodeMeta: decoding never panics, and whatever decodes re-encodes to
// something that decodes to the same value.
func FuzzDecodeMeta(f *testing.F) {
	m := sampleMeta()
	b, _ := m.Encode()
	f.Add(b)
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		again, err := m.Encode()
		if err != nil {
			if errors.Is(err, ErrMetaTooLarge) {
				return // decoding accepts more than 512 bytes; gossip never carries it
			}
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, err := DecodeMeta(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode: %v\n%+v\n%+v", err, m, m2)
		}
	})
}
