package raftstore

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// ErrSnapshotNotFound is wrapped by Open for an id that names no complete
// snapshot of the group (never closed, cancelled, reaped, or malformed).
var ErrSnapshotNotFound = errors.New("snapshot not found")

// errSinkClosed is returned by Write after Close or Cancel.
var errSinkClosed = errors.New("raftstore: snapshot sink already closed")

// snapshotRecord is the meta value of a snapshot: raft's metadata plus what
// Open needs to check the data is complete.
type snapshotRecord struct {
	raft.SnapshotMeta
	Seq    uint64 `json:"seq"`
	Chunks uint32 `json:"chunks"`
}

// SnapshotStore is a raft.SnapshotStore keeping one group's snapshots in
// pebble. It keeps the newest retain snapshots and deletes older ones when a
// new one is closed, as raft's FileSnapshotStore does.
type SnapshotStore struct {
	db        *pebble.DB
	group     uint32
	retain    int
	chunkSize int

	// mu orders Close's list-then-reap against other Closes and against
	// Open, whose meta read and iterator must see the same snapshot.
	mu      sync.Mutex
	nextSeq uint64
}

var _ raft.SnapshotStore = (*SnapshotStore)(nil)

// NewSnapshotStore opens the snapshot store of one group. retain (at least
// 1) is how many snapshots are kept; chunkSize is the size of each stored
// data value. Data left by snapshots that were never closed is deleted.
func NewSnapshotStore(db *pebble.DB, group uint32, retain, chunkSize int) (*SnapshotStore, error) {
	if db == nil {
		return nil, errors.New("raftstore: nil pebble database")
	}
	if retain < 1 {
		return nil, fmt.Errorf("raftstore: must retain at least one snapshot, got %d", retain)
	}
	if chunkSize < 1 {
		return nil, fmt.Errorf("raftstore: snapshot chunk size must be positive, got %d", chunkSize)
	}
	s := &SnapshotStore{db: db, group: group, retain: retain, chunkSize: chunkSize}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// recover sets the next sequence number past every one in use, and deletes
// data chunks that no meta record owns: the remains of a crash between a
// sink's first chunk and its Close.
func (s *SnapshotStore) recover() (err error) {
	recs, err := s.records()
	if err != nil {
		return err
	}
	owned := make(map[uint64]bool, len(recs))
	for _, r := range recs {
		owned[r.Seq] = true
		s.nextSeq = max(s.nextSeq, r.Seq)
	}

	lower, upper := familyBounds(s.group, famSnapshotData)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("raftstore: group %d: open snapshot data iterator: %w", s.group, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("raftstore: group %d: close snapshot data iterator: %w", s.group, cerr)
		}
	}()
	b := s.db.NewBatch()
	defer func() { _ = b.Close() }() // Close only recycles the batch.
	for valid := it.First(); valid; {
		seq, _, err := parseSnapDataKey(it.Key())
		if err != nil {
			return fmt.Errorf("raftstore: group %d: %w", s.group, err)
		}
		s.nextSeq = max(s.nextSeq, seq)
		lo, hi := snapDataBounds(s.group, seq)
		if !owned[seq] {
			if err := b.DeleteRange(lo, hi, nil); err != nil {
				return fmt.Errorf("raftstore: group %d: stage orphan snapshot %d deletion: %w", s.group, seq, err)
			}
		}
		valid = it.SeekGE(hi)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("raftstore: group %d: scan snapshot data: %w", s.group, err)
	}
	if s.nextSeq == math.MaxUint64 {
		return fmt.Errorf("raftstore: group %d: %w: snapshot sequence exhausted", s.group, ErrCorrupt)
	}
	s.nextSeq++
	if b.Empty() {
		return nil
	}
	// Unsynced: losing this cleanup to a crash only means redoing it.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: group %d: delete orphan snapshot data: %w", s.group, err)
	}
	return nil
}

// records returns every complete snapshot of the group, newest first.
func (s *SnapshotStore) records() (recs []*snapshotRecord, err error) {
	lower, upper := familyBounds(s.group, famSnapshotMeta)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("raftstore: group %d: open snapshot meta iterator: %w", s.group, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("raftstore: group %d: close snapshot meta iterator: %w", s.group, cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		seq, err := parseSnapMetaKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("raftstore: group %d: %w", s.group, err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("raftstore: group %d: read snapshot meta %d: %w", s.group, seq, err)
		}
		rec, err := decodeRecord(v, seq)
		if err != nil {
			// Skipping it, as FileSnapshotStore does with unreadable meta,
			// could make raft restore an older snapshot whose follow-on log
			// was already compacted away. Fail instead.
			return nil, fmt.Errorf("raftstore: group %d: snapshot meta %d: %w", s.group, seq, err)
		}
		recs = append(recs, rec)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("raftstore: group %d: scan snapshot meta: %w", s.group, err)
	}
	sortNewestFirst(recs)
	return recs, nil
}

func decodeRecord(v []byte, seq uint64) (*snapshotRecord, error) {
	body, err := openFrame(v)
	if err != nil {
		return nil, err
	}
	rec := &snapshotRecord{}
	if err := json.Unmarshal(body, rec); err != nil {
		return nil, fmt.Errorf("%w: decode snapshot meta: %v", ErrCorrupt, err)
	}
	if rec.Seq != seq {
		return nil, fmt.Errorf("%w: snapshot meta under seq %d holds seq %d", ErrCorrupt, seq, rec.Seq)
	}
	return rec, nil
}

// sortNewestFirst orders as raft expects List to: highest term, then index,
// first; the sequence number breaks ties in creation order.
func sortNewestFirst(recs []*snapshotRecord) {
	slices.SortFunc(recs, func(a, b *snapshotRecord) int {
		return cmp.Or(
			cmp.Compare(b.Term, a.Term),
			cmp.Compare(b.Index, a.Index),
			cmp.Compare(b.Seq, a.Seq),
		)
	})
}

// Create begins a snapshot. Like raft's own stores it supports only snapshot
// version 1, the one raft writes at every protocol version it still speaks.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64,
	configuration raft.Configuration, configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("raftstore: group %d: unsupported snapshot version %d", s.group, version)
	}
	peers, err := encodePeers(configuration, trans)
	if err != nil {
		return nil, fmt.Errorf("raftstore: group %d: encode snapshot peers: %w", s.group, err)
	}
	s.mu.Lock()
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()

	// The id is deterministic (no wall clock, unlike FileSnapshotStore's)
	// so simulation runs repeat bit for bit; the sequence makes it unique.
	id := fmt.Sprintf("%d-%d-%d", term, index, seq)
	buf := make([]byte, frameHeaderLen, frameHeaderLen+s.chunkSize)
	return &SnapshotSink{
		store: s,
		rec: snapshotRecord{
			SnapshotMeta: raft.SnapshotMeta{
				Version:            version,
				ID:                 id,
				Index:              index,
				Term:               term,
				Peers:              peers,
				Configuration:      configuration,
				ConfigurationIndex: configurationIndex,
			},
			Seq: seq,
		},
		buf: buf,
	}, nil
}

// encodePeers fills the deprecated SnapshotMeta.Peers exactly as raft's
// file and in-memory stores do (msgpack of the voters' encoded addresses),
// so our metadata matches theirs for any reader that still looks at it.
func encodePeers(configuration raft.Configuration, trans raft.Transport) ([]byte, error) {
	if trans == nil {
		return nil, nil
	}
	var enc [][]byte
	for _, srv := range configuration.Servers {
		if srv.Suffrage == raft.Voter {
			enc = append(enc, trans.EncodePeer(srv.ID, srv.Address))
		}
	}
	var buf bytes.Buffer
	h := codec.MsgpackHandle{}
	h.TimeNotBuiltin = true
	if err := codec.NewEncoder(&buf, &h).Encode(enc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// List returns the retained snapshots, newest first.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	metas := make([]*raft.SnapshotMeta, 0, min(len(recs), s.retain))
	for _, r := range recs[:min(len(recs), s.retain)] {
		metas = append(metas, &r.SnapshotMeta)
	}
	return metas, nil
}

// Open returns a snapshot's metadata and a reader of its data. The data is
// checked (every chunk's checksum, no chunk missing, the recorded size)
// before Open returns, so that raft, which tries older snapshots when Open
// fails, never starts restoring from a damaged one. The reader reads from a
// point-in-time view, so a snapshot reaped while it is being read (say, sent
// to a follower) stays readable until the reader is closed.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	seq, ok := parseSnapshotID(id)
	if !ok {
		return nil, nil, fmt.Errorf("raftstore: group %d: %w: %q", s.group, ErrSnapshotNotFound, id)
	}
	r, rec, err := s.openReader(seq)
	if err != nil {
		return nil, nil, err
	}
	if rec.ID != id {
		_ = r.Close()
		return nil, nil, fmt.Errorf("raftstore: group %d: %w: %q", s.group, ErrSnapshotNotFound, id)
	}
	if err := r.verify(); err != nil {
		_ = r.Close()
		return nil, nil, err
	}
	return &rec.SnapshotMeta, r, nil
}

func (s *SnapshotStore) openReader(seq uint64) (*snapshotReader, *snapshotRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, closer, err := s.db.Get(snapMetaKey(s.group, seq))
	if err == pebble.ErrNotFound {
		return nil, nil, fmt.Errorf("raftstore: group %d: %w: seq %d", s.group, ErrSnapshotNotFound, seq)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: group %d: read snapshot meta %d: %w", s.group, seq, err)
	}
	rec, err := decodeRecord(v, seq)
	_ = closer.Close() // decodeRecord copied what it keeps; Get's closer cannot fail.
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: group %d: snapshot meta %d: %w", s.group, seq, err)
	}
	lower, upper := snapDataBounds(s.group, seq)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: group %d: open snapshot %s: %w", s.group, rec.ID, err)
	}
	return &snapshotReader{it: it, group: s.group, rec: rec}, rec, nil
}

// parseSnapshotID extracts the sequence number from an id made by Create.
func parseSnapshotID(id string) (uint64, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	return seq, err == nil
}

// commit makes a finished snapshot visible and reaps those beyond retain,
// all in one synced batch, so a crash leaves either the old set or the new.
func (s *SnapshotStore) commit(rec *snapshotRecord) error {
	meta, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("raftstore: group %d: encode snapshot meta %s: %w", s.group, rec.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.records()
	if err != nil {
		return err
	}
	all := append(recs, rec)
	sortNewestFirst(all)
	keep := min(len(all), s.retain)

	b := s.db.NewBatch()
	defer func() { _ = b.Close() }() // Close only recycles the batch.
	if slices.Contains(all[:keep], rec) {
		if err := b.Set(snapMetaKey(s.group, rec.Seq), frame(meta), nil); err != nil {
			return fmt.Errorf("raftstore: group %d: stage snapshot meta %s: %w", s.group, rec.ID, err)
		}
	}
	// A new snapshot older than every retained one is reaped at once, as
	// FileSnapshotStore would.
	for _, old := range all[keep:] {
		if err := b.Delete(snapMetaKey(s.group, old.Seq), nil); err != nil {
			return fmt.Errorf("raftstore: group %d: stage reaping snapshot %s: %w", s.group, old.ID, err)
		}
		lo, hi := snapDataBounds(s.group, old.Seq)
		if err := b.DeleteRange(lo, hi, nil); err != nil {
			return fmt.Errorf("raftstore: group %d: stage reaping snapshot %s: %w", s.group, old.ID, err)
		}
	}
	// The data chunks went in unsynced; pebble's WAL is one ordered log, so
	// this synced commit makes them durable too.
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: group %d: commit snapshot %s: %w", s.group, rec.ID, err)
	}
	return nil
}

// discard deletes a snapshot's data chunks. Unsynced: if a crash loses the
// deletion, the chunks have no meta and NewSnapshotStore removes them.
func (s *SnapshotStore) discard(seq uint64) error {
	lo, hi := snapDataBounds(s.group, seq)
	if err := s.db.DeleteRange(lo, hi, pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: group %d: discard snapshot data %d: %w", s.group, seq, err)
	}
	return nil
}

// SnapshotSink receives one snapshot's data. Data goes to pebble a chunk at
// a time, invisible to List and Open until Close commits the meta record.
// Like raft's sinks it is used by one goroutine at a time.
type SnapshotSink struct {
	store  *SnapshotStore
	rec    snapshotRecord
	buf    []byte // frame header followed by the pending chunk's bytes
	chunks uint32 // chunks written so far
	err    error  // first write failure; Close reports it
	done   bool
}

var _ raft.SnapshotSink = (*SnapshotSink)(nil)

// ID returns the id Open takes once the sink is closed.
func (k *SnapshotSink) ID() string { return k.rec.ID }

// Write buffers p and stores every full chunk.
func (k *SnapshotSink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errSinkClosed
	}
	if k.err != nil {
		return 0, k.err
	}
	n := 0
	for len(p) > 0 {
		c := min(cap(k.buf)-len(k.buf), len(p))
		k.buf = append(k.buf, p[:c]...)
		p = p[c:]
		n += c
		k.rec.Size += int64(c)
		if len(k.buf) == cap(k.buf) {
			if err := k.flush(); err != nil {
				k.err = err
				return n, err
			}
		}
	}
	return n, nil
}

// flush stores the pending chunk. Unsynced: Close's synced commit covers it.
func (k *SnapshotSink) flush() error {
	if k.chunks == math.MaxUint32 {
		return fmt.Errorf("raftstore: group %d: snapshot %s exceeds %d chunks", k.store.group, k.rec.ID, uint32(math.MaxUint32))
	}
	sealFrame(k.buf)
	key := snapDataKey(k.store.group, k.rec.Seq, k.chunks)
	if err := k.store.db.Set(key, k.buf, pebble.NoSync); err != nil {
		return fmt.Errorf("raftstore: group %d: write snapshot %s chunk %d: %w", k.store.group, k.rec.ID, k.chunks, err)
	}
	k.chunks++
	k.buf = k.buf[:frameHeaderLen]
	return nil
}

// Close stores the last chunk and makes the snapshot durable and visible in
// one synced commit, reaping snapshots beyond retain. A second Close, or a
// Close after Cancel, does nothing.
func (k *SnapshotSink) Close() error {
	if k.done {
		return nil
	}
	k.done = true
	err := k.err
	if err == nil && len(k.buf) > frameHeaderLen {
		err = k.flush()
	}
	if err == nil {
		k.rec.Chunks = k.chunks
		err = k.store.commit(&k.rec)
	}
	k.buf = nil
	if err != nil {
		if derr := k.store.discard(k.rec.Seq); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// Cancel discards the snapshot. A second Cancel, or a Cancel after Close,
// does nothing.
func (k *SnapshotSink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	k.buf = nil
	return k.store.discard(k.rec.Seq)
}

// snapshotReader streams a snapshot's chunks from a pebble iterator.
type snapshotReader struct {
	it    *pebble.Iterator
	group uint32
	rec   *snapshotRecord

	started bool
	next    uint32 // number of the next chunk expected
	read    int64  // bytes of all chunks loaded so far
	cur     []byte // unread part of the current chunk (pebble's memory)
	err     error  // sticky: io.EOF or a failure
	closed  bool
}

// advance loads the next chunk into cur, or returns io.EOF after checking
// that the chunks seen add up to what the meta record promised.
func (r *snapshotReader) advance() error {
	var ok bool
	if r.started {
		ok = r.it.Next()
	} else {
		ok, r.started = r.it.First(), true
	}
	if !ok {
		if err := r.it.Error(); err != nil {
			return fmt.Errorf("raftstore: group %d: read snapshot %s: %w", r.group, r.rec.ID, err)
		}
		if r.next != r.rec.Chunks || r.read != r.rec.Size {
			return fmt.Errorf("raftstore: group %d: snapshot %s: %w: data ends after %d chunks and %d bytes, meta records %d and %d",
				r.group, r.rec.ID, ErrCorrupt, r.next, r.read, r.rec.Chunks, r.rec.Size)
		}
		return io.EOF
	}
	_, chunk, err := parseSnapDataKey(r.it.Key())
	if err != nil {
		return fmt.Errorf("raftstore: group %d: snapshot %s: %w", r.group, r.rec.ID, err)
	}
	if chunk != r.next {
		return fmt.Errorf("raftstore: group %d: snapshot %s: %w: found chunk %d where chunk %d belongs", r.group, r.rec.ID, ErrCorrupt, chunk, r.next)
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return fmt.Errorf("raftstore: group %d: read snapshot %s chunk %d: %w", r.group, r.rec.ID, chunk, err)
	}
	body, err := openFrame(v)
	if err != nil {
		return fmt.Errorf("raftstore: group %d: snapshot %s chunk %d: %w", r.group, r.rec.ID, chunk, err)
	}
	r.next++
	r.read += int64(len(body))
	if r.read > r.rec.Size {
		return fmt.Errorf("raftstore: group %d: snapshot %s: %w: data exceeds the recorded %d bytes", r.group, r.rec.ID, ErrCorrupt, r.rec.Size)
	}
	r.cur = body
	return nil
}

// verify walks every chunk once and rewinds, so Open can refuse a damaged
// snapshot before raft hands the reader to the FSM.
func (r *snapshotReader) verify() error {
	for {
		err := r.advance()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	r.started, r.next, r.read, r.cur = false, 0, 0, nil
	return nil
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("raftstore: read from closed snapshot reader")
	}
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.advance()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close releases the iterator and with it the pinned point-in-time view.
func (r *snapshotReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cur = nil
	if err := r.it.Close(); err != nil {
		return fmt.Errorf("raftstore: group %d: close snapshot %s: %w", r.group, r.rec.ID, err)
	}
	return nil
}
