// Package register is the register actor: one linearizable, versioned string
// value per id, with put, get and compare-and-set.
//
// It exists to prove the runtime linearizable: it is the smallest kind whose
// every write goes through the whole write-ahead path (persist, commit, apply,
// reply), so a porcupine check of client histories against it
// (simulation/linearizability) tests the cluster, not the domain. It is also
// the demo kind a newcomer reads first.
//
// Every accepted write persists one RegisterWritten whose version is the
// previous version + 1; a register never written is "" at version 0.
package register

import (
	"fmt"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// KindName is the register kind's stable name.
const KindName = "register"

// MaxValueLen bounds a value in bytes (64 KiB); longer values are invalid.
const MaxValueLen = 64 << 10

// Kind registers the register actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one register's state.
type Actor struct {
	id    string
	state *protocol.RegisterState
}

// New returns the empty register (value "", version 0) with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.RegisterState{}}
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	switch m := msg.(type) {
	case *protocol.RegisterGet:
		ctx.Reply(a.value())
		return nil
	case *protocol.RegisterPut:
		if err := validValue(m.GetValue()); err != nil {
			return err
		}
		a.write(ctx, m.GetValue())
		return nil
	case *protocol.RegisterCAS:
		if err := validValue(m.GetValue()); err != nil {
			return err
		}
		if cur := a.state.GetVersion(); m.GetExpectVersion() != cur {
			// There is no CONFLICT code; a failed precondition is what a
			// compare-and-set mismatch is.
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
				"register %s is at version %d, not %d", a.id, cur, m.GetExpectVersion())
		}
		a.write(ctx, m.GetValue())
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

// write persists the next version and replies with it. The reply is built
// from the event, not from state: state changes only when the host applies
// the event.
func (a *Actor) write(ctx actors.Context, value string) {
	ev := &protocol.RegisterWritten{Value: value, Version: a.state.GetVersion() + 1}
	ctx.Persist(ev)
	ctx.Reply(&protocol.RegisterValue{Value: ev.Value, Version: ev.Version})
}

func (a *Actor) value() *protocol.RegisterValue {
	return &protocol.RegisterValue{Value: a.state.GetValue(), Version: a.state.GetVersion()}
}

func validValue(v string) error {
	if len(v) > MaxValueLen {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"register value is %d bytes, more than %d", len(v), MaxValueLen)
	}
	// protobuf strings must be UTF-8; refuse here rather than fail to persist.
	if !utf8.ValidString(v) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "register value is not valid UTF-8")
	}
	return nil
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error {
	switch ev := event.(type) {
	case *protocol.RegisterWritten:
		if want := a.state.GetVersion() + 1; ev.GetVersion() != want {
			return fmt.Errorf("register %s: write of version %d, want %d", a.id, ev.GetVersion(), want)
		}
		a.state.Value = ev.GetValue()
		a.state.Version = ev.GetVersion()
		return nil
	default:
		return fmt.Errorf("register: unknown event type %s", protocol.TypeName(event))
	}
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) {
	return protocol.Clone(a.state), nil
}

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.RegisterState)
	if !ok {
		return fmt.Errorf("register: snapshot is %s, want RegisterState", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	return nil
}
