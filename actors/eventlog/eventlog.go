// Package eventlog is the eventlog actor: one tenant's feed of domain events
// (identity.<noun>.<verb>.v1, DESIGN.md §1) as consumers read it. Its id is
// the tenant.
//
// Where events come from. An actor emits an envelope as an effect of a step;
// the host stores it in its partition's feed in the same durable write, and
// a relay on the partition's leader hands the feed here in position order
// as EventLogAppend{source: "p<N>"}. The relay is at-least-once: after a
// leader change the same entries may come again. The actor remembers each
// source's last appended position and skips entries at or below it, so a
// re-sent batch appends nothing and a batch that overlaps appends only its
// new tail.
//
// What readers see. Every appended event gets the next sequence number of
// the tenant's log (from 1, never reused), so a reader's cursor is one
// number across all sources. EventLogRead{after, limit} answers the events
// after the cursor in sequence order with the log's head and the oldest
// sequence number still kept; gap tells a reader whose cursor is below
// oldest-1 that it missed events.
//
// Retention, applied in Apply so a rebuilt log drops exactly what the live
// one did: at most MaxEvents events and MaxBytes of envelopes are kept, and
// events older than MaxAge before the newest appended event's time fall
// off the front. Ages are measured between event times (set by the
// emitting actor's host clock), never against a clock of this actor.
//
// Bounded state also bounds the host's snapshot: the cluster host writes
// one every SnapshotEvery events (default 100), at most MaxBytes plus
// the sequence bookkeeping, and the journal before it is dropped.
package eventlog

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the eventlog kind's stable name.
const KindName = "eventlog"

// Rules and bounds.
const (
	// MaxEvents is how many events one tenant's log keeps; older ones drop
	// off the front (readers see it as oldest moving and, if they were
	// behind, as a gap).
	MaxEvents = 2000
	// MaxBytes bounds the kept envelopes' size (as size counts it, close
	// to their encoded size), and with it the actor's snapshot.
	MaxBytes = 4 << 20
	// MaxAge is how long an event is kept, measured back from the newest
	// appended event's time.
	MaxAge int64 = 7 * 24 * 3600 * 1e9
	// MaxBatch bounds the entries of one EventLogAppend.
	MaxBatch = 500
	// DefaultLimit and MaxLimit bound one read.
	DefaultLimit = 100
	MaxLimit     = 500

	MaxSourceLen  = 64
	MaxEventIDLen = 128
	MaxTypeLen    = 128
	MaxSubjectLen = 256
)

// Kind registers the eventlog actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one tenant's event log.
type Actor struct {
	id    string
	state *protocol.EventLogState
	// bytes is the encoded size of the kept envelopes: derived from state
	// (Restore recomputes it), never stored.
	bytes int
}

// New returns the empty log of the tenant id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.EventLogState{Sources: map[string]uint64{}}}
}

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := emailindex.ValidTenant(a.id); err != nil {
		return invalid("eventlog id must be a tenant id, got %q", clip(a.id))
	}
	switch m := msg.(type) {
	case *protocol.EventLogAppend:
		return a.append(ctx, m)
	case *protocol.EventLogRead:
		return a.read(ctx, m)
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) append(ctx actors.Context, m *protocol.EventLogAppend) error {
	if err := a.validAppend(m); err != nil {
		return err
	}
	last := a.state.GetSources()[m.GetSource()]
	out := &protocol.EventLogAppended{}
	seq := a.state.GetHead()
	for _, e := range m.GetEntries() {
		if e.GetPosition() <= last {
			out.Duplicates++
			continue
		}
		seq++
		out.Appended++
		ctx.Persist(&protocol.EventLogged{
			Source: m.GetSource(), SourcePosition: e.GetPosition(),
			Entry: &protocol.LoggedEvent{Seq: seq, Event: protocol.Clone(e.GetEvent())},
		})
	}
	out.Head = seq
	ctx.Reply(out)
	return nil
}

// validAppend refuses a malformed batch as a whole: a relay that sends one
// is broken, and appending part of it would hide that.
func (a *Actor) validAppend(m *protocol.EventLogAppend) error {
	src := m.GetSource()
	if src == "" || len(src) > MaxSourceLen || !printable(src) {
		return invalid("source must be 1 to %d printable characters", MaxSourceLen)
	}
	n := len(m.GetEntries())
	if n == 0 || n > MaxBatch {
		return invalid("a batch has 1 to %d entries, got %d", MaxBatch, n)
	}
	var prev uint64
	for i, e := range m.GetEntries() {
		if e.GetPosition() == 0 || (i > 0 && e.GetPosition() <= prev) {
			return invalid("entry %d: positions must be positive and strictly increasing (%d after %d)", i, e.GetPosition(), prev)
		}
		prev = e.GetPosition()
		if err := a.validEvent(e.GetEvent()); err != nil {
			return invalid("entry %d (position %d): %s", i, e.GetPosition(), err)
		}
	}
	return nil
}

func (a *Actor) validEvent(ev *protocol.EventEnvelope) error {
	switch {
	case ev == nil:
		return fmt.Errorf("no event")
	case ev.GetId() == "" || len(ev.GetId()) > MaxEventIDLen || !printable(ev.GetId()):
		return fmt.Errorf("event id must be 1 to %d printable characters", MaxEventIDLen)
	case ev.GetType() == "" || len(ev.GetType()) > MaxTypeLen || !printable(ev.GetType()):
		return fmt.Errorf("event %s: type must be 1 to %d printable characters", ev.GetId(), MaxTypeLen)
	case ev.GetTenant() != a.id:
		return fmt.Errorf("event %s belongs to tenant %q, not %q", ev.GetId(), clip(ev.GetTenant()), a.id)
	case len(ev.GetSubject()) > MaxSubjectLen || !printable(ev.GetSubject()):
		return fmt.Errorf("event %s: subject must be at most %d printable characters", ev.GetId(), MaxSubjectLen)
	case ev.GetTimeUnixNano() <= 0:
		return fmt.Errorf("event %s has no time", ev.GetId())
	case len(ev.GetData().GetValue()) > actors.MaxEventData:
		return fmt.Errorf("event %s: payload is %d bytes, limit %d", ev.GetId(), len(ev.GetData().GetValue()), actors.MaxEventData)
	}
	return nil
}

func (a *Actor) read(ctx actors.Context, m *protocol.EventLogRead) error {
	limit := int(m.GetLimit())
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		return invalid("limit must be 1 to %d, got %d", MaxLimit, limit)
	}
	evs := a.state.GetEvents()
	page := &protocol.EventLogPage{Head: a.state.GetHead(), Oldest: a.oldest()}
	page.Gap = len(evs) > 0 && m.GetAfter() < page.Oldest-1
	i, _ := slices.BinarySearchFunc(evs, m.GetAfter()+1, func(e *protocol.LoggedEvent, seq uint64) int {
		switch {
		case e.GetSeq() < seq:
			return -1
		case e.GetSeq() > seq:
			return 1
		}
		return 0
	})
	for _, e := range evs[i:min(len(evs), i+limit)] {
		page.Events = append(page.Events, protocol.Clone(e))
	}
	ctx.Reply(page)
	return nil
}

// oldest is the first sequence number still kept, 0 when the log is empty.
func (a *Actor) oldest() uint64 {
	if evs := a.state.GetEvents(); len(evs) > 0 {
		return evs[0].GetSeq()
	}
	return 0
}

// Apply implements actors.Actor.
func (a *Actor) Apply(event protocol.Message) error {
	s := a.state
	switch ev := event.(type) {
	case *protocol.EventLogged:
		e := ev.GetEntry()
		if e.GetSeq() != s.GetHead()+1 {
			return fmt.Errorf("eventlog %s: logged seq %d after head %d", a.id, e.GetSeq(), s.GetHead())
		}
		if e.GetEvent() == nil {
			return fmt.Errorf("eventlog %s: logged seq %d has no event", a.id, e.GetSeq())
		}
		if s.Sources == nil {
			s.Sources = map[string]uint64{}
		}
		if p := ev.GetSourcePosition(); p <= s.Sources[ev.GetSource()] {
			return fmt.Errorf("eventlog %s: source %s position %d not after %d", a.id, ev.GetSource(), p, s.Sources[ev.GetSource()])
		}
		s.Sources[ev.GetSource()] = ev.GetSourcePosition()
		s.Head = e.GetSeq()
		s.Events = append(s.Events, protocol.Clone(e))
		a.bytes += size(e.GetEvent())
		a.trim(e.GetEvent().GetTimeUnixNano())
	default:
		return fmt.Errorf("eventlog: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

// trim drops events off the front past the bounds; the newest event always
// stays.
func (a *Actor) trim(newest int64) {
	evs := a.state.Events
	drop := 0
	for drop < len(evs)-1 {
		e := evs[drop].GetEvent()
		if len(evs)-drop <= MaxEvents && a.bytes <= MaxBytes && e.GetTimeUnixNano() >= newest-MaxAge {
			break
		}
		a.bytes -= size(e)
		drop++
	}
	if drop > 0 {
		clear(evs[:drop])
		a.state.Events = evs[drop:]
	}
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.EventLogState)
	if !ok {
		return fmt.Errorf("eventlog: snapshot is %s, want EventLogState", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	if a.state.Sources == nil {
		a.state.Sources = map[string]uint64{}
	}
	a.bytes = 0
	for _, e := range a.state.GetEvents() {
		a.bytes += size(e.GetEvent())
	}
	return nil
}

// size is what an envelope counts against MaxBytes: its strings and
// payload plus a fixed overhead (close to its encoded size; computed by
// hand so Apply stays within the actor's imports).
func size(ev *protocol.EventEnvelope) int {
	return 32 + len(ev.GetId()) + len(ev.GetType()) + len(ev.GetTenant()) + len(ev.GetSubject()) +
		len(ev.GetData().GetTypeUrl()) + len(ev.GetData().GetValue())
}

func printable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) < 0
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
