// Package actors is Ward's domain: one sub-package per actor kind, written as
// deterministic state machines, and the small contract they share (this
// package).
//
// An actor is state + message -> new state + effects. It never reads the wall
// clock, draws randomness from a global source, does I/O or starts a
// goroutine: time and entropy come from its Context, and everything it wants
// done is recorded on the Context as an effect. Hosts (cluster/ in
// production, simulation/ under test) run Step, make the persisted events
// durable, apply them with the actor's pure Apply, and only then release the
// replies, sends, timers and publications (write-ahead).
//
// The rule is enforced by TestActorsArePure in this package, which scans every
// non-test file under actors/ for forbidden imports and calls.
package actors

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wardhq/ward/protocol"
)

// Identity names one virtual actor: its kind and its id within the kind.
type Identity struct {
	Kind string
	ID   string
}

func (i Identity) String() string { return i.Kind + "/" + i.ID }

// Actor is one actor's state and behaviour.
//
// Receive decides: it reads state, validates msg and records effects on ctx.
// It must not change state itself; state changes only through events, which
// the host hands to Apply once they are durable. If Receive returns an error
// every effect it recorded is discarded and the caller gets the error.
//
// Apply is pure: given the same state and event it yields the same state, and
// it needs nothing but the event (it runs again on every activation).
type Actor interface {
	Receive(ctx Context, msg protocol.Message) error
	Apply(event protocol.Message) error
	// Snapshot returns the whole state as one message; Restore is its
	// inverse. Hosts snapshot every N events to bound activation time.
	Snapshot() (protocol.Message, error)
	Restore(snapshot protocol.Message) error
}

// Kind describes one actor kind to a host.
type Kind struct {
	// Name is the kind's stable name, part of every identity and store key.
	Name string
	// New returns the empty state of the actor with the given id.
	New func(id string) Actor
}

// Context is what an actor sees of the world while it handles one message.
type Context interface {
	// Now is the host's time for this message: wall time in production,
	// virtual time in simulation.
	Now() time.Time
	// Entropy is the only randomness an actor may use: crypto/rand in
	// production, a seeded stream in simulation.
	Entropy() io.Reader
	// Self is the identity of the actor handling the message.
	Self() Identity
	// Sender is the identity of the actor that sent msg, if an actor did.
	Sender() (Identity, bool)

	// Reply answers the caller of this message. Replies to a Send or a timer
	// have no caller and are dropped.
	Reply(msg protocol.Message)
	// Send delivers msg to another actor, after this step's events are
	// durable.
	Send(to Identity, msg protocol.Message)
	// Persist records events; they are written durably and applied in order
	// before any other effect of this step leaves the host.
	Persist(events ...protocol.Message)
	// SetTimer sets (or replaces) the durable timer called name; at its due
	// time the host delivers payload wrapped in a protocol.TimerFired.
	// Timers survive passivation and restarts.
	SetTimer(name string, due time.Time, payload protocol.Message)
	// CancelTimer removes the durable timer called name, if set.
	CancelTimer(name string)
	// Publish sends msg to every subscriber of topic.
	Publish(topic string, msg protocol.Message)
	// Emit records a domain event for consumers outside the cluster (see
	// EmitEvent, which builds one). The host stores it in the same durable
	// write as the step's events, so it exists exactly when they do, and
	// relays it to the tenant's event feed afterwards.
	Emit(ev *protocol.EventEnvelope)
}

// Send is a message to another actor.
type Send struct {
	To  Identity
	Msg protocol.Message
}

// TimerOp sets or cancels one durable timer.
type TimerOp struct {
	Name    string
	Due     time.Time
	Payload protocol.Message // nil when Cancel
	Cancel  bool
}

// Publication is a message to a topic.
type Publication struct {
	Topic string
	Msg   protocol.Message
}

// Effects are everything one step asks of its host, in the order the host
// must honour: Events first (durably), then the rest.
type Effects struct {
	Events       []protocol.Message
	Replies      []protocol.Message
	Sends        []Send
	Timers       []TimerOp
	Publications []Publication
	// Emitted are domain events, durable with Events (same write).
	Emitted []*protocol.EventEnvelope
}

// Empty reports whether the step asked for nothing.
func (e *Effects) Empty() bool {
	return len(e.Events) == 0 && len(e.Replies) == 0 && len(e.Sends) == 0 &&
		len(e.Timers) == 0 && len(e.Publications) == 0 && len(e.Emitted) == 0
}

// Env is what a host supplies for one step.
type Env struct {
	Now     time.Time
	Entropy io.Reader
	Self    Identity
	// Sender is set when the message came from another actor.
	Sender *Identity
}

// Step runs one message through an actor and returns the effects it asked
// for. It does not apply the events: the host applies them with ApplyAll
// after they are durable. On error the effects are nil.
func Step(a Actor, env Env, msg protocol.Message) (*Effects, error) {
	if env.Entropy == nil {
		return nil, errors.New("step: host supplied no entropy")
	}
	c := &stepContext{env: env}
	if err := a.Receive(c, msg); err != nil {
		return nil, err
	}
	return &c.fx, nil
}

// ApplyAll applies events in order; it stops at the first error, which means
// the history and the code disagree and the activation must not go on.
func ApplyAll(a Actor, events []protocol.Message) error {
	for i, ev := range events {
		if err := a.Apply(ev); err != nil {
			return fmt.Errorf("apply event %d (%s): %w", i, protocol.TypeName(ev), err)
		}
	}
	return nil
}

// stepContext records effects; it is the one Context implementation, shared
// by every host, so that both hosts honour the same contract.
type stepContext struct {
	env Env
	fx  Effects
}

func (c *stepContext) Now() time.Time     { return c.env.Now }
func (c *stepContext) Entropy() io.Reader { return c.env.Entropy }
func (c *stepContext) Self() Identity     { return c.env.Self }
func (c *stepContext) Sender() (Identity, bool) {
	if c.env.Sender == nil {
		return Identity{}, false
	}
	return *c.env.Sender, true
}
func (c *stepContext) Reply(msg protocol.Message) { c.fx.Replies = append(c.fx.Replies, msg) }
func (c *stepContext) Send(to Identity, msg protocol.Message) {
	c.fx.Sends = append(c.fx.Sends, Send{To: to, Msg: msg})
}
func (c *stepContext) Persist(events ...protocol.Message) {
	c.fx.Events = append(c.fx.Events, events...)
}
func (c *stepContext) SetTimer(name string, due time.Time, payload protocol.Message) {
	c.fx.Timers = append(c.fx.Timers, TimerOp{Name: name, Due: due, Payload: payload})
}
func (c *stepContext) CancelTimer(name string) {
	c.fx.Timers = append(c.fx.Timers, TimerOp{Name: name, Cancel: true})
}
func (c *stepContext) Publish(topic string, msg protocol.Message) {
	c.fx.Publications = append(c.fx.Publications, Publication{Topic: topic, Msg: msg})
}
func (c *stepContext) Emit(ev *protocol.EventEnvelope) { c.fx.Emitted = append(c.fx.Emitted, ev) }
