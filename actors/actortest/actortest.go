// Package actortest runs one actor kind the way a host would (step, then
// apply the persisted events, then release the rest) on a fixed clock and a
// predictable entropy stream, and prints messages and effects as stable text
// for datadriven story tests (DESIGN.md §8). It is test support: only _test.go
// files import it.
package actortest

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Epoch is where every harness clock starts.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Harness hosts actors of one kind in memory.
type Harness struct {
	Kind    actors.Kind
	Now     time.Time
	entropy *Counter
	actors  map[string]*hosted
	// LastReply is the first reply of the most recent successful step.
	LastReply protocol.Message
	// LastSends are the sends of the most recent successful step, so a test
	// can deliver them to another harness as a host would.
	LastSends []actors.Send
}

type hosted struct {
	actor  actors.Actor
	events []protocol.Message
	timers map[string]time.Time
}

// New returns a harness for kind at Epoch.
func New(kind actors.Kind) *Harness {
	return &Harness{Kind: kind, Now: Epoch, entropy: &Counter{}, actors: map[string]*hosted{}}
}

func (h *Harness) get(id string) *hosted {
	a, ok := h.actors[id]
	if !ok {
		a = &hosted{actor: h.Kind.New(id), timers: map[string]time.Time{}}
		h.actors[id] = a
	}
	return a
}

// Actor returns the live actor with the given id.
func (h *Harness) Actor(id string) actors.Actor { return h.get(id).actor }

// Step delivers msg to the actor id and returns the effects as text.
func (h *Harness) Step(id string, msg protocol.Message) string {
	return h.step(id, nil, msg)
}

// StepFrom is Step for a message another actor sent.
func (h *Harness) StepFrom(from actors.Identity, id string, msg protocol.Message) string {
	return h.step(id, &from, msg)
}

func (h *Harness) step(id string, from *actors.Identity, msg protocol.Message) string {
	h.LastSends = nil
	a := h.get(id)
	env := actors.Env{Now: h.Now, Entropy: h.entropy, Self: actors.Identity{Kind: h.Kind.Name, ID: id}, Sender: from}
	fx, err := actors.Step(a.actor, env, msg)
	if err != nil {
		return fmt.Sprintf("error %s: %s\n", actors.CodeOf(err), err)
	}
	if err := actors.ApplyAll(a.actor, fx.Events); err != nil {
		return fmt.Sprintf("APPLY FAILED: %v\n", err)
	}
	a.events = append(a.events, fx.Events...)
	for _, t := range fx.Timers {
		if t.Cancel {
			delete(a.timers, t.Name)
		} else {
			a.timers[t.Name] = t.Due
		}
	}
	if len(fx.Replies) > 0 {
		h.LastReply = fx.Replies[0]
	}
	h.LastSends = fx.Sends
	return FormatEffects(fx)
}

// Fire delivers the named durable timer of actor id as a host would.
func (h *Harness) Fire(id, name string, payload protocol.Message) string {
	a := h.get(id)
	due, ok := a.timers[name]
	if !ok {
		return fmt.Sprintf("no timer %q set\n", name)
	}
	delete(a.timers, name)
	p, err := protocol.Pack(payload)
	if err != nil {
		return err.Error() + "\n"
	}
	return h.Step(id, &protocol.TimerFired{Name: name, DueUnixNano: due.UnixNano(), Payload: p})
}

// Timers prints actor id's pending timers.
func (h *Harness) Timers(id string) string {
	a := h.get(id)
	names := make([]string, 0, len(a.timers))
	for n := range a.timers {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "timer %s due %s\n", n, a.timers[n].Sub(Epoch))
	}
	return b.String()
}

// Rebuild throws away actor id's live state and rebuilds it from its event
// log, and from a snapshot of the old state, and reports whether all three
// agree. It is how story tests show that Apply alone carries the state.
func (h *Harness) Rebuild(id string) string {
	a := h.get(id)
	before, err := a.actor.Snapshot()
	if err != nil {
		return "snapshot: " + err.Error() + "\n"
	}
	fromLog := h.Kind.New(id)
	if err := actors.ApplyAll(fromLog, a.events); err != nil {
		return "replay: " + err.Error() + "\n"
	}
	replayed, _ := fromLog.Snapshot()
	fromSnap := h.Kind.New(id)
	if err := fromSnap.Restore(protocol.Clone(before)); err != nil {
		return "restore: " + err.Error() + "\n"
	}
	restored, _ := fromSnap.Snapshot()
	if !protocol.Equal(before, replayed) || !protocol.Equal(before, restored) {
		return fmt.Sprintf("MISMATCH\nlive:     %s\nreplayed: %s\nrestored: %s\n", Format(before), Format(replayed), Format(restored))
	}
	a.actor = fromLog
	return fmt.Sprintf("rebuilt from %d events: identical\n", len(a.events))
}

// FormatEffects prints effects one per line, in the order a host releases
// them.
func FormatEffects(fx *actors.Effects) string {
	var b strings.Builder
	for _, e := range fx.Events {
		fmt.Fprintf(&b, "persist %s\n", Format(e))
	}
	for _, t := range fx.Timers {
		if t.Cancel {
			fmt.Fprintf(&b, "cancel-timer %s\n", t.Name)
		} else {
			fmt.Fprintf(&b, "set-timer %s due %s %s\n", t.Name, t.Due.Sub(Epoch), Format(t.Payload))
		}
	}
	for _, s := range fx.Sends {
		fmt.Fprintf(&b, "send %s %s\n", s.To, Format(s.Msg))
	}
	for _, p := range fx.Publications {
		fmt.Fprintf(&b, "publish %s %s\n", p.Topic, Format(p.Msg))
	}
	for _, e := range fx.Emitted {
		fmt.Fprintf(&b, "emit %s tenant=%s subject=%s %s\n", e.GetType(), e.GetTenant(), e.GetSubject(), formatData(e))
	}
	for _, r := range fx.Replies {
		fmt.Fprintf(&b, "reply %s\n", Format(r))
	}
	if fx.Empty() {
		b.WriteString("ok (no effects)\n")
	}
	return b.String()
}

// formatData prints an event's payload, or {} when it has none.
func formatData(e *protocol.EventEnvelope) string {
	if e.GetData() == nil {
		return "{}"
	}
	m, err := protocol.Unpack(e.GetData())
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return Format(m)
}

// Format prints a message as Name{field:value ...} in field-number order,
// with times relative to Epoch and bytes as short hex, so the text is stable.
func Format(m protocol.Message) string {
	if m == nil {
		return "<nil>"
	}
	r := m.ProtoReflect()
	var parts []string
	fields := r.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !r.Has(fd) {
			continue
		}
		parts = append(parts, string(fd.Name())+":"+formatValue(fd, r.Get(fd)))
	}
	return string(r.Descriptor().Name()) + "{" + strings.Join(parts, " ") + "}"
}

func formatValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch {
	case fd.IsList():
		var items []string
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			items = append(items, formatScalar(fd, l.Get(i)))
		}
		return "[" + strings.Join(items, " ") + "]"
	default:
		return formatScalar(fd, v)
	}
}

func formatScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		return Format(v.Message().Interface())
	case protoreflect.BytesKind:
		b := v.Bytes()
		if len(b) > 4 {
			return fmt.Sprintf("%x..(%d)", b[:4], len(b))
		}
		return fmt.Sprintf("%x", b)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return fmt.Sprint(v.Enum())
	case protoreflect.StringKind:
		return fmt.Sprintf("%q", v.String())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if strings.HasSuffix(string(fd.Name()), "unix_nano") {
			return "T+" + time.Unix(0, v.Int()).Sub(Epoch).String()
		}
		return fmt.Sprint(v.Int())
	default:
		return fmt.Sprint(v.Interface())
	}
}

// Counter is a predictable entropy stream: 1, 2, 3, ... (mod 256). Tests can
// then name the secret an actor will draw.
type Counter struct{ n byte }

func (c *Counter) Read(p []byte) (int, error) {
	for i := range p {
		c.n++
		p[i] = c.n
	}
	return len(p), nil
}
