package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node advertises about itself through gossip (memberlist's
// node metadata). The actor system ID is not in it: it is the memberlist node
// name, Member.ID.
type Meta struct {
	NodeName   string
	RemoteHost string // protoactor remoting
	RemotePort int
	HTTPAddr   string
	QUICAddr   string
	RaftAddr   string
	Version    string
	Kinds      []string
	// Client marks a protoactor cluster client: it gossips to learn the
	// topology but hosts nothing, so it is left out of protoactor's member set.
	Client bool
	// Incarnation identifies the node's data directory: it changes when a
	// node comes back with empty storage under an old name, which must not
	// be mistaken for the node that held the old replicas.
	Incarnation string
	// Partitions is P as this node was started with; a node whose P differs
	// from the cluster's is refused.
	Partitions int
	// MasterKeyID names the master key the node seals secrets with (see
	// package seal), "" without one: the cluster seals its secrets only
	// once every member holds the same key.
	MasterKeyID string
}

// MetaMaxSize is memberlist's limit on node metadata.
const MetaMaxSize = memberlist.MetaMaxSize

// Encoding, version 1: a version byte, a flags byte, then uvarint-length
// prefixed strings NodeName, RemoteHost, HTTPAddr, QUICAddr, RaftAddr,
// Version, a uvarint RemotePort, a uvarint kind count and the kinds.
// Binary and positional because the whole thing must fit in 512 bytes with
// room for many kind names; JSON of the same data is about twice the size.
// Evolution: new fields are only ever appended (decoders ignore trailing
// bytes), so the version byte changes only for an incompatible layout.
const (
	metaVersion = 1

	flagClient = 1 << 0 // other bits reserved; decoders ignore them

	maxKinds = 256 // sanity bound for decoding; 512 bytes fit far fewer
)

// ErrMetaTooLarge is returned when the encoded metadata exceeds MetaMaxSize.
var ErrMetaTooLarge = errors.New("membership: node metadata exceeds memberlist's 512-byte limit")

// Encode returns m's wire form, or ErrMetaTooLarge (wrapped with the size).
func (m *Meta) Encode() ([]byte, error) {
	if m.RemotePort < 0 || m.RemotePort > 65535 {
		return nil, fmt.Errorf("membership: remote port %d out of range", m.RemotePort)
	}
	b := make([]byte, 0, 128)
	b = append(b, metaVersion)
	var flags byte
	if m.Client {
		flags |= flagClient
	}
	b = append(b, flags)
	for _, s := range []string{m.NodeName, m.RemoteHost, m.HTTPAddr, m.QUICAddr, m.RaftAddr, m.Version} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(m.RemotePort))
	b = binary.AppendUvarint(b, uint64(len(m.Kinds)))
	for _, k := range m.Kinds {
		b = appendString(b, k)
	}
	// Appended fields (see Evolution above).
	b = appendString(b, m.Incarnation)
	if m.Partitions < 0 {
		return nil, fmt.Errorf("membership: partitions %d out of range", m.Partitions)
	}
	b = binary.AppendUvarint(b, uint64(m.Partitions))
	b = appendString(b, m.MasterKeyID)
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes (%d kinds)", ErrMetaTooLarge, len(b), len(m.Kinds))
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeMeta parses metadata written by Encode. It never panics on hostile
// input (gossip from a node running other software on the same port).
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < 2 {
		return m, fmt.Errorf("membership: metadata is %d bytes, too short", len(b))
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("membership: metadata version %d, want %d", b[0], metaVersion)
	}
	m.Client = b[1]&flagClient != 0
	d := decoder{b: b[2:]}
	for _, s := range []*string{&m.NodeName, &m.RemoteHost, &m.HTTPAddr, &m.QUICAddr, &m.RaftAddr, &m.Version} {
		*s = d.string()
	}
	port := d.uvarint()
	if port > 65535 {
		d.fail(fmt.Errorf("remote port %d out of range", port))
	}
	m.RemotePort = int(port)
	n := d.uvarint()
	if n > maxKinds {
		d.fail(fmt.Errorf("%d kinds", n))
	}
	if d.err == nil && n > 0 {
		m.Kinds = make([]string, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			m.Kinds = append(m.Kinds, d.string())
		}
	}
	// Fields appended later are absent in metadata from older nodes.
	if d.err == nil && len(d.b) > 0 {
		m.Incarnation = d.string()
		parts := d.uvarint()
		if parts > math.MaxInt32 {
			d.fail(fmt.Errorf("partitions %d out of range", parts))
		}
		m.Partitions = int(parts)
	}
	if d.err == nil && len(d.b) > 0 {
		m.MasterKeyID = d.string()
	}
	if d.err != nil {
		return Meta{}, fmt.Errorf("membership: decode metadata: %w", d.err)
	}
	return m, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errors.New("truncated or overlong varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("string of %d bytes with %d left", n, len(d.b)))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
