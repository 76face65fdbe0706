package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wardhq/ward/protocol"
)

// Replicated namespaces
//
// A Raft partition p owns namespace p+1. Its writes do not go through the
// group-commit queue: the partition's leader encodes them into a log entry
// (EncodeReplicatedWrite, MarshalReplicatedBatch), Raft makes the entry
// durable on a quorum, and every replica's state machine hands the decoded
// entry to ApplyReplicated.
//
// ApplyReplicated writes without fsync. The entry is already durable in the
// Raft log (on the same database), and pebble has a single WAL: the next
// synced write of any kind on this node (a Raft log append, a snapshot, a
// local commit) makes every earlier unsynced write durable too. A crash can
// therefore lose only applies whose entries are still in the Raft log, and
// Raft re-applies those on restart.
//
// Re-application must be harmless, so each namespace stores the index of
// the last entry it applied (family 'A', written in the same pebble batch as
// the entry's writes): ApplyReplicated skips any index at or below it.
//
// Validation must come out the same on every replica, or replicas diverge.
// It depends only on the entry and on the namespace's state, which every
// replica built from the same entries, so sequence conflicts and malformed
// writes are deterministic per-write results. Anything that depends on the
// local disk (an I/O error, a corrupt stored record) is not: it is returned
// as the call's error, nothing of the entry is applied, and the caller must
// stop applying (the entry will be retried after a restart or a snapshot
// install from a healthy replica).

// famApplied is the family of a namespace's applied-index key: ns | 'A'.
const famApplied byte = 'A'

// MaxReplicatedNamespace is the highest namespace a partition may use: keys
// with the leading byte 0xF0 and up belong to persistence/raftstore.
const MaxReplicatedNamespace uint32 = 0xF0000000 - 1

// entryJournalBatch tags a Raft log entry holding a protocol.JournalBatch.
// The tag leaves room for other entry kinds without guessing at bytes.
const entryJournalBatch byte = 1

// maxEntryBytes bounds a decoded log entry. Raft entries far above this
// would stall replication anyway; refusing them keeps an untrusted entry from
// making the decoder allocate without limit.
const maxEntryBytes = 64 << 20

func appliedKey(ns uint32) []byte { return familyPrefix(ns, famApplied) }

// journalSpace is the validation state of one namespace: the journal
// position of recently written actors. The local space belongs to the
// committer goroutine; each replicated one to its replicaSpace's lock.
type journalSpace struct {
	ns   uint32
	seqs map[string]actorSeqs
	// feedHead is the namespace's last event-feed position, valid when
	// feedHeadKnown (read lazily by the first write that emits).
	feedHead      uint64
	feedHeadKnown bool
}

// evict drops arbitrary cache entries to make room for n more; any entry
// can be re-read from the database.
func (sp *journalSpace) evict(n int) {
	if len(sp.seqs)+n <= maxCachedActors {
		return
	}
	drop := len(sp.seqs)/8 + n
	for k := range sp.seqs {
		if drop <= 0 {
			return
		}
		delete(sp.seqs, k)
		drop--
	}
}

// replicaSpace is the apply state of one replicated namespace.
type replicaSpace struct {
	mu           sync.Mutex
	sp           journalSpace
	bb           batchBuilder
	applied      uint64
	appliedKnown bool
}

// DB returns the node's pebble database, for persistence/raftstore, which
// keeps the Raft groups' logs on the same database (and so the same WAL).
func (s *Store) DB() *pebble.DB { return s.db }

// View reads one namespace of the store.
type View struct {
	s  *Store
	ns uint32
}

// Namespace returns a reader over namespace ns. It does no I/O.
func (s *Store) Namespace(ns uint32) *View { return &View{s: s, ns: ns} }

// Load is Store.Load within the view's namespace.
func (v *View) Load(key ActorKey) (*Loaded, error) {
	if err := validActor(key); err != nil {
		return nil, fmt.Errorf("persistence: load %s: %w", key, err)
	}
	var out *Loaded
	err := v.s.reader(func() error {
		var err error
		out, err = v.s.load(v.ns, key)
		return err
	})
	return out, err
}

// DueTimers is Store.DueTimers within the view's namespace.
func (v *View) DueTimers(until time.Time, limit int) ([]Timer, error) {
	var out []Timer
	err := v.s.reader(func() error {
		var err error
		out, err = v.s.dueTimers(v.ns, until, limit)
		return err
	})
	return out, err
}

// AppliedIndex returns the index of the last Raft entry applied to the
// namespace, 0 if none.
func (v *View) AppliedIndex() (uint64, error) {
	var out uint64
	err := v.s.reader(func() error {
		var err error
		out, err = readApplied(v.s.db, v.ns)
		return err
	})
	return out, err
}

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func readApplied(g getter, ns uint32) (uint64, error) {
	return readUint64(g, appliedKey(ns), fmt.Sprintf("applied index of namespace %d", ns))
}

// readUint64 reads a framed 8-byte counter (an applied index, a feed head);
// a missing key reads as 0.
func readUint64(g getter, key []byte, what string) (uint64, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("persistence: read %s: %w", what, pebbleErr(err))
	}
	defer func() { _ = closer.Close() }()
	p, err := unframe(v, what)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("persistence: %s is %d bytes, want 8: %w", what, len(p), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(p), nil
}

// uint64Value frames a counter as readUint64 reads it.
func uint64Value(index uint64) []byte {
	return frame(binary.BigEndian.AppendUint64(nil, index))
}

func validReplicatedNamespace(ns uint32) error {
	if ns == localNamespace || ns > MaxReplicatedNamespace {
		return fmt.Errorf("persistence: namespace %d is not a replicated namespace (want 1..%d): %w", ns, MaxReplicatedNamespace, ErrInvalidWrite)
	}
	return nil
}

func (s *Store) replica(ns uint32) (*replicaSpace, error) {
	if err := validReplicatedNamespace(ns); err != nil {
		return nil, err
	}
	s.replicasMu.Lock()
	defer s.replicasMu.Unlock()
	if s.replicas == nil {
		s.replicas = make(map[uint32]*replicaSpace)
	}
	rs := s.replicas[ns]
	if rs == nil {
		rs = &replicaSpace{
			sp: journalSpace{ns: ns, seqs: make(map[string]actorSeqs)},
			bb: batchBuilder{pending: make(map[string]actorSeqs), timers: make(map[string]timerState)},
		}
		s.replicas[ns] = rs
	}
	return rs, nil
}

// EncodeReplicatedWrite validates w's shape and encodes it for a Raft log
// entry. It does the marshalling on the caller's goroutine, like Commit.
func EncodeReplicatedWrite(w *Write) (*protocol.JournalWrite, error) {
	return marshalWrite("encode", w)
}

// marshalWrite checks w's shape and marshals its messages: the one place
// both the local and the replicated path decide what a valid write is. op
// names the caller in errors.
func marshalWrite(op string, w *Write) (*protocol.JournalWrite, error) {
	if w == nil {
		return nil, fmt.Errorf("persistence: %s: nil write: %w", op, ErrInvalidWrite)
	}
	fail := func(format string, args ...any) (*protocol.JournalWrite, error) {
		return nil, fmt.Errorf("persistence: %s %s: "+format, append([]any{op, w.Actor}, args...)...)
	}
	if err := validActor(w.Actor); err != nil {
		return fail("%w", err)
	}
	jw := &protocol.JournalWrite{Kind: []byte(w.Actor.Kind), Id: []byte(w.Actor.ID), FirstSeq: w.FirstSeq}
	if n := len(w.Events); n > 0 {
		if err := validSeqs(w.FirstSeq, n); err != nil {
			return fail("%w", err)
		}
		jw.Events = make([][]byte, n)
		for i, ev := range w.Events {
			if ev == nil {
				return fail("event %d is nil: %w", i, ErrInvalidWrite)
			}
			b, err := protocol.Marshal(ev)
			if err != nil {
				return fail("event %d: %w", i, err)
			}
			jw.Events[i] = b
		}
	}
	if sn := w.Snapshot; sn != nil {
		if sn.State == nil {
			return fail("snapshot at seq %d has no state: %w", sn.Seq, ErrInvalidWrite)
		}
		b, err := protocol.Marshal(sn.State)
		if err != nil {
			return fail("snapshot: %w", err)
		}
		jw.Snapshot = &protocol.JournalSnapshot{Seq: sn.Seq, State: b}
	}
	if len(w.Timers) > 0 {
		jw.Timers = make([]*protocol.JournalTimer, len(w.Timers))
	}
	for i, tc := range w.Timers {
		if err := validName("timer name", tc.Name, false); err != nil {
			return fail("timer %d: %w", i, err)
		}
		jt := &protocol.JournalTimer{Name: []byte(tc.Name), Cancel: tc.Cancel}
		if !tc.Cancel {
			jt.DueUnixNano = timeToNanos(tc.Due)
			if tc.Payload != nil {
				b, err := protocol.Marshal(tc.Payload)
				if err != nil {
					return fail("timer %q payload: %w", tc.Name, err)
				}
				jt.Payload = b
			}
		}
		jw.Timers[i] = jt
	}
	if len(w.Emitted) > MaxEmitted {
		return fail("%d emitted events, limit %d: %w", len(w.Emitted), MaxEmitted, ErrInvalidWrite)
	}
	for i, ev := range w.Emitted {
		if ev == nil {
			return fail("emitted event %d is nil: %w", i, ErrInvalidWrite)
		}
		b, err := protocol.Marshal(ev)
		if err != nil {
			return fail("emitted event %d: %w", i, err)
		}
		jw.Emitted = append(jw.Emitted, b)
	}
	if r := w.Reply; r != nil {
		if err := validRequestID(r.RequestID); err != nil {
			return fail("reply: %w", err)
		}
		if r.Response == nil {
			return fail("reply to %q has no response: %w", r.RequestID, ErrInvalidWrite)
		}
		b, err := protocol.Marshal(r.Response)
		if err != nil {
			return fail("reply to %q: %w", r.RequestID, err)
		}
		jw.Reply = &protocol.JournalReply{RequestId: []byte(r.RequestID), Response: b}
	}
	return jw, nil
}

// validRequestID checks a reply's request id: ids are keys of the host's
// dedupe window, so an empty one means "no dedupe" and has nothing to store.
func validRequestID(id string) error {
	if id == "" {
		return fmt.Errorf("empty request id: %w", ErrInvalidWrite)
	}
	if len(id) > MaxRequestIDLen {
		return fmt.Errorf("request id is %d bytes, limit %d: %w", len(id), MaxRequestIDLen, ErrInvalidWrite)
	}
	return nil
}

// isEmpty reports whether a write has nothing to store.
func isEmpty(jw *protocol.JournalWrite) bool {
	return len(jw.GetEvents()) == 0 && jw.GetSnapshot() == nil && len(jw.GetTimers()) == 0 && jw.GetReply() == nil && len(jw.GetEmitted()) == 0
}

// validSeqs checks the sequence numbers of n events starting at first.
func validSeqs(first uint64, n int) error {
	if first == 0 {
		return fmt.Errorf("events must start at seq 1 or later: %w", ErrInvalidWrite)
	}
	if first > math.MaxUint64-uint64(n) {
		return fmt.Errorf("seq %d + %d events overflows: %w", first, n, ErrInvalidWrite)
	}
	return nil
}

// MarshalReplicatedBatch encodes writes as one Raft log entry. The encoding
// is deterministic, so equal batches give equal entries.
func MarshalReplicatedBatch(writes []*protocol.JournalWrite) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte{entryJournalBatch}, &protocol.JournalBatch{Writes: writes})
	if err != nil {
		return nil, fmt.Errorf("persistence: marshal journal batch of %d writes: %w", len(writes), err)
	}
	if len(b) > maxEntryBytes {
		return nil, fmt.Errorf("persistence: journal batch of %d writes is %d bytes, limit %d: %w", len(writes), len(b), maxEntryBytes, ErrInvalidWrite)
	}
	return b, nil
}

// DecodeReplicatedBatch decodes a Raft log entry written by
// MarshalReplicatedBatch. The input is untrusted: anything that is not such
// an entry yields an error wrapping ErrCorrupt, never a panic. Each write's
// contents are checked later, by ApplyReplicated, one write at a time.
func DecodeReplicatedBatch(entry []byte) ([]*protocol.JournalWrite, error) {
	jb, err := DecodeReplicatedEntry(entry)
	if err != nil {
		return nil, err
	}
	return jb.Writes, nil
}

// MarshalFeedTrim encodes a Raft log entry that trims the partition's event
// feed through position through (and writes nothing else).
func MarshalFeedTrim(through uint64) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte{entryJournalBatch}, &protocol.JournalBatch{TrimFeedThrough: through})
	if err != nil {
		return nil, fmt.Errorf("persistence: marshal feed trim: %w", err)
	}
	return b, nil
}

// DecodeReplicatedEntry is DecodeReplicatedBatch returning the whole entry
// (its writes and its feed trim).
func DecodeReplicatedEntry(entry []byte) (*protocol.JournalBatch, error) {
	if len(entry) == 0 {
		return nil, fmt.Errorf("persistence: decode journal batch: empty entry: %w", ErrCorrupt)
	}
	if entry[0] != entryJournalBatch {
		return nil, fmt.Errorf("persistence: decode journal batch: unknown entry type %d: %w", entry[0], ErrCorrupt)
	}
	if len(entry) > maxEntryBytes {
		return nil, fmt.Errorf("persistence: decode journal batch: %d bytes exceeds %d: %w", len(entry), maxEntryBytes, ErrCorrupt)
	}
	var jb protocol.JournalBatch
	if err := proto.Unmarshal(entry[1:], &jb); err != nil {
		return nil, fmt.Errorf("persistence: decode journal batch: %w: %w", ErrCorrupt, err)
	}
	for i, w := range jb.Writes {
		if w == nil {
			return nil, fmt.Errorf("persistence: decode journal batch: write %d missing: %w", i, ErrCorrupt)
		}
	}
	return &jb, nil
}

// validAny checks that b is protocol.Marshal output in shape: an Any with a
// type URL. It does not resolve the type, so that a replica that does not
// know a message type still applies the write exactly as the others do.
func validAny(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty message")
	}
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("not an Any: %w", err)
	}
	if a.GetTypeUrl() == "" {
		return errors.New("Any without a type URL")
	}
	return nil
}

// encodeReplicated checks a write read from a Raft log entry (untrusted
// bytes: every replica must refuse a malformed one the same way) and lays out
// its keys and values in namespace ns.
func encodeReplicated(ns uint32, jw *protocol.JournalWrite) (encodedWrite, error) {
	key := ActorKey{Kind: string(jw.GetKind()), ID: string(jw.GetId())}
	fail := func(format string, args ...any) (encodedWrite, error) {
		return encodedWrite{}, fmt.Errorf("persistence: apply %s: "+format, append([]any{key}, args...)...)
	}
	if err := validActor(key); err != nil {
		return fail("%w", err)
	}
	if n := len(jw.GetEvents()); n > 0 {
		if err := validSeqs(jw.GetFirstSeq(), n); err != nil {
			return fail("%w", err)
		}
	}
	for i, b := range jw.GetEvents() {
		if err := validAny(b); err != nil {
			return fail("event %d: %w: %w", i, ErrInvalidWrite, err)
		}
	}
	if sn := jw.GetSnapshot(); sn != nil {
		if err := validAny(sn.GetState()); err != nil {
			return fail("snapshot at seq %d: %w: %w", sn.GetSeq(), ErrInvalidWrite, err)
		}
	}
	for i, jt := range jw.GetTimers() {
		if jt == nil {
			return fail("timer %d missing: %w", i, ErrInvalidWrite)
		}
		name := string(jt.GetName())
		if err := validName("timer name", name, false); err != nil {
			return fail("timer %d: %w", i, err)
		}
		if p := jt.GetPayload(); !jt.GetCancel() && len(p) > 0 {
			if err := validAny(p); err != nil {
				return fail("timer %q payload: %w: %w", name, ErrInvalidWrite, err)
			}
		}
	}
	if n := len(jw.GetEmitted()); n > MaxEmitted {
		return fail("%d emitted events, limit %d: %w", n, MaxEmitted, ErrInvalidWrite)
	}
	for i, b := range jw.GetEmitted() {
		if err := validAny(b); err != nil {
			return fail("emitted event %d: %w: %w", i, ErrInvalidWrite, err)
		}
	}
	if r := jw.GetReply(); r != nil {
		if err := validRequestID(string(r.GetRequestId())); err != nil {
			return fail("reply: %w", err)
		}
		if err := validAny(r.GetResponse()); err != nil {
			return fail("reply to %q: %w: %w", r.GetRequestId(), ErrInvalidWrite, err)
		}
	}
	return layoutWrite(ns, jw), nil
}

// layoutWrite builds the keys and values of a checked write in namespace ns.
func layoutWrite(ns uint32, jw *protocol.JournalWrite) encodedWrite {
	key := ActorKey{Kind: string(jw.GetKind()), ID: string(jw.GetId())}
	actor := encodeActor(key)
	enc := encodedWrite{key: key, actor: actor, actorStr: string(actor), firstSeq: jw.GetFirstSeq()}
	if n := len(jw.GetEvents()); n > 0 {
		enc.eventKeys = make([][]byte, n)
		enc.eventVals = make([][]byte, n)
		for i, b := range jw.GetEvents() {
			enc.eventKeys[i] = eventKey(ns, actor, enc.firstSeq+uint64(i))
			enc.eventVals[i] = frame(b)
		}
	}
	if sn := jw.GetSnapshot(); sn != nil {
		enc.snap = &encodedSnapshot{seq: sn.GetSeq(), key: snapshotKey(ns, actor), value: snapshotValue(sn.GetSeq(), sn.GetState())}
	}
	if len(jw.GetTimers()) > 0 {
		enc.timers = make([]encodedTimer, len(jw.GetTimers()))
	}
	for i, jt := range jw.GetTimers() {
		name := string(jt.GetName())
		t := encodedTimer{name: name, cancel: jt.GetCancel(), key: timerKey(ns, actor, name)}
		t.keyStr = string(t.key)
		if !t.cancel {
			t.due = jt.GetDueUnixNano()
			t.value = timerValue(t.due)
			t.dueKey = dueKey(ns, t.due, actor, name)
			t.dueValue = frame(jt.GetPayload())
		}
		enc.timers[i] = t
	}
	if r := jw.GetReply(); r != nil {
		// The key depends on the actor's reply count, known only when the
		// write is validated against the journal (see apply).
		enc.reply = &encodedReply{value: replyValue(r.GetRequestId(), r.GetResponse())}
	}
	for _, b := range jw.GetEmitted() {
		enc.emitted = append(enc.emitted, frame(b))
	}
	return enc
}

// ApplyResult is the outcome of one ApplyReplicated call.
type ApplyResult struct {
	// Skipped is true when the entry's index was at or below the
	// namespace's applied index: it was applied before, and nothing was
	// done now.
	Skipped bool
	// Errs holds one result per write, in order: nil for an applied write,
	// else an error wrapping ErrSeqConflict or ErrInvalidWrite. Every
	// replica computes the same results for the same entry.
	Errs []error
}

// ApplyReplicated applies one Raft entry's writes to replicated namespace ns
// in one pebble batch, together with the namespace's applied index, without
// fsync (see the top of this file for why that is safe). Entries must be
// given in increasing index order; one at or below the applied index is
// skipped. A non-nil error means the local store failed (not the writes):
// nothing was applied, and applying further entries would diverge from the
// other replicas.
func (s *Store) ApplyReplicated(ns uint32, index uint64, writes []*protocol.JournalWrite) (ApplyResult, error) {
	return s.ApplyReplicatedEntry(ns, index, &protocol.JournalBatch{Writes: writes})
}

// ApplyReplicatedEntry is ApplyReplicated for a whole decoded entry: its
// writes, then its feed trim, in the same pebble batch.
func (s *Store) ApplyReplicatedEntry(ns uint32, index uint64, entry *protocol.JournalBatch) (ApplyResult, error) {
	writes, trim := entry.GetWrites(), entry.GetTrimFeedThrough()
	rs, err := s.replica(ns)
	if err != nil {
		return ApplyResult{}, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var res ApplyResult
	err = s.reader(func() error {
		var err error
		res, err = s.applyReplicated(rs, index, writes, trim)
		return err
	})
	if err != nil {
		// The cache may hold positions the failed batch never wrote.
		clear(rs.sp.seqs)
		rs.sp.feedHeadKnown = false
		rs.appliedKnown = false
	}
	return res, err
}

func (s *Store) applyReplicated(rs *replicaSpace, index uint64, writes []*protocol.JournalWrite, trim uint64) (ApplyResult, error) {
	ns := rs.sp.ns
	if !rs.appliedKnown {
		a, err := readApplied(s.db, ns)
		if err != nil {
			return ApplyResult{}, err
		}
		rs.applied, rs.appliedKnown = a, true
	}
	if index <= rs.applied {
		return ApplyResult{Skipped: true}, nil
	}
	bb := &rs.bb
	clear(bb.pending)
	clear(bb.timers)
	bb.feedDirty = false
	batch := s.db.NewBatch()
	defer func() { _ = batch.Close() }()
	res := ApplyResult{Errs: make([]error, len(writes))}
	applied, rejected, events := 0, 0, 0
	for i, jw := range writes {
		enc, err := encodeReplicated(ns, jw)
		if err != nil {
			res.Errs[i] = err
			rejected++
			continue
		}
		if enc.isEmpty() {
			continue // nothing to store, as in Commit
		}
		p, err := s.plan(&rs.sp, bb, &enc)
		if err != nil {
			if errors.Is(err, ErrSeqConflict) {
				res.Errs[i] = err
				rejected++
				continue
			}
			// A read failure or a corrupt stored record is this replica's
			// own problem; the others may well have accepted the write.
			return ApplyResult{}, fmt.Errorf("persistence: namespace %d: apply entry %d: %w", ns, index, err)
		}
		if err := s.apply(&rs.sp, bb, batch, &enc, p); err != nil {
			return ApplyResult{}, fmt.Errorf("persistence: namespace %d: apply entry %d: %w", ns, index, err)
		}
		applied++
		events += len(enc.eventKeys)
	}
	if err := trimFeed(batch, ns, trim); err != nil {
		return ApplyResult{}, fmt.Errorf("persistence: namespace %d: apply entry %d: batch feed trim: %w", ns, index, err)
	}
	if err := batch.Set(appliedKey(ns), uint64Value(index), nil); err != nil {
		return ApplyResult{}, fmt.Errorf("persistence: namespace %d: apply entry %d: batch applied index: %w", ns, index, err)
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		return ApplyResult{}, fmt.Errorf("persistence: namespace %d: apply entry %d: commit batch: %w", ns, index, err)
	}
	rs.sp.evict(len(bb.pending))
	for k, v := range bb.pending {
		rs.sp.seqs[k] = v
	}
	feedCommitted(&rs.sp, bb)
	rs.applied = index
	s.stats.writes.Add(uint64(applied))
	s.stats.events.Add(uint64(events))
	s.stats.rejected.Add(uint64(rejected))
	return res, nil
}
