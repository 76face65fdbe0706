package simulation

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// Host timing. Ranges are drawn uniformly from the world's net stream.
const (
	diskMin, diskMax       = 200 * time.Microsecond, 3 * time.Millisecond
	localMin, localMax     = 100 * time.Microsecond, 2 * time.Millisecond
	timerDelayMax          = 50 * time.Millisecond
	idleMin, idleMax       = 500 * time.Millisecond, 3 * time.Second
	restartMin, restartMax = 10 * time.Millisecond, time.Second
	// forcedPassivation is the chance that an actor is passivated right
	// after a step, to compare its memory with the store while it is busy
	// rather than only once it has gone quiet.
	forcedPassivation = 0.02
	// reloadLimit bounds the timers read back after a crash; a run never
	// gets near it, and reaching it fails the run rather than losing timers.
	reloadLimit = 1 << 20
)

// farFuture is "every timer" for DueTimers.
var farFuture = Epoch.AddDate(100, 0, 0)

// host is one simulated node: the same write-ahead hosting the production
// runtime does (load on activation, step, commit, apply, release), over a
// disk that can lose power.
type host struct {
	w     *world
	kind  actors.Kind
	disk  disk
	store Store
	up    bool
	// incarnation changes on every crash; callbacks scheduled by an earlier
	// incarnation find it changed and do nothing, which is how in-memory
	// work dies with the node.
	incarnation uint64
	acts        map[actors.Identity]*activation
	// timers mirrors the durable timers of this incarnation: filled from
	// commits, and from the store after a restart.
	timers     map[timerKey]*timerEntry
	timerToken uint64
	// shadow is the committed truth: every write whose Commit returned nil,
	// applied to a separate copy of each actor. The store must always agree
	// with it, and nothing may be applied beyond it.
	shadow map[actors.Identity]*shadowActor
}

type activation struct {
	id        actors.Identity
	actor     actors.Actor
	lastSeq   uint64 // last event committed and applied
	snapSeq   uint64 // seq of the newest snapshot written or loaded
	mailbox   []envelope
	busy      bool // a write is in flight; messages wait (one at a time)
	idleToken uint64
}

// envelope is one message on its way into an actor.
type envelope struct {
	msg    protocol.Message
	sender *actors.Identity
	// req is the client request awaiting the reply; nil for sends and timers.
	req *request
	// timer is set when msg is a fired timer; token identifies which setting
	// of the timer fired, so a replaced or cancelled one is not delivered.
	timer *timerKey
	token uint64
}

type timerKey struct {
	actor actors.Identity
	name  string
}

type timerEntry struct {
	due     time.Time
	payload protocol.Message
	token   uint64
}

type shadowActor struct {
	actor   actors.Actor
	lastSeq uint64
	timers  map[string]time.Time
}

func newHost(w *world, d disk) *host {
	return &host{
		w:      w,
		kind:   w.cfg.Kind,
		disk:   d,
		acts:   map[actors.Identity]*activation{},
		timers: map[timerKey]*timerEntry{},
		shadow: map[actors.Identity]*shadowActor{},
	}
}

func key(id actors.Identity) persistence.ActorKey {
	return persistence.ActorKey{Kind: id.Kind, ID: id.ID}
}

func (h *host) start() error {
	st, err := h.disk.open()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	h.store, h.up = st, true
	h.w.tr("host start")
	return nil
}

// close releases the store at the end of a run.
func (h *host) close() {
	if h.store != nil {
		_ = h.store.Close() // the run is over; nothing reads this store again
		h.store = nil
	}
}

// receive is a message arriving at the node.
func (h *host) receive(to actors.Identity, env envelope) {
	if !h.up {
		h.w.report.Host.DroppedMessages++
		h.w.tr("drop " + to.String() + " node down " + msgText(env.msg))
		return
	}
	act := h.activate(to)
	if act == nil {
		if env.req != nil {
			h.reply(env, nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, "%s cannot be activated", to))
		}
		return
	}
	h.w.tr("deliver " + to.String() + " " + msgText(env.msg))
	act.mailbox = append(act.mailbox, env)
	if !act.busy {
		h.next(act)
	}
}

// activate returns the live activation of id, loading it from the store if
// it has none.
func (h *host) activate(id actors.Identity) *activation {
	if a := h.acts[id]; a != nil {
		return a
	}
	if id.Kind != h.kind.Name {
		h.w.tr("unknown kind " + id.String())
		return nil
	}
	a, ld, err := h.rebuild(id)
	if err != nil {
		if ld != nil {
			// The history is there but the code cannot replay it.
			h.w.violate("activation of %s cannot replay its history: %v", id, err)
		} else {
			h.w.fatal(err)
		}
		return nil
	}
	if committed := h.shadowOf(id).lastSeq; ld.LastSeq != committed {
		h.w.violate("activation of %s loaded seq %d, but %d were committed", id, ld.LastSeq, committed)
	}
	act := &activation{id: id, actor: a, lastSeq: ld.LastSeq}
	if ld.Snapshot != nil {
		act.snapSeq = ld.Snapshot.Seq
	}
	h.acts[id] = act
	h.w.report.Host.Activations++
	h.w.tr(fmt.Sprintf("activate %s seq=%d snapshot=%d", id, act.lastSeq, act.snapSeq))
	return act
}

// rebuild loads id's journal and replays it into a fresh actor. A nil
// Loaded with an error means the store failed; a Loaded with an error means
// the journal does not replay.
func (h *host) rebuild(id actors.Identity) (actors.Actor, *persistence.Loaded, error) {
	ld, err := h.store.Load(key(id))
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", id, err)
	}
	a := h.kind.New(id.ID)
	if ld.Snapshot != nil {
		if err := a.Restore(ld.Snapshot.State); err != nil {
			return nil, ld, fmt.Errorf("restore %s snapshot at seq %d: %w", id, ld.Snapshot.Seq, err)
		}
	}
	if err := actors.ApplyAll(a, ld.Events); err != nil {
		return nil, ld, fmt.Errorf("replay %s: %w", id, err)
	}
	return a, ld, nil
}

func (h *host) shadowOf(id actors.Identity) *shadowActor {
	s := h.shadow[id]
	if s == nil {
		s = &shadowActor{actor: h.kind.New(id.ID), timers: map[string]time.Time{}}
		h.shadow[id] = s
	}
	return s
}

// next runs act's mailbox until a step has to wait for the disk or the
// mailbox is empty.
func (h *host) next(act *activation) {
	for len(act.mailbox) > 0 {
		env := act.mailbox[0]
		act.mailbox = act.mailbox[1:]
		if h.step(act, env) {
			return // busy until its write is durable
		}
	}
	h.idle(act)
}

// step runs one message. It reports whether a write is now in flight.
func (h *host) step(act *activation, env envelope) bool {
	w := h.w
	var fired []persistence.TimerChange
	if env.timer != nil {
		e := h.timers[*env.timer]
		if e == nil || e.token != env.token {
			// Cancelled or re-set after it fired but before it was handled.
			w.tr("stale timer " + act.id.String() + " " + env.timer.name)
			return false
		}
		// The fired timer's record goes in the same write as the step it
		// triggers: either both happen or, after a crash, it fires again.
		fired = []persistence.TimerChange{{Name: env.timer.name, Cancel: true}}
	}
	w.report.Host.Steps++
	fx, stepErr := actors.Step(act.actor, actors.Env{Now: w.now, Entropy: w.entropy, Self: act.id, Sender: env.sender}, env.msg)
	if stepErr != nil {
		w.tr("step " + act.id.String() + " " + protocol.TypeName(env.msg) + " " + errText(stepErr))
		fx = &actors.Effects{} // an actor's error discards its effects
	} else {
		w.tr("step " + act.id.String() + " " + protocol.TypeName(env.msg) + " " + effectsText(fx))
	}
	wr := &persistence.Write{Actor: key(act.id), FirstSeq: act.lastSeq + 1, Events: fx.Events, Timers: fired, Emitted: fx.Emitted}
	for _, t := range fx.Timers {
		wr.Timers = append(wr.Timers, persistence.TimerChange{Name: t.Name, Due: t.Due, Payload: t.Payload, Cancel: t.Cancel})
	}
	if len(wr.Events) == 0 && len(wr.Timers) == 0 && len(wr.Emitted) == 0 {
		h.release(act, env, fx, stepErr)
		return false
	}
	if n := uint64(len(fx.Events)); n > 0 && h.w.cfg.SnapshotEvery > 0 &&
		act.lastSeq+n-act.snapSeq >= uint64(h.w.cfg.SnapshotEvery) {
		st, err := h.stateAfter(act, fx.Events)
		if err != nil {
			w.violate("%s: events of its own step do not apply: %v", act.id, err)
			h.release(act, env, nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "step of %s failed", act.id))
			return false
		}
		wr.Snapshot = &persistence.Snapshot{Seq: act.lastSeq + n, State: st}
	}
	act.busy = true
	inc := h.incarnation
	w.after(between(w.net, diskMin, diskMax), func() { h.committed(inc, act, env, fx, stepErr, wr) })
	return true
}

// stateAfter is act's state with events applied, computed on a copy: the
// live actor must not see events before they are durable.
func (h *host) stateAfter(act *activation, events []protocol.Message) (protocol.Message, error) {
	snap, err := act.actor.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	c := h.kind.New(act.id.ID)
	if err := c.Restore(snap); err != nil {
		return nil, fmt.Errorf("restore copy: %w", err)
	}
	if err := actors.ApplyAll(c, events); err != nil {
		return nil, err
	}
	return c.Snapshot()
}

// committed runs when the disk has had time to take wr: it commits, then
// (write-ahead) applies and releases the step's effects.
func (h *host) committed(inc uint64, act *activation, env envelope, fx *actors.Effects, stepErr error, wr *persistence.Write) {
	w := h.w
	if inc != h.incarnation {
		return // the node died before the write reached the disk
	}
	if err := h.store.Commit(context.Background(), wr); err != nil {
		w.fatal(fmt.Errorf("commit %s at seq %d: %w", act.id, wr.FirstSeq, err))
		return
	}
	w.report.Host.Commits++
	if wr.Snapshot != nil {
		w.report.Host.Snapshots++
	}
	for _, ev := range wr.Events {
		if _, ok := ev.(*protocol.SessionExpired); ok {
			w.report.Host.Expiries++
		}
	}
	w.tr("commit " + writeText(wr))
	h.recordCommitted(act.id, wr)

	if w.cfg.CrashAfterCommit > 0 && !w.faultsOff && w.faults.Float64() < w.cfg.CrashAfterCommit {
		w.report.Host.CrashesAfterCommit++
		h.crash("after commit of " + act.id.String())
		return
	}

	n := uint64(len(wr.Events))
	if sh := h.shadow[act.id]; act.lastSeq+n != sh.lastSeq {
		w.violate("%s would apply up to seq %d, but only %d are committed", act.id, act.lastSeq+n, sh.lastSeq)
	}
	if err := actors.ApplyAll(act.actor, wr.Events); err != nil {
		w.violate("%s: committed events do not apply: %v", act.id, err)
		h.drop(act)
		return
	}
	act.lastSeq += n
	if wr.Snapshot != nil {
		act.snapSeq = wr.Snapshot.Seq
	}
	for _, t := range wr.Timers {
		k := timerKey{actor: act.id, name: t.Name}
		if t.Cancel {
			delete(h.timers, k)
		} else {
			h.arm(k, t.Due, t.Payload)
		}
	}
	h.release(act, env, fx, stepErr)
	act.busy = false
	h.next(act)
}

// recordCommitted advances the shadow copy by a durable write.
func (h *host) recordCommitted(id actors.Identity, wr *persistence.Write) {
	sh := h.shadowOf(id)
	if err := actors.ApplyAll(sh.actor, wr.Events); err != nil {
		h.w.violate("%s: committed history does not replay: %v", id, err)
	}
	sh.lastSeq += uint64(len(wr.Events))
	for _, t := range wr.Timers {
		if t.Cancel {
			delete(sh.timers, t.Name)
		} else {
			sh.timers[t.Name] = t.Due
		}
	}
}

// drop discards an activation whose state can no longer be trusted; the
// next message re-activates it from the store.
func (h *host) drop(act *activation) {
	h.w.report.Host.DroppedMessages += len(act.mailbox)
	delete(h.acts, act.id)
	h.w.tr("discard " + act.id.String())
}

// release lets a step's effects leave the node.
func (h *host) release(act *activation, env envelope, fx *actors.Effects, stepErr error) {
	w := h.w
	if stepErr != nil {
		h.reply(env, nil, stepErr)
	} else {
		for _, r := range fx.Replies {
			h.reply(env, r, nil)
		}
	}
	if fx == nil {
		return
	}
	for _, s := range fx.Sends {
		from, to, msg, inc := act.id, s.To, s.Msg, h.incarnation
		w.after(between(w.net, localMin, localMax), func() {
			if inc != h.incarnation {
				w.report.Host.DroppedMessages++
				return // lost with the node's memory
			}
			h.receive(to, envelope{msg: msg, sender: &from})
		})
	}
	for _, p := range fx.Publications {
		w.report.Host.Publications++
		w.tr("publish " + p.Topic + " " + msgText(p.Msg))
	}
}

// reply sends a step's answer back to the client that asked. Once sent it
// is on the network and survives a crash of the node.
func (h *host) reply(env envelope, msg protocol.Message, err error) {
	w := h.w
	if env.req == nil {
		return // sends and timers have no caller
	}
	req := env.req
	if err != nil {
		w.tr(fmt.Sprintf("reply #%d %s", req.id, errText(err)))
	} else {
		w.tr(fmt.Sprintf("reply #%d %s", req.id, msgText(msg)))
	}
	w.after(netDelay(w), func() { w.load.onReply(req, msg, err) })
}

// idle is called when act has nothing to do: it passivates after a while
// (or, at random, at once, to compare memory and store at odd moments).
func (h *host) idle(act *activation) {
	w := h.w
	if w.faults.Float64() < forcedPassivation {
		h.passivate(act, true)
		return
	}
	act.idleToken++
	tok, inc := act.idleToken, h.incarnation
	w.after(between(w.net, idleMin, idleMax), func() {
		if inc != h.incarnation || h.acts[act.id] != act || act.idleToken != tok || act.busy || len(act.mailbox) > 0 {
			return
		}
		h.passivate(act, false)
	})
}

// passivate drops act from memory after checking that the store rebuilds
// exactly the state it had.
func (h *host) passivate(act *activation, forced bool) {
	w := h.w
	h.checkRebuild(act)
	delete(h.acts, act.id)
	if forced {
		w.report.Host.ForcedPassivations++
	} else {
		w.report.Host.Passivations++
	}
	w.tr(fmt.Sprintf("passivate %s seq=%d forced=%t", act.id, act.lastSeq, forced))
}

// checkRebuild compares act's in-memory state with the state rebuilt from
// the store.
func (h *host) checkRebuild(act *activation) {
	w := h.w
	live, err := act.actor.Snapshot()
	if err != nil {
		w.violate("%s: snapshot of memory failed: %v", act.id, err)
		return
	}
	a, ld, err := h.rebuild(act.id)
	if err != nil {
		if ld == nil {
			w.fatal(err)
		} else {
			w.violate("%s: store does not rebuild: %v", act.id, err)
		}
		return
	}
	rebuilt, err := a.Snapshot()
	if err != nil {
		w.violate("%s: snapshot of rebuilt state failed: %v", act.id, err)
		return
	}
	if ld.LastSeq != act.lastSeq {
		w.violate("%s: memory is at seq %d, store at %d", act.id, act.lastSeq, ld.LastSeq)
	}
	if !protocol.Equal(live, rebuilt) {
		w.violate("%s: state rebuilt from the store differs from memory at seq %d", act.id, act.lastSeq)
	}
}

// arm mirrors a durable timer and schedules its firing.
func (h *host) arm(k timerKey, due time.Time, payload protocol.Message) {
	w := h.w
	h.timerToken++
	e := &timerEntry{due: due, payload: payload, token: h.timerToken}
	h.timers[k] = e
	inc := h.incarnation
	wait := max(due.Sub(w.now), 0) + between(w.net, 0, timerDelayMax)
	w.after(wait, func() { h.fire(inc, k, e.token) })
}

// fire delivers a due timer, unless the node crashed or the timer changed
// since it was armed.
func (h *host) fire(inc uint64, k timerKey, token uint64) {
	w := h.w
	if inc != h.incarnation {
		return
	}
	e := h.timers[k]
	if e == nil || e.token != token {
		return
	}
	p, err := protocol.Pack(e.payload)
	if err != nil {
		w.fatal(fmt.Errorf("timer %s %s: %w", k.actor, k.name, err))
		return
	}
	w.report.Host.TimersFired++
	w.tr(fmt.Sprintf("fire %s %s due=%d", k.actor, k.name, e.due.Sub(Epoch).Nanoseconds()))
	h.receive(k.actor, envelope{
		msg:   &protocol.TimerFired{Name: k.name, DueUnixNano: e.due.UnixNano(), Payload: p},
		timer: &k,
		token: token,
	})
}

// crash is a power cut: memory (activations, mailboxes, the timer mirror,
// writes not yet durable) is gone, the disk keeps what was synced, and the
// node restarts after a while.
func (h *host) crash(why string) {
	w := h.w
	if !h.up {
		return
	}
	w.report.Crashes++
	lost := 0
	for _, a := range h.acts { // a sum: the order does not matter
		lost += len(a.mailbox)
	}
	w.report.Host.DroppedMessages += lost
	w.tr(fmt.Sprintf("crash %s activations=%d queued=%d", why, len(h.acts), lost))
	old := h.store
	h.disk.crash()
	// The old store writes only to the disk that just died; its close error
	// says nothing about the surviving disk.
	_ = old.Close()
	h.store, h.up = nil, false
	h.incarnation++
	h.acts = map[actors.Identity]*activation{}
	h.timers = map[timerKey]*timerEntry{}
	inc := h.incarnation
	w.after(between(w.faults, restartMin, restartMax), func() { h.restart(inc) })
}

func (h *host) restart(inc uint64) {
	w := h.w
	if inc != h.incarnation {
		return
	}
	st, err := h.disk.open()
	if err != nil {
		w.fatal(fmt.Errorf("reopen store after crash: %w", err))
		return
	}
	h.store, h.up = st, true
	w.tr(fmt.Sprintf("restart incarnation=%d", h.incarnation))
	h.verifyStore("after crash")
	h.reloadTimers()
}

// shadowIDs lists the actors that ever committed, in a stable order.
func (h *host) shadowIDs() []actors.Identity {
	ids := make([]actors.Identity, 0, len(h.shadow))
	for id := range h.shadow {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b actors.Identity) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	return ids
}

// verifyStore checks that the store holds exactly what was committed:
// every acknowledged write survived, nothing uncommitted appeared.
func (h *host) verifyStore(when string) {
	w := h.w
	for _, id := range h.shadowIDs() {
		sh := h.shadow[id]
		a, ld, err := h.rebuild(id)
		if err != nil {
			if ld == nil {
				w.fatal(err)
				return
			}
			w.violate("%s %s: store does not rebuild: %v", when, id, err)
			continue
		}
		if ld.LastSeq != sh.lastSeq {
			w.violate("%s %s: store has seq %d, %d were committed", when, id, ld.LastSeq, sh.lastSeq)
			continue
		}
		got, err1 := a.Snapshot()
		want, err2 := sh.actor.Snapshot()
		if err1 != nil || err2 != nil {
			w.violate("%s %s: snapshot failed: %v %v", when, id, err1, err2)
			continue
		}
		if !protocol.Equal(got, want) {
			w.violate("%s %s: state in store differs from committed history", when, id)
		}
	}
}

// storedTimers reads every durable timer, in a stable order.
func (h *host) storedTimers(until time.Time) ([]persistence.Timer, error) {
	ts, err := h.store.DueTimers(until, reloadLimit)
	if err != nil {
		return nil, fmt.Errorf("read due timers: %w", err)
	}
	if len(ts) >= reloadLimit {
		return nil, fmt.Errorf("read due timers: %d or more, cannot reload them all", reloadLimit)
	}
	slices.SortFunc(ts, func(a, b persistence.Timer) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.Actor.Kind, b.Actor.Kind),
			cmp.Compare(a.Actor.ID, b.Actor.ID), cmp.Compare(a.Name, b.Name))
	})
	return ts, nil
}

// reloadTimers re-arms every durable timer after a restart, and checks they
// are exactly the committed ones.
func (h *host) reloadTimers() {
	w := h.w
	ts, err := h.storedTimers(farFuture)
	if err != nil {
		w.fatal(err)
		return
	}
	var want []string
	for _, id := range h.shadowIDs() {
		sh := h.shadow[id]
		for name, due := range sh.timers {
			want = append(want, timerText(id.Kind, id.ID, name, due))
		}
	}
	got := make([]string, len(ts))
	for i, t := range ts {
		got[i] = timerText(t.Actor.Kind, t.Actor.ID, t.Name, t.Due)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		w.violate("after crash: durable timers %v, committed %v", clip(got), clip(want))
	}
	for _, t := range ts {
		h.arm(timerKey{actor: actors.Identity{Kind: t.Actor.Kind, ID: t.Actor.ID}, name: t.Name}, t.Due, t.Payload)
	}
	w.tr(fmt.Sprintf("reload timers=%d", len(ts)))
}

// finish ends a run: every live actor is compared with its stored state,
// the store with the committed history, and no timer may be left overdue.
func (h *host) finish() {
	w := h.w
	if !h.up {
		return
	}
	ids := make([]actors.Identity, 0, len(h.acts))
	for id := range h.acts {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b actors.Identity) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	for _, id := range ids {
		if act := h.acts[id]; !act.busy {
			h.passivate(act, true)
		}
	}
	h.verifyStore("at end")
	overdue, err := h.storedTimers(w.now.Add(-TimerSlack))
	if err != nil {
		w.fatal(err)
		return
	}
	for _, t := range overdue {
		w.violate("timer %s/%s %s due at %s never fired (or its record outlived its step)",
			t.Actor.Kind, t.Actor.ID, t.Name, t.Due.Sub(Epoch))
	}
}

func timerText(kind, id, name string, due time.Time) string {
	return fmt.Sprintf("%s/%s:%s@%d", kind, id, name, due.Sub(Epoch).Nanoseconds())
}

// clip shortens a list for a violation message.
func clip(s []string) []string {
	if len(s) > 6 {
		return append(slices.Clip(s[:6]), fmt.Sprintf("... %d more", len(s)-6))
	}
	return s
}

// effectsText renders a step's effects canonically for the trace.
func effectsText(fx *actors.Effects) string {
	var b strings.Builder
	b.WriteString("events=" + typeList(fx.Events))
	for _, r := range fx.Replies {
		b.WriteString(" reply=" + msgText(r))
	}
	for _, s := range fx.Sends {
		b.WriteString(" send=" + s.To.String() + ":" + msgText(s.Msg))
	}
	for _, t := range fx.Timers {
		if t.Cancel {
			b.WriteString(" cancel=" + t.Name)
		} else {
			fmt.Fprintf(&b, " timer=%s@%d:%s", t.Name, t.Due.Sub(Epoch).Nanoseconds(), msgText(t.Payload))
		}
	}
	for _, p := range fx.Publications {
		b.WriteString(" publish=" + p.Topic)
	}
	for _, e := range fx.Emitted {
		b.WriteString(" emit=" + e.GetType() + ":" + e.GetId())
	}
	return b.String()
}

// writeText renders a write canonically for the trace.
func writeText(wr *persistence.Write) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s first=%d", wr.Actor, wr.FirstSeq)
	for _, ev := range wr.Events {
		b.WriteString(" event=" + msgText(ev))
	}
	if wr.Snapshot != nil {
		fmt.Fprintf(&b, " snapshot=%d:%s", wr.Snapshot.Seq, msgText(wr.Snapshot.State))
	}
	for _, t := range wr.Timers {
		if t.Cancel {
			b.WriteString(" cancel=" + t.Name)
		} else {
			fmt.Fprintf(&b, " timer=%s@%d", t.Name, t.Due.Sub(Epoch).Nanoseconds())
		}
	}
	return b.String()
}
