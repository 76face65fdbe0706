package persistence

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Namespace snapshots
//
// A Raft partition snapshots its state machine by streaming every key of
// its namespace; a replica that installs the snapshot replaces its whole
// namespace with the stream. The stream is
//
//	magic "wardns1\n"
//	record*   uvarint(len(key)) | key | uvarint(len(value)) | value
//	end       uvarint(0)
//	crc32c    4 bytes big-endian, over everything before it
//
// where key omits the 4-byte namespace, so a stream can be restored into a
// different namespace (a partition moving to another slot). The applied-
// index key is part of the namespace and so of the stream: a restored
// namespace knows which entries it already holds. Values are copied as
// stored, framing and all, so they stay verifiable end to end.

const nsSnapshotMagic = "wardns1\n"

// Limits on one record of an untrusted stream: keys carry at most three
// names of maxNameLen bytes plus fixed fields; values are event, snapshot
// or timer bytes, which a Raft entry already bounds.
const (
	maxSnapshotKey   = 4*maxNameLen + 64
	maxSnapshotValue = maxEntryBytes
)

// knownFamily reports whether fam is a family a namespace may hold.
func knownFamily(fam byte) bool {
	switch fam {
	case famEvent, famSnapshot, famTimer, famDue, famApplied, famReply, famFeed, famFeedHead:
		return true
	}
	return false
}

func nsBounds(ns uint32) (lower, upper []byte) {
	lower = binary.BigEndian.AppendUint32(nil, ns)
	upper = binary.BigEndian.AppendUint32(nil, ns+1)
	return lower, upper
}

// NamespaceSnapshot is a consistent point-in-time view of one namespace,
// taken by SnapshotNamespace and streamed later by WriteTo. It pins pebble
// state until Close; Close it before closing the Store.
type NamespaceSnapshot struct {
	s    *Store
	ns   uint32
	snap *pebble.Snapshot

	closeOnce sync.Once
}

// SnapshotNamespace captures namespace ns as of now. It is cheap (no I/O);
// a Raft FSM calls it from its apply goroutine, so the view matches the
// applied index exactly, and streams it from another goroutine.
func (s *Store) SnapshotNamespace(ns uint32) (*NamespaceSnapshot, error) {
	if err := validReplicatedNamespace(ns); err != nil {
		return nil, err
	}
	var out *NamespaceSnapshot
	err := s.reader(func() error {
		out = &NamespaceSnapshot{s: s, ns: ns, snap: s.db.NewSnapshot()}
		return nil
	})
	return out, err
}

// WriteTo streams the namespace in the format described above.
func (n *NamespaceSnapshot) WriteTo(w io.Writer) (written int64, err error) {
	cw := &countingWriter{w: w}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(cw, crc), 256<<10)
	err = n.s.reader(func() error { return n.write(bw) })
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = cw.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	}
	if err != nil {
		return cw.n, fmt.Errorf("persistence: snapshot namespace %d: %w", n.ns, err)
	}
	return cw.n, nil
}

func (n *NamespaceSnapshot) write(bw *bufio.Writer) error {
	if _, err := bw.WriteString(nsSnapshotMagic); err != nil {
		return err
	}
	lower, upper := nsBounds(n.ns)
	it, err := n.snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var hdr [binary.MaxVarintLen64]byte
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[nsLen:]
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return pebbleErr(err)
		}
		for _, b := range [][]byte{k, v} {
			if _, err := bw.Write(hdr[:binary.PutUvarint(hdr[:], uint64(len(b)))]); err != nil {
				_ = it.Close()
				return err
			}
			if _, err := bw.Write(b); err != nil {
				_ = it.Close()
				return err
			}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return pebbleErr(err)
	}
	return bw.WriteByte(0) // uvarint(0): end of records
}

// Close releases the pinned state. It is safe to call more than once.
func (n *NamespaceSnapshot) Close() error {
	var err error
	n.closeOnce.Do(func() { err = n.snap.Close() })
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// crcReader feeds everything read through it into a checksum.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		_, _ = c.crc.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	_, _ = c.crc.Write(p[:n])
	return n, err
}

// RestoreNamespace replaces namespace ns with a stream written by
// NamespaceSnapshot.WriteTo, atomically and durably (one synced batch). The
// stream is untrusted: a bad magic, an oversized or unknown record, a
// truncated stream or a checksum mismatch fails with an error wrapping
// ErrCorrupt and leaves the namespace as it was. The caller must not apply
// entries to ns concurrently (Raft serialises Restore with Apply).
func (s *Store) RestoreNamespace(ns uint32, r io.Reader) error {
	rs, err := s.replica(ns)
	if err != nil {
		return err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	err = s.reader(func() error { return s.restoreNamespace(ns, r) })
	// Whatever happened, forget cached positions: on success they describe
	// the replaced state, on failure they are merely uncertain.
	clear(rs.sp.seqs)
	rs.sp.feedHeadKnown = false
	rs.appliedKnown = false
	if err != nil {
		return fmt.Errorf("persistence: restore namespace %d: %w", ns, err)
	}
	return nil
}

func (s *Store) restoreNamespace(ns uint32, r io.Reader) error {
	cr := &crcReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: snapshot stream: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(nsSnapshotMagic))
	if _, err := io.ReadFull(cr, magic); err != nil {
		return corrupt("read header: %v", err)
	}
	if string(magic) != nsSnapshotMagic {
		return corrupt("bad header %q", magic)
	}
	lower, upper := nsBounds(ns)
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.DeleteRange(lower, upper, nil); err != nil {
		return fmt.Errorf("batch delete namespace: %w", err)
	}
	readField := func(what string, limit uint64) ([]byte, error) {
		n, err := binary.ReadUvarint(cr)
		if err != nil {
			return nil, corrupt("read %s length: %v", what, err)
		}
		if n > limit {
			return nil, corrupt("%s of %d bytes exceeds %d", what, n, limit)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(cr, buf); err != nil {
			return nil, corrupt("read %s: %v", what, err)
		}
		return buf, nil
	}
	records := 0
	for {
		k, err := readField("key", maxSnapshotKey)
		if err != nil {
			return err
		}
		if len(k) == 0 {
			break
		}
		if !knownFamily(k[0]) {
			return corrupt("record %d has unknown key family %q", records, k[0])
		}
		v, err := readField("value", maxSnapshotValue)
		if err != nil {
			return err
		}
		if err := b.Set(append(binary.BigEndian.AppendUint32(nil, ns), k...), v, nil); err != nil {
			return fmt.Errorf("batch record %d: %w", records, err)
		}
		records++
	}
	want := cr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr.r, sum[:]); err != nil {
		return corrupt("read checksum: %v", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return corrupt("checksum mismatch (stream %08x, computed %08x)", got, want)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit %d records: %w", records, err)
	}
	return nil
}
