package persistence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Group commit
//
// Callers encode their Write (protobuf marshalling, keys, checksums) on their
// own goroutine, then queue it. A single committer goroutine takes queued
// writes, validates each one against the stored journal plus the writes
// already accepted into the same batch, adds the valid ones to one pebble
// batch, commits it with one synced WAL write, and wakes every caller.
//
// When to cut a batch:
//   - After each batch the committer estimates how many callers are active:
//     the writes it just answered plus the writes that queued up during its
//     sync. Callers in a closed loop (an actor commits, gets its answer,
//     commits again) come straight back, so that is the size of the next
//     batch worth waiting for.
//   - The committer then takes the queue as soon as it holds that many
//     writes, or when GroupCommitWindow has passed since the committer became
//     free (or since the first write arrived, if later), whichever is first.
//     The window thus bounds the extra latency any write pays for batching.
//   - A lone caller (estimate 1) is committed at once and pays no window.
//     A drop in load costs at most one window, after which the estimate has
//     followed it down.
//   - A batch never exceeds MaxBatchWrites; a negative window disables all
//     waiting (commit whatever is queued as soon as the committer is free).
//
// The simpler rule "commit at once whatever queued during the last sync"
// splits 64 closed-loop callers into two cohorts of 32 that alternate, one
// syncing while the other queues: half the writes per fsync. Waiting for the
// estimate merges them into one batch per fsync (measured here: about 62
// writes per batch instead of 32, and 75-98k instead of 51-81k events/s).

type reqState uint8

const (
	reqQueued reqState = iota
	reqTaken
	reqAbandoned
)

type request struct {
	w      encodedWrite
	queued time.Time
	done   chan error
	state  reqState // guarded by Store.mu
}

type encodedWrite struct {
	key       ActorKey
	actorStr  string // encodeActor(key), the cache key
	actor     []byte
	firstSeq  uint64
	eventKeys [][]byte
	eventVals [][]byte
	snap      *encodedSnapshot
	timers    []encodedTimer
	reply     *encodedReply
	emitted   [][]byte // framed EventEnvelope bytes; positions chosen by apply
}

// isEmpty reports whether the write has nothing to store.
func (w *encodedWrite) isEmpty() bool {
	return len(w.eventKeys) == 0 && w.snap == nil && len(w.timers) == 0 && w.reply == nil && len(w.emitted) == 0
}

type encodedReply struct {
	value []byte // framed; the key is chosen by apply
}

type encodedSnapshot struct {
	seq   uint64
	key   []byte
	value []byte
}

type encodedTimer struct {
	name     string
	cancel   bool
	due      int64
	key      []byte // primary key
	keyStr   string
	value    []byte // primary value
	dueKey   []byte
	dueValue []byte
}

// actorSeqs is what validation needs to know about an actor's journal.
type actorSeqs struct {
	last uint64 // last stored seq (events or snapshot)
	snap uint64 // seq of the stored snapshot, 0 if none
	// replies is the number of the actor's last stored reply (0 if none),
	// valid when repliesKnown: read lazily, by the first write that
	// carries a reply, so that writes without one pay nothing for it.
	replies      uint64
	repliesKnown bool
}

// timerState is a timer's stored due time as of the batch being built.
type timerState struct {
	due    int64
	exists bool
}

// maxCachedActors bounds the committer's seq cache. A miss costs two reads,
// so the bound only needs to cover the actors that are active at once.
const maxCachedActors = 1 << 16

// Commit makes w durable: when it returns nil the write is synced to disk.
//
// Context cancellation is honoured only while the write is still waiting in
// the queue, in which case Commit returns ctx.Err() and nothing was written.
// Once the committer has taken the write, Commit waits for the outcome, so
// an error return always means the write was not applied.
func (s *Store) Commit(ctx context.Context, w *Write) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	enc, err := encodeWrite(s.ns, w)
	if err != nil {
		return err
	}
	if enc.isEmpty() {
		return nil // nothing to make durable
	}
	r := &request{w: enc, done: make(chan error, 1), queued: start}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return fmt.Errorf("persistence: commit %s: %w", w.Actor, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	s.queue = append(s.queue, r)
	n, target := len(s.queue), s.waitTarget
	s.mu.Unlock()
	if n == 1 || n >= target {
		s.signal()
	}

	select {
	case err = <-r.done:
	case <-ctx.Done():
		s.mu.Lock()
		if r.state == reqQueued {
			r.state = reqAbandoned
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Unlock()
		err = <-r.done
	}
	s.metrics.commitLat.Observe(time.Since(start).Seconds())
	return err
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// encodeWrite validates w's shape and does all the CPU work of the write
// (marshalling, keys, checksums) on the caller's goroutine, so that the single
// committer only validates sequence numbers and copies bytes into the batch.
// It goes through the same marshalled form as a replicated write, so both
// paths accept exactly the same writes and lay out exactly the same keys.
func encodeWrite(ns uint32, w *Write) (encodedWrite, error) {
	jw, err := marshalWrite("commit", w)
	if err != nil {
		return encodedWrite{}, err
	}
	return layoutWrite(ns, jw), nil
}

// run is the committer goroutine.
func (s *Store) run() {
	defer close(s.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	b := &batchBuilder{
		pending: make(map[string]actorSeqs),
		timers:  make(map[string]timerState),
	}
	target, freeAt := 1, time.Now()
	for {
		reqs, ok := s.gather(timer, target, freeAt)
		if !ok {
			return
		}
		if len(reqs) == 0 {
			continue
		}
		queued := s.commitBatch(b, reqs)
		clear(reqs) // let answered requests be collected
		// Everyone in this batch is about to get an answer, and everyone
		// still queued is waiting: that many callers are active.
		target, freeAt = len(reqs)+queued, time.Now()
	}
}

// gather blocks until there is work and returns the next batch of requests,
// following the policy described at the top of this file. It returns false
// when the store is closing and the queue is drained.
func (s *Store) gather(timer *time.Timer, target int, freeAt time.Time) ([]*request, bool) {
	s.mu.Lock()
	for len(s.queue) == 0 {
		if s.closing {
			s.mu.Unlock()
			return nil, false
		}
		s.mu.Unlock()
		<-s.wake
		s.mu.Lock()
	}
	target = min(max(target, 1), s.maxBatch)
	if s.window > 0 && len(s.queue) < target && !s.closing {
		// The window counts from when the committer became free (or from
		// the first arrival, if later): writes that queued during the last
		// sync have waited for the committer, not for this window.
		start := freeAt
		if q := s.queue[0].queued; q.After(start) {
			start = q
		}
		deadline := start.Add(s.window)
		s.waitTarget = target
		for len(s.queue) < target && !s.closing {
			d := time.Until(deadline)
			if d <= 0 {
				break
			}
			s.mu.Unlock()
			timer.Reset(d)
			select {
			case <-s.wake:
			case <-timer.C:
			}
			timer.Stop()
			s.mu.Lock()
		}
		// While committing we are not waiting for a count, so enqueuers
		// only need to wake us when the queue goes from empty to non-empty.
		s.waitTarget = math.MaxInt
	}
	n := min(len(s.queue), s.maxBatch)
	reqs := s.taken[:0]
	for _, r := range s.queue[:n] {
		if r.state == reqAbandoned {
			continue
		}
		r.state = reqTaken
		reqs = append(reqs, r)
	}
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	s.mu.Unlock()
	s.taken = reqs
	return reqs, true
}

func (s *Store) queueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// batchBuilder is the committer's scratch state for one batch: the journal
// and timer state as the batch's accepted writes leave it.
type batchBuilder struct {
	pending  map[string]actorSeqs
	timers   map[string]timerState
	accepted []*request
	// feedHead is the namespace's feed head after this batch's writes,
	// valid when feedDirty.
	feedHead  uint64
	feedDirty bool
}

// commitBatch validates, batches and commits reqs, answers every one of
// them, and returns how many writes queued up meanwhile.
func (s *Store) commitBatch(bb *batchBuilder, reqs []*request) (queuedAtSync int) {
	clear(bb.pending)
	clear(bb.timers)
	bb.feedDirty = false
	accepted := bb.accepted[:0]
	batch := s.db.NewBatch()
	defer func() { _ = batch.Close() }()
	events := 0
	for i, r := range reqs {
		p, err := s.plan(s.local, bb, &r.w)
		if err != nil {
			s.stats.rejected.Add(1)
			s.metrics.rejectsTotal.Inc()
			r.done <- err
			continue
		}
		if err := s.apply(s.local, bb, batch, &r.w, p); err != nil {
			// pebble refuses a batch operation only when the batch is
			// unusable (closed, or past its 4 GiB limit). Nothing of this
			// batch is committed: fail it whole.
			for _, a := range accepted {
				a.done <- err
			}
			for _, rest := range reqs[i:] {
				rest.done <- err
			}
			clear(accepted)
			clear(s.seqs)
			s.local.feedHeadKnown = false
			return s.queueLen()
		}
		accepted = append(accepted, r)
		events += len(r.w.eventKeys)
	}
	bb.accepted = accepted
	if len(accepted) == 0 {
		return s.queueLen()
	}
	t0 := time.Now()
	err := batch.Commit(pebble.Sync)
	s.metrics.syncLat.Observe(time.Since(t0).Seconds())
	queuedAtSync = s.queueLen()
	if err != nil {
		err = fmt.Errorf("persistence: commit batch of %d writes: %w", len(accepted), err)
		s.log.Error("batch commit failed", "writes", len(accepted), "err", err)
		// The stored state is now uncertain; re-read it for later batches.
		clear(s.seqs)
		s.local.feedHeadKnown = false
	} else {
		if len(s.seqs)+len(bb.pending) > maxCachedActors {
			s.evictSeqs(len(bb.pending))
		}
		for k, v := range bb.pending {
			s.seqs[k] = v
		}
		feedCommitted(s.local, bb)
		s.stats.batches.Add(1)
		s.stats.writes.Add(uint64(len(accepted)))
		s.stats.events.Add(uint64(events))
		s.metrics.batchWrites.Observe(float64(len(accepted)))
		s.metrics.batchEvents.Observe(float64(events))
		s.metrics.eventsTotal.Add(float64(events))
	}
	for _, r := range accepted {
		r.done <- err
	}
	clear(accepted)
	return queuedAtSync
}

// evictSeqs drops arbitrary cache entries to make room for n more; any
// entry can be re-read from the database.
func (s *Store) evictSeqs(n int) {
	drop := len(s.seqs)/8 + n
	for k := range s.seqs {
		if drop <= 0 {
			return
		}
		delete(s.seqs, k)
		drop--
	}
}

// plan is what validation found out about one write.
type plan struct {
	seqs    actorSeqs
	oldDues []timerState // per timer change, the due time it replaces
}

// plan validates w against the stored journal and the batch so far, and
// looks up everything apply needs. It changes nothing, so a refused write
// fails alone.
func (s *Store) plan(sp *journalSpace, bb *batchBuilder, w *encodedWrite) (plan, error) {
	st, err := s.actorSeqs(sp, bb, w)
	if err != nil {
		return plan{}, err
	}
	n := uint64(len(w.eventKeys))
	if n > 0 && w.firstSeq != st.last+1 {
		return plan{}, fmt.Errorf("persistence: commit %s: write starts at seq %d but the journal ends at %d: %w", w.key, w.firstSeq, st.last, ErrSeqConflict)
	}
	if w.snap != nil {
		if last := st.last + n; w.snap.seq > last {
			return plan{}, fmt.Errorf("persistence: commit %s: snapshot at seq %d is past the journal's end at %d: %w", w.key, w.snap.seq, last, ErrSeqConflict)
		}
		if w.snap.seq < st.snap {
			return plan{}, fmt.Errorf("persistence: commit %s: snapshot at seq %d is older than the stored one at %d: %w", w.key, w.snap.seq, st.snap, ErrSeqConflict)
		}
	}
	if w.reply != nil && !st.repliesKnown {
		n, err := s.lastReply(sp, w)
		if err != nil {
			return plan{}, err
		}
		st.replies, st.repliesKnown = n, true
	}
	p := plan{seqs: st}
	if len(w.timers) > 0 {
		p.oldDues = make([]timerState, len(w.timers))
	}
	for i := range w.timers {
		t := &w.timers[i]
		found := false
		// An earlier change to the same name in this write wins over the
		// batch and the store.
		for j := i - 1; j >= 0; j-- {
			if w.timers[j].keyStr == t.keyStr {
				p.oldDues[i] = timerState{due: w.timers[j].due, exists: !w.timers[j].cancel}
				found = true
				break
			}
		}
		if found {
			continue
		}
		if ts, ok := bb.timers[t.keyStr]; ok {
			p.oldDues[i] = ts
			continue
		}
		v, closer, err := s.db.Get(t.key)
		switch {
		case err == nil:
			due, derr := decodeTimerValue(v, fmt.Sprintf("timer %s %q", w.key, t.name))
			_ = closer.Close()
			if derr != nil {
				return plan{}, derr
			}
			p.oldDues[i] = timerState{due: due, exists: true}
		case !errors.Is(err, pebble.ErrNotFound):
			return plan{}, fmt.Errorf("persistence: commit %s: read timer %q: %w", w.key, t.name, pebbleErr(err))
		}
	}
	return p, nil
}

// actorSeqs returns the actor's journal position as of the batch being
// built: from the batch, else the cache, else the database (which holds
// every earlier batch, since only one goroutine at a time writes a
// namespace: the committer for the local one, the Raft apply path holding
// the replicaSpace lock for a replicated one).
func (s *Store) actorSeqs(sp *journalSpace, bb *batchBuilder, w *encodedWrite) (actorSeqs, error) {
	if st, ok := bb.pending[w.actorStr]; ok {
		return st, nil
	}
	if st, ok := sp.seqs[w.actorStr]; ok {
		return st, nil
	}
	var st actorSeqs
	v, closer, err := s.db.Get(snapshotKey(sp.ns, w.actor))
	switch {
	case err == nil:
		seq, _, derr := decodeSnapshotValue(v, "snapshot "+w.key.String())
		_ = closer.Close()
		if derr != nil {
			return st, derr
		}
		st.snap, st.last = seq, seq
	case !errors.Is(err, pebble.ErrNotFound):
		return st, fmt.Errorf("persistence: commit %s: read snapshot: %w", w.key, pebbleErr(err))
	}
	prefix := eventPrefix(sp.ns, w.actor)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return st, fmt.Errorf("persistence: commit %s: %w", w.key, err)
	}
	if it.Last() {
		_, _, seq, derr := decodeEventKey(it.Key())
		if derr == nil && len(it.Key()) != len(prefix)+8 {
			derr = fmt.Errorf("%w: event key of %d bytes, want %d", errBadKey, len(it.Key()), len(prefix)+8)
		}
		if derr != nil {
			err := fmt.Errorf("persistence: commit %s: last event key %x: %w: %w", w.key, it.Key(), ErrCorrupt, derr)
			_ = it.Close()
			return st, err
		}
		st.last = max(st.last, seq)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return st, fmt.Errorf("persistence: commit %s: find last event: %w", w.key, pebbleErr(err))
	}
	sp.seqs[w.actorStr] = st
	return st, nil
}

// lastReply reads the number of the actor's last stored reply, 0 if none.
func (s *Store) lastReply(sp *journalSpace, w *encodedWrite) (uint64, error) {
	prefix := replyPrefix(sp.ns, w.actor)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, fmt.Errorf("persistence: commit %s: %w", w.key, err)
	}
	var n uint64
	if it.Last() {
		k := it.Key()
		if len(k) != len(prefix)+8 {
			err := fmt.Errorf("persistence: commit %s: reply key %x is %d bytes, want %d: %w", w.key, k, len(k), len(prefix)+8, ErrCorrupt)
			_ = it.Close()
			return 0, err
		}
		n = binary.BigEndian.Uint64(k[len(prefix):])
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("persistence: commit %s: find last reply: %w", w.key, pebbleErr(err))
	}
	return n, nil
}

// apply adds a planned write to the batch and records its effect in bb.
func (s *Store) apply(sp *journalSpace, bb *batchBuilder, b *pebble.Batch, w *encodedWrite, p plan) error {
	st := p.seqs
	newLast := st.last + uint64(len(w.eventKeys))
	for i := range w.eventKeys {
		// Events the snapshot of this same write covers would be deleted
		// by it at once; do not write them at all.
		if w.snap != nil && w.firstSeq+uint64(i) <= w.snap.seq {
			continue
		}
		if err := b.Set(w.eventKeys[i], w.eventVals[i], nil); err != nil {
			return fmt.Errorf("persistence: commit %s: batch event: %w", w.key, err)
		}
	}
	newSnap := st.snap
	if w.snap != nil {
		if err := b.Set(w.snap.key, w.snap.value, nil); err != nil {
			return fmt.Errorf("persistence: commit %s: batch snapshot: %w", w.key, err)
		}
		// Events up to the old snapshot are already gone; delete the
		// stored ones from there up to the new snapshot's seq.
		if w.snap.seq > st.snap && st.last > st.snap {
			start := eventKey(sp.ns, w.actor, st.snap+1)
			endSeq := min(w.snap.seq, st.last)
			var end []byte
			if endSeq == math.MaxUint64 {
				end = prefixEnd(eventPrefix(sp.ns, w.actor))
			} else {
				end = eventKey(sp.ns, w.actor, endSeq+1) // DeleteRange's end is exclusive
			}
			if err := b.DeleteRange(start, end, nil); err != nil {
				return fmt.Errorf("persistence: commit %s: batch delete events: %w", w.key, err)
			}
		}
		newSnap = w.snap.seq
	}
	for i := range w.timers {
		t := &w.timers[i]
		if old := p.oldDues[i]; old.exists {
			if err := b.Delete(dueKey(sp.ns, old.due, w.actor, t.name), nil); err != nil {
				return fmt.Errorf("persistence: commit %s: batch timer %q: %w", w.key, t.name, err)
			}
		}
		var err error
		if t.cancel {
			if p.oldDues[i].exists {
				err = b.Delete(t.key, nil)
			}
			bb.timers[t.keyStr] = timerState{}
		} else {
			err = errors.Join(b.Set(t.key, t.value, nil), b.Set(t.dueKey, t.dueValue, nil))
			bb.timers[t.keyStr] = timerState{due: t.due, exists: true}
		}
		if err != nil {
			return fmt.Errorf("persistence: commit %s: batch timer %q: %w", w.key, t.name, err)
		}
	}
	replies := st.replies
	if w.reply != nil {
		replies++
		if err := b.Set(replyKey(sp.ns, w.actor, replies), w.reply.value, nil); err != nil {
			return fmt.Errorf("persistence: commit %s: batch reply: %w", w.key, err)
		}
		// One reply in, the one MaxReplies older out: the actor never holds
		// more than MaxReplies, and the key to delete follows from the
		// count alone, the same on every replica.
		if replies > MaxReplies {
			if err := b.Delete(replyKey(sp.ns, w.actor, replies-MaxReplies), nil); err != nil {
				return fmt.Errorf("persistence: commit %s: batch prune reply: %w", w.key, err)
			}
		}
	}
	if err := s.applyFeed(sp, bb, b, w); err != nil {
		return err
	}
	bb.pending[w.actorStr] = actorSeqs{last: newLast, snap: newSnap, replies: replies, repliesKnown: st.repliesKnown}
	return nil
}
