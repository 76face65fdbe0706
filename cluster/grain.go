package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// grain is the hosting adapter: one activation of one actor, run by
// protoactor as a cluster grain. It owns the actor's state and journal
// position; protoactor gives it one message at a time.
//
// Per envelope it steps the actor, commits the step's events and timer
// changes to the journal, and only when the commit has returned applies the
// events and lets the reply, sends, timer changes and publications go
// (write-ahead). Any failure that leaves the in-memory state in doubt stops
// the activation; the next message re-activates it from the journal.
type grain struct {
	h    *Host
	kind *hostedKind

	self actors.Identity
	key  persistence.ActorKey

	actor     actors.Actor
	lastSeq   uint64 // journal position: the next write starts at lastSeq+1
	sinceSnap int    // events since the last snapshot (stored or loaded)
	// failure is set when activation failed; every message is answered
	// with it until the activation has stopped.
	failure error

	lastActive time.Time
	idle       *time.Timer
	stopReason string // set when we decided to stop; empty if stopped from outside
	registered bool

	recent recentResponses

	// verifier fences reads when the journal is a Raft partition (nil for
	// a plain store, which has no leader to lose); epoch is the leadership
	// the activation's state was loaded in.
	verifier leaderVerifier
	epoch    uint64
}

// leaderVerifier is implemented by journals that can be deposed (a
// *partition.Partition): a read answered from an activation's memory must
// be confirmed to come from the current leader, in the same leadership the
// state was loaded in, or a deposed leader that has not noticed yet could
// answer with a value the new leader has since changed. Writes need no such
// check: a deposed leader cannot commit.
type leaderVerifier interface {
	// LeaderEpoch identifies this node's current serving leadership, 0
	// when it is not a serving leader.
	LeaderEpoch() uint64
	// VerifyLeader confirms, by a quorum round started after the call,
	// that this node still leads in leadership epoch.
	VerifyLeader(ctx context.Context, epoch uint64) error
}

// isNotLeader reports whether a journal error means "not (yet) the serving
// leader here": the caller should re-resolve the activation and retry.
// partition's not-ready (a new leader still catching up) counts too: a
// retry after a back-off gets there.
func isNotLeader(err error) bool {
	return errors.Is(err, partition.ErrNotLeader) || errors.Is(err, partition.ErrNotReady)
}

// grainProps are the protoactor props of one kind.
func (h *Host) grainProps(k *hostedKind) *actor.Props {
	return actor.PropsFromProducer(
		func() actor.Actor { return &grain{h: h, kind: k} },
		actor.WithMailbox(func() actor.Mailbox {
			return actor.Unbounded(&stopGuard{system: h.system})()
		}),
		actor.WithDispatcher(h.dispatcher),
	)
}

// Receive implements actor.Actor.
func (g *grain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *protocol.Envelope:
		g.receive(ctx, m)
	case *idleCheck:
		g.checkIdle(ctx)
	case *pcluster.ClusterInit:
		g.activate(ctx, m.Identity)
	case *actor.Stopping:
		g.disarmIdle()
	case *actor.Restarting:
		// A panic outside the actor's code (ours are recovered); protoactor
		// builds a fresh grain that reloads from the journal.
		g.disarmIdle()
		g.deactivated(ctx, stopFailed)
	case *actor.Stopped:
		g.deactivated(ctx, g.stopReason)
	}
}

// activate loads the actor from the journal: its snapshot, then the events
// after it. It never runs on partial state: on any failure the activation
// answers every queued message with the error and stops.
func (g *grain) activate(ctx actor.Context, ci *pcluster.ClusterIdentity) {
	g.self = actors.Identity{Kind: ci.GetKind(), ID: ci.GetIdentity()}
	g.key = persistence.ActorKey{Kind: ci.GetKind(), ID: ci.GetIdentity()}
	g.lastActive = time.Now()
	g.registered = true
	g.h.activations.add(g.key, ctx.Self())
	g.kind.m.activations.Inc()
	g.kind.m.active.Inc()

	if err := g.load(); err != nil {
		g.failure = err
		g.h.log.Error("activation failed; answering its queued messages with the error",
			"actor", g.self.String(), "err", err)
		g.stop(ctx, stopFailed, true)
		return
	}
	g.armIdle(ctx)
}

func (g *grain) load() error {
	j := g.h.journalFor(g.key)
	if v, ok := j.(leaderVerifier); ok {
		// Read before the Load: should leadership change in between, the
		// epoch is the older one and every fenced read fails, never the
		// other way round.
		g.verifier, g.epoch = v, v.LeaderEpoch()
	}
	loaded, err := j.Load(g.key)
	if err != nil {
		if isNotLeader(err) {
			return fmt.Errorf("%w: %w", actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_LEADER,
				"%s cannot be activated here: not its partition's serving leader", g.self), err)
		}
		return fmt.Errorf("%w: %w", actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE,
			"%s cannot be activated: its journal could not be read", g.self), err)
	}
	a := g.kind.New(g.self.ID)
	if a == nil {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "kind %s returned no actor", g.self.Kind)
	}
	internal := func(what string, err error) error {
		return fmt.Errorf("%w: %w", actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL,
			"%s cannot be activated: %s failed", g.self, what), err)
	}
	if s := loaded.Snapshot; s != nil {
		if err := guard(func() error { return a.Restore(s.State) }); err != nil {
			return internal(fmt.Sprintf("restoring its snapshot at seq %d", s.Seq), err)
		}
	}
	if err := guard(func() error { return actors.ApplyAll(a, loaded.Events) }); err != nil {
		return internal("replaying its journal", err)
	}
	g.actor = a
	g.lastSeq = loaded.LastSeq
	g.sinceSnap = len(loaded.Events)
	// The stored replies answer requests retried across activations: a
	// command whose outcome was unknown to its caller (leadership lost
	// mid-commit, an answer lost) comes back with the same request id and
	// gets the original answer instead of a second step.
	for _, r := range loaded.Replies {
		resp, ok := r.Response.(*protocol.Response)
		if !ok {
			g.h.log.Warn("stored reply is not a Response; ignoring it", "actor", g.self.String(),
				"request", r.RequestID, "type", protocol.TypeName(r.Response))
			continue
		}
		g.recent.put(r.RequestID, resp)
	}
	return nil
}

// receive answers one envelope.
func (g *grain) receive(ctx actor.Context, env *protocol.Envelope) {
	start := time.Now()
	g.lastActive = start
	if g.failure != nil || g.actor == nil {
		err := g.failure
		if err == nil {
			err = actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, "%s is not active", g.self)
		}
		ctx.Respond(g.errorResponse(err))
		return
	}
	if resp, ok := g.recent.get(env.GetRequestId()); ok {
		ctx.Respond(resp) // a retried duplicate: answer, do not step again
		return
	}
	msg, err := protocol.Unpack(env.GetPayload())
	if err != nil {
		code := protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
		if errors.Is(err, protocol.ErrUnknownType) {
			code = protocol.ErrorCode_ERROR_CODE_UNKNOWN_MESSAGE
		}
		ctx.Respond(g.errorResponse(actors.Errorf(code, "%s cannot decode the message: %v", g.self.Kind, err)))
		return
	}
	resp, effectful := g.handle(ctx, env.GetRequestId(), msg)
	if effectful {
		g.recent.put(env.GetRequestId(), resp)
	}
	end := time.Now()
	g.lastActive = end // a long step (a slow commit) is activity, not idleness
	g.kind.m.latency.Observe(end.Sub(start).Seconds())
	ctx.Respond(resp)
}

// handle steps the actor with msg and carries out the effects, write-ahead.
// effectful reports whether the step changed anything (a retried duplicate
// must then not step again). A step that writes stores its response with
// the write under requestID, so the dedupe outlives the activation.
func (g *grain) handle(ctx actor.Context, requestID string, msg protocol.Message) (resp *protocol.Response, effectful bool) {
	fired, isTimer := msg.(*protocol.TimerFired)
	if isTimer {
		if !g.h.timers.claim(g.key, fired.GetName(), fired.GetDueUnixNano()) {
			// Replaced, cancelled or already consumed since it was
			// scheduled: the actor must not see it.
			return &protocol.Response{}, false
		}
		g.kind.m.timersFired.Inc()
	}

	fx, err := g.step(ctx, msg)
	if err != nil {
		var p *panicError
		if errors.As(err, &p) {
			g.h.log.Error("actor panicked; stopping the activation", "actor", g.self.String(),
				"type", protocol.TypeName(msg), "panic", p.value)
			g.stop(ctx, stopFailed, false)
			return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "%s failed on %s", g.self.Kind, protocol.TypeName(msg))), false
		}
		var domain *actors.Error
		if isTimer && errors.As(err, &domain) {
			// A timer the actor refuses would fire again on every poll for
			// ever: consume it, and say so. (Other errors may be
			// transient; the timer stays and fires again.)
			g.h.log.Warn("actor refused its timer; dropping the timer", "actor", g.self.String(),
				"timer", fired.GetName(), "code", actors.CodeOf(err).String(), "err", err)
			ops := []persistence.TimerChange{{Name: fired.GetName(), Cancel: true}}
			if cerr := g.commit(&persistence.Write{Actor: g.key, FirstSeq: g.lastSeq + 1, Timers: ops}); cerr != nil {
				return g.commitFailed(ctx, cerr), false
			}
			g.h.timers.apply(g.key, ops)
			return g.errorResponse(err), true
		}
		// A refusal is an answer read from the state too (NOT_FOUND, ...).
		if fenced := g.fence(ctx); fenced != nil {
			return fenced, false
		}
		return g.errorResponse(err), false
	}

	ops := timerChanges(fx.Timers)
	if isTimer && !setsTimer(ops, fired.GetName()) {
		// Consuming the timer is part of the step that handled it: same
		// write, so it fires again after a crash unless that step is
		// durable.
		ops = append([]persistence.TimerChange{{Name: fired.GetName(), Cancel: true}}, ops...)
	}
	// The response is known before anything leaves, so that a write can
	// carry it.
	resp = &protocol.Response{}
	packed := true
	if len(fx.Replies) > 0 {
		// Replies after the first have no reader: a request has one answer.
		a, err := protocol.Pack(fx.Replies[0])
		if err != nil {
			g.h.log.Error("cannot encode the actor's reply", "actor", g.self.String(),
				"type", protocol.TypeName(fx.Replies[0]), "err", err)
			resp, packed = g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "%s reply cannot be encoded", g.self.Kind)), false
		} else {
			resp.Message = a
		}
	}

	wrote := false
	if len(fx.Events) > 0 || len(ops) > 0 || len(fx.Emitted) > 0 {
		w := &persistence.Write{Actor: g.key, FirstSeq: g.lastSeq + 1, Events: fx.Events, Timers: ops, Emitted: fx.Emitted}
		// Timer deliveries need no stored reply: nobody waits for it, and
		// the same write consumes the timer, so it is not delivered again.
		// Ids past the store's limit only get the in-memory window.
		if !isTimer && requestID != "" && len(requestID) <= persistence.MaxRequestIDLen {
			w.Reply = &persistence.Reply{RequestID: requestID, Response: resp}
		}
		n := len(fx.Events)
		if n > 0 && (g.sinceSnap+n >= g.h.cfg.SnapshotEvery || snapshotRequired(g.actor, fx.Events)) {
			state, err := g.stateAfter(fx.Events)
			if err != nil {
				// Apply refused events its own Receive produced: nothing
				// is written, and this activation is not trusted further.
				g.h.log.Error("actor cannot apply the events it just produced; stopping the activation",
					"actor", g.self.String(), "type", protocol.TypeName(msg), "err", err)
				g.stop(ctx, stopFailed, false)
				return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "%s failed on %s", g.self.Kind, protocol.TypeName(msg))), false
			}
			w.Snapshot = &persistence.Snapshot{Seq: g.lastSeq + uint64(n), State: state}
		}
		if err := g.commit(w); err != nil {
			return g.commitFailed(ctx, err), false
		}
		wrote = true
		if len(w.Emitted) > 0 {
			g.h.relay.notify()
		}
		g.lastSeq += uint64(n)
		if w.Snapshot != nil {
			g.sinceSnap = 0
		} else {
			g.sinceSnap += n
		}
		if err := guard(func() error { return actors.ApplyAll(g.actor, fx.Events) }); err != nil {
			// The events are durable but this state cannot take them: the
			// journal and the code disagree. Every later activation will
			// fail to load too, which is the point: no running on a state
			// that is not the journal's.
			g.h.log.Error("CRITICAL: committed events do not apply; stopping the activation",
				"actor", g.self.String(), "seq", g.lastSeq, "type", protocol.TypeName(msg), "err", err)
			g.stop(ctx, stopFailed, false)
			return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "%s failed on %s", g.self.Kind, protocol.TypeName(msg))), true
		}
	}

	if !wrote && (len(fx.Replies) > 0 || len(fx.Sends) > 0 || len(fx.Publications) > 0) {
		// Nothing went through the log, so nothing proved this node still
		// leads: confirm it before anything computed from the state leaves.
		if fenced := g.fence(ctx); fenced != nil {
			return fenced, false
		}
	}

	// Durable: now the rest of the step may leave.
	if len(ops) > 0 {
		g.h.timers.apply(g.key, ops)
	}
	for _, p := range fx.Publications {
		g.h.topics.publish(p.Topic, p.Msg)
	}
	if len(fx.Sends) > 0 {
		g.h.deliverSends(g.self, fx.Sends)
	}
	if packed {
		g.kind.m.ok.Inc()
	}
	return resp, wrote || len(fx.Sends) > 0 || len(fx.Publications) > 0
}

// fence confirms, when the journal can be deposed, that this activation
// still runs on its partition's leader in the leadership its state was
// loaded in. It returns nil if so (or if there is nothing to confirm), else
// a NOT_LEADER answer, having stopped the activation: its state may be
// stale, and the caller's retry reaches the new leader.
func (g *grain) fence(ctx actor.Context) *protocol.Response {
	if g.verifier == nil {
		return nil
	}
	vctx, cancel := context.WithTimeout(context.Background(), g.h.cfg.RequestTimeout)
	defer cancel()
	err := g.verifier.VerifyLeader(vctx, g.epoch)
	if err == nil {
		return nil
	}
	g.h.log.Info("leadership not confirmed for a read; stopping the activation", "actor", g.self.String(), "err", err)
	g.stop(ctx, stopFailed, false)
	return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_LEADER,
		"%s: this node is no longer its partition's leader", g.self))
}

func (g *grain) step(ctx actor.Context, msg protocol.Message) (fx *actors.Effects, err error) {
	env := actors.Env{Now: g.h.cfg.Clock(), Entropy: g.h.entropy, Self: g.self, Sender: senderOf(ctx)}
	err = guard(func() error {
		var serr error
		fx, serr = actors.Step(g.actor, env, msg)
		return serr
	})
	return fx, err
}

// stateAfter computes the snapshot the write will carry: the state after
// events, built on a scratch copy because the live state may change only
// after the commit.
func (g *grain) stateAfter(events []protocol.Message) (protocol.Message, error) {
	var out protocol.Message
	err := guard(func() error {
		cur, err := g.actor.Snapshot()
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		scratch := g.kind.New(g.self.ID)
		if err := scratch.Restore(cur); err != nil {
			return fmt.Errorf("restore scratch copy: %w", err)
		}
		if err := actors.ApplyAll(scratch, events); err != nil {
			return err
		}
		out, err = scratch.Snapshot()
		if err != nil {
			return fmt.Errorf("snapshot after events: %w", err)
		}
		return nil
	})
	return out, err
}

func (g *grain) commit(w *persistence.Write) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.h.cfg.RequestTimeout)
	defer cancel()
	return g.h.journalFor(g.key).Commit(ctx, w)
}

// commitFailed answers a step whose write was not made durable. Nothing of
// the step was applied or released; the activation stops at once (queued
// messages get dead letters and are retried on a fresh activation, which
// reloads the journal).
func (g *grain) commitFailed(ctx actor.Context, err error) *protocol.Response {
	g.h.log.Warn("journal commit failed; stopping the activation", "actor", g.self.String(), "err", err)
	g.stop(ctx, stopFailed, false)
	if isNotLeader(err) {
		// Refused here, or proposed and then leadership was lost (outcome
		// unknown): either way the caller retries with the same request id
		// at the new leader, which answers from the stored reply if the
		// write did commit, or steps afresh if it did not.
		return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_LEADER,
			"%s: leadership of its partition moved; the change may or may not have been made, retry", g.self))
	}
	return g.errorResponse(actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE,
		"%s could not make the change durable; nothing was changed", g.self))
}

func (g *grain) errorResponse(err error) *protocol.Response {
	p := actors.ToProto(err)
	g.kind.m.failed(p.GetCode())
	return &protocol.Response{Error: p}
}

// deactivated runs when the activation has stopped (or is being restarted).
func (g *grain) deactivated(ctx actor.Context, reason string) {
	if !g.registered {
		return
	}
	g.registered = false
	if reason == "" {
		reason = stopShutdown
		if !g.h.isStopping() {
			reason = stopEvicted
		}
	}
	g.h.activations.remove(g.key, ctx.Self())
	g.kind.m.active.Dec()
	g.kind.m.stopped(reason)
	g.h.log.Debug("activation stopped", "actor", g.self.String(), "reason", reason)
}

func (h *Host) isStopping() bool {
	h.gate.RLock()
	defer h.gate.RUnlock()
	return h.stopping
}

// senderOf reads the sending actor from the message header.
func senderOf(ctx actor.Context) *actors.Identity {
	hdr := ctx.MessageHeader()
	if hdr == nil {
		return nil
	}
	v := hdr.Get(senderHeader)
	if v == "" {
		return nil
	}
	kind, id, ok := strings.Cut(v, "/")
	if !ok {
		return nil
	}
	return &actors.Identity{Kind: kind, ID: id}
}

func timerChanges(ops []actors.TimerOp) []persistence.TimerChange {
	if len(ops) == 0 {
		return nil
	}
	out := make([]persistence.TimerChange, len(ops))
	for i, op := range ops {
		out[i] = persistence.TimerChange{Name: op.Name, Due: op.Due, Payload: op.Payload, Cancel: op.Cancel}
	}
	return out
}

// setsTimer reports whether ops end with name set (not cancelled).
func setsTimer(ops []persistence.TimerChange, name string) bool {
	set := false
	for _, op := range ops {
		if op.Name == name {
			set = !op.Cancel
		}
	}
	return set
}

// panicError is an actor's panic turned into an error.
type panicError struct{ value any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// guard runs f, turning a panic into a *panicError.
func guard(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r}
		}
	}()
	return f()
}

// recentResponses remembers the answers to the last effectful requests of an
// activation, by request id, so that a retried duplicate is answered without
// stepping twice. It is in memory, per activation, but seeded on activation
// from the replies the journal stores with each write (the last
// persistence.MaxReplies), so retries of writing steps are answered across
// passivation, restarts and leader changes; steps that only send or
// publish are remembered by this activation alone.
type recentResponses struct {
	byID map[string]*protocol.Response
	ring [recentSize]string
	next int
}

const recentSize = persistence.MaxReplies

func (r *recentResponses) get(id string) (*protocol.Response, bool) {
	if id == "" || r.byID == nil {
		return nil, false
	}
	resp, ok := r.byID[id]
	return resp, ok
}

func (r *recentResponses) put(id string, resp *protocol.Response) {
	if id == "" {
		return
	}
	if r.byID == nil {
		r.byID = make(map[string]*protocol.Response, recentSize)
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.byID, old)
	}
	r.ring[r.next] = id
	r.byID[id] = resp
	r.next = (r.next + 1) % recentSize
}

// snapshotRequirer is implemented by actors some of whose events must be
// followed by a snapshot in the same write: writing the snapshot deletes
// the events before it, which is how crypto-shredding erases a key that an
// earlier event carried (actors/user).
type snapshotRequirer interface {
	SnapshotRequired(events []protocol.Message) bool
}

func snapshotRequired(a actors.Actor, events []protocol.Message) bool {
	r, ok := a.(snapshotRequirer)
	return ok && r.SnapshotRequired(events)
}
