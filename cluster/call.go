package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// senderHeader carries the sending actor ("kind/id") on actor-to-actor sends.
// A message header, not an Envelope field, so that it crosses remoting too.
const senderHeader = "ward-sender"

// maxBackoff caps the pause between attempts.
const maxBackoff = 250 * time.Millisecond

// minAttemptWait keeps a split budget from producing attempts too short to
// ever succeed.
const minAttemptWait = 50 * time.Millisecond

// call delivers env to the activation of kind/id and waits for its Response,
// with bounded retries. It is protoactor's cluster Request done over:
// that one sleeps nanoseconds between retries, lets a single timed-out
// attempt use the whole budget and ignores the caller's context.
//
// What is retried: no PID from the identity lookup, a dead letter (the
// activation stopped before our message reached it: passivation, failure,
// shutdown; see stopGuard), a broken connection to the member the attempt
// went to (see remoteWaits) and an attempt timeout. Retrying a timed-out
// attempt can deliver the envelope twice; the activation answers a
// duplicate request id from its recent responses instead of stepping again.
// Each attempt but the last may use half the remaining budget.
//
// An answer with code NOT_LEADER is retried too: the activation ran on a
// node that is not (or no longer) its partition's serving leader, and has
// stopped. The PID is dropped from the cache so that the identity lookup
// resolves the actor afresh, at the new leader once placement has caught
// up. The answer may mean the outcome is unknown (leadership lost while
// the step's write was in flight); resending the same request id is still
// safe, because the write stored its reply: the new leader's activation
// loads it and answers with it instead of stepping again.
func (h *Host) call(ctx context.Context, kind, id string, env *protocol.Envelope, header map[string]string) (*protocol.Response, error) {
	deadline := time.Now().Add(h.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// One reply box for all attempts: a late answer to an earlier attempt is
	// an answer to this request.
	box := h.takeBox()
	clean := false
	defer func() { h.returnBox(box, clean) }()
	msg := &actor.MessageEnvelope{Header: header, Message: env, Sender: box.pid}

	var last error
	var notLeader *notLeaderAnswer // the last NOT_LEADER answer, if any
	sent := 0
	for attempt := 1; ; attempt++ {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, h.giveUp(ctx, kind, id, attempt-1, last, notLeader)
		}
		target := h.pidOf(kind, id)
		if target == nil {
			last = errNoActivation
			h.metrics.retries.WithLabelValues(kind, retryNoActivation).Inc()
		} else {
			wait := remaining
			if attempt < h.cfg.MaxAttempts {
				wait = max(remaining/2, min(minAttemptWait, remaining))
			}
			var (
				outcome outcome
				resp    *protocol.Response
				err     error
			)
			remote := h.awaitFrom(box, target, kind, id)
			if remote && !h.placed(kind, id, target) {
				// The connection broke between pidOf and awaitFrom: the
				// lookup marks the address before the Host's watcher
				// signals the waiting boxes, so checking again after
				// registering leaves no gap in which a send could go
				// unsignalled to a dead member.
				outcome, err = retry, errEndpointLost
			} else {
				h.system.Root.Send(target, msg)
				sent++
				outcome, resp, err = h.await(ctx, box, wait)
			}
			if remote {
				h.awaiting.forget(box, target.GetAddress())
			}
			switch outcome {
			case answered:
				if e := resp.GetError(); e.GetCode() == protocol.ErrorCode_ERROR_CODE_NOT_LEADER {
					notLeader = &notLeaderAnswer{msg: e.GetMessage()}
					err = notLeader
					break // and retry
				}
				// One message sent, one answer taken: nothing more can
				// arrive, so the box may serve another request.
				clean = sent == 1
				return resp, nil
			case failed:
				return nil, err
			case canceled:
				return nil, h.giveUp(ctx, kind, id, attempt, last, notLeader)
			}
			h.metrics.retries.WithLabelValues(kind, retryReason(err)).Inc()
			last = err
			h.cluster.PidCache.RemoveByValue(id, kind, target)
		}
		if attempt >= h.cfg.MaxAttempts {
			return nil, h.giveUp(ctx, kind, id, attempt, last, notLeader)
		}
		if err := sleepCtx(ctx, h.backoff(attempt), deadline); err != nil {
			return nil, h.giveUp(ctx, kind, id, attempt, last, notLeader)
		}
	}
}

type outcome int

const (
	answered outcome = iota // resp is the answer
	retry                   // err says why another attempt may succeed
	failed                  // err is final
	canceled                // the caller's context ended
)

// await waits for one attempt's answer.
func (h *Host) await(ctx context.Context, box *replyBox, wait time.Duration) (outcome, *protocol.Response, error) {
	t := box.timer
	t.Reset(wait) // since Go 1.23 a stopped or fired timer's channel holds nothing stale
	defer t.Stop()
	select {
	case m := <-box.ch:
		switch r := m.(type) {
		case *protocol.Response:
			return answered, r, nil
		case *actor.DeadLetterResponse:
			return retry, nil, errDeadLetter
		default:
			return failed, nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "activation answered with %T, want a Response", m)
		}
	case <-box.lost:
		return retry, nil, errEndpointLost
	case <-t.C:
		return retry, nil, fmt.Errorf("%w (%s)", errAttemptTimeout, wait)
	case <-ctx.Done():
		return canceled, nil, nil
	}
}

var errNoActivation = errors.New("identity lookup found no activation")

// errAttemptTimeout is an attempt that got no answer within its wait.
var errAttemptTimeout = errors.New("no answer within the attempt's wait")

func retryReason(err error) string {
	var nl *notLeaderAnswer
	switch {
	case errors.As(err, &nl):
		return retryNotLeader
	case errors.Is(err, errDeadLetter):
		return retryDeadLetter
	case errors.Is(err, errAttemptTimeout):
		return retryTimeout
	case errors.Is(err, errEndpointLost):
		return retryEndpointLost
	}
	return retryNoActivation
}

var errDeadLetter = errors.New("activation gone (dead letter)")

// errEndpointLost: the connection to the member holding the activation broke
// while we waited, so the message or its answer may be lost with it.
var errEndpointLost = errors.New("connection to the activation's member lost")

// notLeaderAnswer is a NOT_LEADER answer taken as a reason to retry.
type notLeaderAnswer struct{ msg string }

func (e *notLeaderAnswer) Error() string { return "not the partition leader: " + e.msg }

// giveUp builds the error for a request that got no answer: UNAVAILABLE,
// and also the context's error when that is why (our own deadline is the
// context's when it is the earlier one, and may pass a hair before the
// context notices). When some attempt was answered NOT_LEADER the error
// says so even if a later attempt failed otherwise (the stopped
// activation's PID typically yields a dead letter next): leadership moving
// is the cause worth reporting.
func (h *Host) giveUp(ctx context.Context, kind, id string, attempts int, last error, notLeader *notLeaderAnswer) error {
	if last == nil {
		last = errors.New("none yet")
	}
	what := "no answer"
	if notLeader != nil {
		// Answered, but by activations that could not serve: leadership is
		// moving or placement has not caught up with it.
		what = "no leader answered"
		if !errors.Is(last, notLeader) {
			last = fmt.Errorf("%w; before that: %w", last, notLeader)
		}
	}
	base := actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE,
		"%s from %s/%s after %d attempts: %v", what, kind, id, attempts, last)
	cause := ctx.Err()
	if d, ok := ctx.Deadline(); cause == nil && ok && !time.Now().Before(d) {
		cause = context.DeadlineExceeded
	}
	if cause != nil {
		return fmt.Errorf("%w (%w)", base, cause)
	}
	return base
}

// backoff doubles per attempt up to maxBackoff, with jitter so that callers
// that failed together do not retry together.
func (h *Host) backoff(attempt int) time.Duration {
	d := h.cfg.RetryBackoff << min(attempt-1, 16)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration, deadline time.Time) error {
	if until := time.Until(deadline); d > until {
		d = until
	}
	if d <= 0 {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cacheChecker is an identity lookup that can tell whether a cached PID is
// still where it would place the identity now.
type cacheChecker interface {
	Placed(kind, identity string, pid *actor.PID) bool
}

// placed asks the identity lookup, when it can tell, whether pid is still
// where the identity is placed and reachable.
func (h *Host) placed(kind, id string, pid *actor.PID) bool {
	c, ok := h.cfg.IdentityLookup.(cacheChecker)
	return !ok || c.Placed(kind, id, pid)
}

// pidOf finds the activation's PID: protoactor's cache first, else the
// identity lookup (which activates it if needed).
//
// A cached PID on a member that no longer leads the identity's partition is
// dropped before use. Left in the cache, it costs the first attempt of the
// next request: a deposed leader answers with a dead letter at once, but a
// crashed one never answers, and that attempt waits half the request's
// budget (2.5 s by default) for nothing, once per identity and member.
func (h *Host) pidOf(kind, id string) *actor.PID {
	if pid, ok := h.cluster.PidCache.Get(id, kind); ok {
		if h.placed(kind, id, pid) {
			return pid
		}
		h.cluster.PidCache.RemoveByValue(id, kind, pid)
	}
	pid := h.cluster.Get(id, kind)
	if pid != nil {
		h.cluster.PidCache.Set(id, kind, pid)
	}
	return pid
}

// replyBox is a Process in the actor system's registry that receives the
// answers to one request, so that a PID (local now, remote later) can reply
// to it. Unlike protoactor's Future it can be waited on together with a
// context. Boxes are reused, with their attempt timer: registering a
// process costs a concurrent-map insert and an id, which showed at 15% of a
// request's CPU.
type replyBox struct {
	ch    chan any
	pid   *actor.PID
	timer *time.Timer
	// lost is signalled when the connection to the member the current
	// attempt went to breaks (see remoteWaits).
	lost chan struct{}
}

// remoteWaits knows which reply boxes wait for an answer from which
// member address, so that a broken connection ends their attempts at once.
// Without it, a request in flight to a member that crashed waits out its
// attempt (half the request's budget), and a leader's crash costs every
// caller that much on top of the election.
//
// It also ends the attempts whose target the identity lookup no longer
// places there (placementMoved): when a network partition cuts a leader off,
// no connection breaks, and the attempt would otherwise wait out its time
// although the majority has elected a new leader.
type remoteWaits struct {
	mu     sync.Mutex
	byAddr map[string]map[*replyBox]waitingOn
}

// waitingOn is the activation an attempt was sent to.
type waitingOn struct {
	kind, id string
	pid      *actor.PID
}

// awaitFrom registers box as waiting on target (the activation of kind/id)
// when target is on another member, and reports whether it did (the caller
// then calls forget after the wait). It drops a signal left over from an
// earlier attempt.
func (h *Host) awaitFrom(box *replyBox, target *actor.PID, kind, id string) bool {
	select {
	case <-box.lost:
	default:
	}
	addr := target.GetAddress()
	if addr == "" || addr == h.system.Address() {
		return false
	}
	w := &h.awaiting
	w.mu.Lock()
	if w.byAddr == nil {
		w.byAddr = make(map[string]map[*replyBox]waitingOn)
	}
	boxes := w.byAddr[addr]
	if boxes == nil {
		boxes = make(map[*replyBox]waitingOn)
		w.byAddr[addr] = boxes
	}
	boxes[box] = waitingOn{kind: kind, id: id, pid: target}
	w.mu.Unlock()
	return true
}

func (w *remoteWaits) forget(box *replyBox, addr string) {
	w.mu.Lock()
	if boxes := w.byAddr[addr]; boxes != nil {
		delete(boxes, box)
		if len(boxes) == 0 {
			delete(w.byAddr, addr)
		}
	}
	w.mu.Unlock()
}

// endpointLost ends the wait of every attempt that went to addr.
func (w *remoteWaits) endpointLost(addr string) int {
	w.mu.Lock()
	boxes := w.byAddr[addr]
	delete(w.byAddr, addr)
	w.mu.Unlock()
	for b := range boxes {
		b.endWait()
	}
	return len(boxes)
}

// endWait ends the box's current attempt (see remoteWaits); a signal already
// pending is enough.
func (b *replyBox) endWait() {
	select {
	case b.lost <- struct{}{}:
	default:
	}
}

// placementMoved ends the wait of every attempt whose target placed no
// longer reports where the identity is placed.
func (w *remoteWaits) placementMoved(placed func(kind, id string, pid *actor.PID) bool) int {
	var moved []*replyBox
	w.mu.Lock()
	for addr, boxes := range w.byAddr {
		for b, on := range boxes {
			if !placed(on.kind, on.id, on.pid) {
				moved = append(moved, b)
				delete(boxes, b)
			}
		}
		if len(boxes) == 0 {
			delete(w.byAddr, addr)
		}
	}
	w.mu.Unlock()
	for _, b := range moved {
		b.endWait()
	}
	return len(moved)
}

// placementWatcher is an identity lookup that says when its placement may
// have changed (a partition's leader moved).
type placementWatcher interface {
	cacheChecker
	WatchPlacement(fn func()) (cancel func())
}

// watchPlacement re-checks the waiting attempts after every placement
// change, on a goroutine of its own (the lookup calls fn on the goroutine
// that changed the placement, which must not wait for us). It returns a
// function that stops it.
func (h *Host) watchPlacement() (stop func()) {
	pw, ok := h.cfg.IdentityLookup.(placementWatcher)
	if !ok {
		return func() {}
	}
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	cancel := pw.WatchPlacement(func() {
		select {
		case changed <- struct{}{}:
		default: // a re-check is already due
		}
	})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-changed:
				if n := h.awaiting.placementMoved(pw.Placed); n > 0 {
					h.log.Debug("placement moved: retrying the requests waiting on the old place", "requests", n)
				}
			}
		}
	}()
	return func() {
		cancel()
		close(done)
	}
}

// watchEndpoints follows protoactor's remoting: it publishes
// EndpointTerminatedEvent when the stream to a member breaks (the member
// crashed or closed the connection), and everything sent on it may be gone.
func (h *Host) watchEndpoints() {
	h.system.EventStream.Subscribe(func(evt any) {
		if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
			if n := h.awaiting.endpointLost(e.Address); n > 0 {
				h.log.Debug("connection to a member lost: retrying the requests waiting on it",
					"address", e.Address, "requests", n)
			}
		}
	})
}

// replyBoxes is the free list. A mutex and a slice rather than a channel or
// a sync.Pool: a buffered channel's lock showed as the hottest contention
// under parallel load, and a Pool drops boxes silently, which would leak
// their registry entries.
type replyBoxes struct {
	mu   sync.Mutex
	free []*replyBox
}

// takeBox returns a free reply box, registering a new one if none is free.
func (h *Host) takeBox() *replyBox {
	p := &h.boxes
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	b := &replyBox{ch: make(chan any, 4), timer: time.NewTimer(time.Hour), lost: make(chan struct{}, 1)}
	b.timer.Stop()
	reg := h.system.ProcessRegistry
	b.pid, _ = reg.Add(b, "ward-reply$"+reg.NextId())
	return b
}

// returnBox keeps a box for reuse only when clean: exactly one message was
// sent with it as sender and its one answer was taken. Any other box may
// still receive a late answer meant for its old request, so it is
// unregistered (late answers then go to dead letters).
func (h *Host) returnBox(b *replyBox, clean bool) {
	if clean {
		p := &h.boxes
		p.mu.Lock()
		if len(p.free) < maxFreeReplyBoxes {
			p.free = append(p.free, b)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	h.system.ProcessRegistry.Remove(b.pid)
}

func (b *replyBox) SendUserMessage(_ *actor.PID, m any) {
	_, msg, _ := actor.UnwrapEnvelope(m)
	select {
	case b.ch <- msg:
	default: // duplicates of an answer already there
	}
}

func (b *replyBox) SendSystemMessage(*actor.PID, any) {}
func (b *replyBox) Stop(*actor.PID)                   {}
