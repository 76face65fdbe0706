package cluster

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// Durable timers
//
// The journal is the truth: a timer is stored by the write of the step that
// set it and deleted by the write of the step that handled it (or cancelled
// or replaced it). The scheduler only decides when to deliver:
//
//   - It holds the timers due within a horizon (two polls) in a heap. The
//     heap is fed by polling Journal.DueTimers and by the timer changes of
//     committed steps; a timer set further out is left to a later poll, so
//     memory stays bounded however many sessions carry an 8-hour expiry.
//   - A due timer is delivered as a TimerFired request through the normal
//     request path, which activates a passivated actor. While that fire is in
//     flight the same timer is not fired again (the store still holds it
//     until the handling step commits), whatever the polls say.
//   - The activation claims the fire before stepping: a fire whose timer was
//     replaced or cancelled after it left the heap is stale and never reaches
//     the actor. The step that handles a fire deletes the timer in its own
//     write, so a crash before that write means the timer fires again after
//     restart, and a crash after it means it does not.
//   - A poll reads the store without a lock, so it can return a timer that a
//     step changed while it was reading. Changes made during a poll are
//     noted and win over what that poll read.
//
// Delivery is at least once: a fire that fails (activation unavailable,
// timeout) leaves the timer in the store and a later poll retries it.

type timerKey struct {
	actor persistence.ActorKey
	name  string
}

type timerEntry struct {
	key     timerKey
	due     time.Time
	payload protocol.Message
	index   int
}

// fire is a delivery in flight.
type fire struct {
	due   int64
	stale bool // the timer changed after the fire left the heap
}

type scheduler struct {
	h       *Host
	clock   func() time.Time
	poll    time.Duration
	horizon time.Duration
	batch   int

	mu       sync.Mutex
	heap     timerHeap
	byKey    map[timerKey]*timerEntry
	changed  map[timerKey]struct{} // non-nil while a poll reads the store
	inflight map[timerKey]*fire
	parked   map[timerKey]*timerEntry // came due while a fire of the same timer was in flight

	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	fires sync.WaitGroup
}

func newScheduler(h *Host) *scheduler {
	return &scheduler{
		h:        h,
		clock:    h.cfg.Clock,
		poll:     h.cfg.TimerPoll,
		horizon:  2 * h.cfg.TimerPoll,
		batch:    h.cfg.TimerBatch,
		byKey:    make(map[timerKey]*timerEntry),
		inflight: make(map[timerKey]*fire),
		parked:   make(map[timerKey]*timerEntry),
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func (s *scheduler) start() { go s.run() }

// stop ends the loop and waits for fires in flight (ctx bounds the wait).
func (s *scheduler) stop(ctx context.Context) error {
	close(s.quit)
	<-s.done
	return waitCtx(ctx, &s.fires)
}

func (s *scheduler) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var nextPoll time.Time
	for {
		now := s.clock()
		if !now.Before(nextPoll) {
			full := s.pollOnce(now)
			nextPoll = now.Add(s.poll)
			if full {
				nextPoll = now.Add(s.poll / 8) // more are due: read on soon
			}
		}
		wait := min(s.fireDue(now), nextPoll.Sub(now), s.poll)
		t.Reset(max(wait, time.Millisecond))
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}

// pollOnce merges the journal's timers due within the horizon into the heap.
// It reports whether the read was cut at the batch limit.
func (s *scheduler) pollOnce(now time.Time) bool {
	s.mu.Lock()
	s.changed = make(map[timerKey]struct{})
	s.mu.Unlock()

	var (
		timers []persistence.Timer
		err    error
		lost   map[int]bool // partitions this node does not lead
		cut    bool
	)
	if s.h.parts == nil {
		timers, err = s.h.journal.DueTimers(now.Add(s.horizon), s.batch)
		cut = len(timers) >= s.batch
	} else {
		var failed error
		for p, j := range s.h.parts {
			ts, err := j.DueTimers(now.Add(s.horizon), s.batch)
			if errors.Is(err, partition.ErrNotLeader) {
				if lost == nil {
					lost = make(map[int]bool)
				}
				lost[p] = true
				continue
			}
			if err != nil {
				failed = err
				continue
			}
			cut = cut || len(ts) >= s.batch
			timers = append(timers, ts...)
		}
		if failed != nil {
			s.h.log.Warn("reading due timers of a partition failed; retrying at the next poll", "err", failed)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.changed
	s.changed = nil
	if err != nil {
		s.h.log.Warn("reading due timers failed; retrying at the next poll", "err", err)
		return false
	}
	if lost != nil {
		// Timers of partitions led elsewhere fire there.
		for k := range s.byKey {
			if lost[placement.PartitionOf(k.actor.Kind, k.actor.ID, len(s.h.parts))] {
				s.remove(k)
			}
		}
	}
	for _, t := range timers {
		if _, ok := s.h.kinds[t.Actor.Kind]; !ok {
			continue // a kind this host does not run
		}
		k := timerKey{actor: t.Actor, name: t.Name}
		if _, ok := changed[k]; ok {
			continue
		}
		if f := s.inflight[k]; f != nil && f.due == t.Due.UnixNano() {
			continue
		}
		s.upsert(k, t.Due, t.Payload)
	}
	return cut
}

// fireDue starts a delivery for every timer due at now and returns the time
// until the next one.
func (s *scheduler) fireDue(now time.Time) time.Duration {
	var ready []*timerEntry
	s.mu.Lock()
	for len(s.heap) > 0 && !s.heap[0].due.After(now) {
		e := heap.Pop(&s.heap).(*timerEntry)
		delete(s.byKey, e.key)
		if s.inflight[e.key] != nil {
			s.parked[e.key] = e // one fire per timer at a time
			continue
		}
		s.inflight[e.key] = &fire{due: e.due.UnixNano()}
		ready = append(ready, e)
	}
	next := s.poll
	if len(s.heap) > 0 {
		next = s.heap[0].due.Sub(now)
	}
	s.mu.Unlock()
	for _, e := range ready {
		s.fires.Add(1)
		go s.deliver(e)
	}
	return next
}

func (s *scheduler) deliver(e *timerEntry) {
	defer s.fires.Done()
	err := s.request(e)
	if err != nil {
		s.h.log.Warn("timer delivery failed; it stays stored and fires again",
			"actor", e.key.actor.String(), "timer", e.key.name, "code", actors.CodeOf(err).String(), "err", err)
	}
	s.mu.Lock()
	if f := s.inflight[e.key]; f != nil && f.due == e.due.UnixNano() {
		delete(s.inflight, e.key)
	}
	if p := s.parked[e.key]; p != nil {
		delete(s.parked, e.key)
		s.upsert(p.key, p.due, p.payload)
		s.signal()
	}
	s.mu.Unlock()
}

func (s *scheduler) request(e *timerEntry) error {
	fired := &protocol.TimerFired{Name: e.key.name, DueUnixNano: e.due.UnixNano()}
	if e.payload != nil {
		p, err := protocol.Pack(e.payload)
		if err != nil {
			return err
		}
		fired.Payload = p
	}
	payload, err := protocol.Pack(fired)
	if err != nil {
		return err
	}
	a := e.key.actor
	env := &protocol.Envelope{Kind: a.Kind, Id: a.ID, RequestId: s.h.nextRequestID(), Payload: payload}
	resp, err := s.h.call(context.Background(), a.Kind, a.ID, env, nil)
	if err != nil {
		return err
	}
	return actors.FromProto(resp.GetError())
}

// claim reports whether a TimerFired is the current fire of that timer. The
// activation asks before stepping, on its own goroutine, so a change it
// committed earlier has already marked the fire stale.
func (s *scheduler) claim(a persistence.ActorKey, name string, due int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflight[timerKey{actor: a, name: name}]
	return f != nil && f.due == due && !f.stale
}

// apply takes the timer changes of a committed step.
func (s *scheduler) apply(a persistence.ActorKey, ops []persistence.TimerChange) {
	horizon := s.clock().Add(s.horizon)
	s.mu.Lock()
	defer s.mu.Unlock()
	var first *timerEntry
	if len(s.heap) > 0 {
		first = s.heap[0]
	}
	for _, op := range ops {
		k := timerKey{actor: a, name: op.Name}
		if s.changed != nil {
			s.changed[k] = struct{}{}
		}
		if f := s.inflight[k]; f != nil {
			f.stale = true
		}
		delete(s.parked, k)
		if op.Cancel || op.Due.After(horizon) {
			s.remove(k)
			continue
		}
		s.upsert(k, op.Due, op.Payload)
	}
	if len(s.heap) > 0 && s.heap[0] != first {
		s.signal() // a new earliest timer
	}
}

// upsert and remove need s.mu.
func (s *scheduler) upsert(k timerKey, due time.Time, payload protocol.Message) {
	if e, ok := s.byKey[k]; ok {
		e.due, e.payload = due, payload
		heap.Fix(&s.heap, e.index)
		return
	}
	e := &timerEntry{key: k, due: due, payload: payload}
	heap.Push(&s.heap, e)
	s.byKey[k] = e
}

func (s *scheduler) remove(k timerKey) {
	if e, ok := s.byKey[k]; ok {
		heap.Remove(&s.heap, e.index)
		delete(s.byKey, k)
	}
}

func (s *scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pending is the number of timers held in memory (tests).
func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.heap)
}

// timerHeap orders entries by due time (container/heap).
type timerHeap []*timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}
