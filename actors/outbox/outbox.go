// Package outbox is the outbox actor: the durable queue of one tenant's
// outgoing mail and SMS (magic links, phone codes). Its id is the tenant.
//
// Why an actor. A registration must not be acknowledged and then lose its
// verification mail: the edge enqueues here (a durable write) before it
// answers, and a sender outside actors/ delivers later, reporting each
// outcome back. Enqueue is idempotent by the caller's message id, so a
// retried request does not mail twice.
//
// Delivery is at-least-once. Senders on several nodes may ask at once; a
// lease (ListPending with lease_nanos) hands each due message to one of
// them until the lease runs out, so two senders do not normally send the
// same message, and a sender that dies mid-way only delays it.
//
// Retries back off exponentially (RetryBase doubling up to RetryMax) by a
// durable timer; after MaxAttempts the message is given up (FAILED). When a
// message becomes due the actor publishes OutboxDue on Topic so senders on
// the same node wake up at once rather than on their next poll.
//
// Bounds. At most MaxMessages are kept: enqueueing into a full outbox drops
// the oldest finished (sent or failed) message, and is refused while every
// kept message is still pending. A message that left through a real
// transport loses its body (it carries one-time secrets); one captured by
// the development mailbox keeps it, since reading it is the point.
package outbox

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the outbox kind's stable name.
const KindName = "outbox"

// Topic is where the actor publishes OutboxDue.
const Topic = "outbox.due"

// Rules and bounds.
const (
	MaxMessages  = 1000
	MaxAttempts  = 8
	RetryBase    = 30 * time.Second
	RetryMax     = time.Hour
	MaxLease     = 10 * time.Minute
	DefaultLimit = 50
	MaxLimit     = 500
	MaxIDLen     = 128
	MaxToLen     = 254
	MaxSubject   = 200
	MaxBody      = 8 << 10
	maxErrorLen  = 200
	retryTimer   = "retry"
)

const (
	pending = protocol.OutboxStatus_OUTBOX_STATUS_PENDING
	sent    = protocol.OutboxStatus_OUTBOX_STATUS_SENT
	failed  = protocol.OutboxStatus_OUTBOX_STATUS_FAILED
)

// Kind registers the outbox actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one tenant's outbox.
type Actor struct {
	id    string
	state *protocol.OutboxState
}

// New returns the empty outbox of the tenant id.
func New(id string) *Actor { return &Actor{id: id, state: &protocol.OutboxState{}} }

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := emailindex.ValidTenant(a.id); err != nil {
		return invalid("outbox id must be a tenant id, got %q", clip(a.id))
	}
	switch m := msg.(type) {
	case *protocol.OutboxEnqueue:
		return a.enqueue(ctx, m)
	case *protocol.OutboxListPending:
		return a.listPending(ctx, m)
	case *protocol.OutboxMarkSent:
		return a.markSent(ctx, m)
	case *protocol.OutboxMarkFailed:
		return a.markFailed(ctx, m)
	case *protocol.OutboxListMessages:
		return a.listMessages(ctx, m)
	case *protocol.TimerFired:
		return a.retryDue(ctx)
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) find(id string) *protocol.OutboxMessage {
	for _, m := range a.state.GetMessages() {
		if m.GetId() == id {
			return m
		}
	}
	return nil
}

func (a *Actor) enqueue(ctx actors.Context, m *protocol.OutboxEnqueue) error {
	if err := validID(m.GetId()); err != nil {
		return err
	}
	if old := a.find(m.GetId()); old != nil {
		if old.GetChannel() != m.GetChannel() || old.GetTo() != m.GetTo() {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "message %s was enqueued with another recipient", m.GetId())
		}
		ctx.Reply(protocol.Clone(old))
		return nil
	}
	if err := validMessage(m); err != nil {
		return err
	}
	if len(a.state.GetMessages()) >= MaxMessages && evictable(a.state.GetMessages()) < 0 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, "outbox of tenant %s is full: %d messages wait for delivery", a.id, MaxMessages)
	}
	now := ctx.Now().UnixNano()
	msg := &protocol.OutboxMessage{
		Id: m.GetId(), Channel: m.GetChannel(), To: m.GetTo(), Subject: m.GetSubject(), Body: m.GetBody(),
		CreatedUnixNano: now, Status: pending, NextAttemptUnixNano: now,
	}
	ctx.Persist(&protocol.OutboxEnqueued{Message: msg})
	ctx.Publish(Topic, &protocol.OutboxDue{Tenant: a.id})
	ctx.Reply(protocol.Clone(msg))
	return nil
}

// due reports whether a sender may take m now.
func due(m *protocol.OutboxMessage, now int64) bool {
	return m.GetStatus() == pending && m.GetNextAttemptUnixNano() <= now && m.GetLeasedUntilUnixNano() <= now
}

func limit(n uint32) int {
	switch {
	case n == 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return int(n)
}

func (a *Actor) listPending(ctx actors.Context, m *protocol.OutboxListPending) error {
	lease := time.Duration(m.GetLeaseNanos())
	if lease < 0 || lease > MaxLease {
		return invalid("lease %s outside [0, %s]", lease, MaxLease)
	}
	now := ctx.Now().UnixNano()
	out := &protocol.OutboxList{}
	var ids []string
	for _, msg := range a.state.GetMessages() {
		if len(out.Messages) == limit(m.GetLimit()) {
			break
		}
		if due(msg, now) {
			c := protocol.Clone(msg)
			if lease > 0 {
				c.LeasedUntilUnixNano = now + int64(lease)
				ids = append(ids, c.GetId())
			}
			out.Messages = append(out.Messages, c)
		}
	}
	if len(ids) > 0 {
		ctx.Persist(&protocol.OutboxLeased{Ids: ids, UntilUnixNano: now + int64(lease)})
	}
	ctx.Reply(out)
	return nil
}

func (a *Actor) known(id string) (*protocol.OutboxMessage, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	m := a.find(id)
	if m == nil {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "no message %s in the outbox", id)
	}
	return m, nil
}

func (a *Actor) markSent(ctx actors.Context, m *protocol.OutboxMarkSent) error {
	msg, err := a.known(m.GetId())
	if err != nil {
		return err
	}
	if _, ok := protocol.OutboxVia_name[int32(m.GetVia())]; !ok || m.GetVia() == protocol.OutboxVia_OUTBOX_VIA_UNSPECIFIED {
		return invalid("via is required")
	}
	if msg.GetStatus() == sent {
		// A retried report: the first one counts.
		ctx.Reply(protocol.Clone(msg))
		return nil
	}
	// A given-up message that a slow sender did deliver after all is
	// recorded as sent: that is what happened.
	return a.settle(ctx, &protocol.OutboxSent{Id: msg.GetId(), Via: m.GetVia(), AtUnixNano: ctx.Now().UnixNano()}, msg.GetId())
}

func (a *Actor) markFailed(ctx actors.Context, m *protocol.OutboxMarkFailed) error {
	msg, err := a.known(m.GetId())
	if err != nil {
		return err
	}
	if msg.GetStatus() != pending {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "message %s is %s, not pending", msg.GetId(), statusName(msg.GetStatus()))
	}
	now := ctx.Now()
	ev := &protocol.OutboxFailed{Id: msg.GetId(), Error: cleanError(m.GetError()), AtUnixNano: now.UnixNano()}
	if n := msg.GetAttempts() + 1; n < MaxAttempts {
		ev.NextAttemptUnixNano = now.Add(Backoff(n)).UnixNano()
	}
	return a.settle(ctx, ev, msg.GetId())
}

// settle records a delivery report ev about message id: checked against the
// state it leads to, persisted, the retry timer re-armed for that state,
// and the message as it then stands replied.
func (a *Actor) settle(ctx actors.Context, ev protocol.Message, id string) error {
	after, err := a.after(ev)
	if err != nil {
		return err
	}
	ctx.Persist(ev)
	a.armRetry(ctx, after)
	ctx.Reply(protocol.Clone(after.find(id)))
	return nil
}

// Backoff is the wait after the n-th failed attempt (n >= 1).
func Backoff(n uint32) time.Duration {
	d := RetryBase
	for i := uint32(1); i < n && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// armRetry points the retry timer at the earliest back-off still running
// in state s, or cancels it when none is.
func (a *Actor) armRetry(ctx actors.Context, s *Actor) {
	now := ctx.Now().UnixNano()
	var next int64
	for _, m := range s.state.GetMessages() {
		if t := m.GetNextAttemptUnixNano(); m.GetStatus() == pending && t > now && (next == 0 || t < next) {
			next = t
		}
	}
	if next == 0 {
		ctx.CancelTimer(retryTimer)
		return
	}
	ctx.SetTimer(retryTimer, time.Unix(0, next), &protocol.OutboxRetryDue{})
}

func (a *Actor) retryDue(ctx actors.Context) error {
	now := ctx.Now().UnixNano()
	for _, m := range a.state.GetMessages() {
		if due(m, now) {
			ctx.Publish(Topic, &protocol.OutboxDue{Tenant: a.id})
			break
		}
	}
	a.armRetry(ctx, a)
	return nil
}

func (a *Actor) listMessages(ctx actors.Context, m *protocol.OutboxListMessages) error {
	out := &protocol.OutboxList{}
	msgs := a.state.GetMessages()
	for i := len(msgs) - 1; i >= 0 && len(out.Messages) < limit(m.GetLimit()); i-- {
		if m.GetTo() == "" || strings.EqualFold(msgs[i].GetTo(), m.GetTo()) {
			out.Messages = append(out.Messages, protocol.Clone(msgs[i]))
		}
	}
	ctx.Reply(out)
	return nil
}

// after is the state ev leads to, computed with the same Apply the host
// will run, so replies and timers describe exactly that state.
func (a *Actor) after(ev protocol.Message) (*Actor, error) {
	s := &Actor{id: a.id, state: protocol.Clone(a.state)}
	if err := s.Apply(ev); err != nil {
		return nil, err
	}
	return s, nil
}

// evictable is the index of the oldest finished message, or -1.
func evictable(msgs []*protocol.OutboxMessage) int {
	return slices.IndexFunc(msgs, func(m *protocol.OutboxMessage) bool { return m.GetStatus() != pending })
}

// Apply implements actors.Actor.
func (a *Actor) Apply(event protocol.Message) error {
	s := a.state
	switch ev := event.(type) {
	case *protocol.OutboxEnqueued:
		if len(s.Messages) >= MaxMessages {
			i := evictable(s.Messages)
			if i < 0 {
				return fmt.Errorf("outbox %s: enqueued into a full outbox", a.id)
			}
			s.Messages = slices.Delete(s.Messages, i, i+1)
		}
		s.Messages = append(s.Messages, protocol.Clone(ev.GetMessage()))
	case *protocol.OutboxLeased:
		for _, id := range ev.GetIds() {
			if m := a.find(id); m != nil {
				m.LeasedUntilUnixNano = ev.GetUntilUnixNano()
			}
		}
	case *protocol.OutboxSent:
		m := a.find(ev.GetId())
		if m == nil {
			return fmt.Errorf("outbox %s: sent unknown message %s", a.id, ev.GetId())
		}
		m.Status, m.Via, m.SentUnixNano = sent, ev.GetVia(), ev.GetAtUnixNano()
		m.NextAttemptUnixNano, m.LeasedUntilUnixNano = 0, 0
		if ev.GetVia() != protocol.OutboxVia_OUTBOX_VIA_DEV_MAILBOX {
			m.Body = ""
		}
	case *protocol.OutboxFailed:
		m := a.find(ev.GetId())
		if m == nil {
			return fmt.Errorf("outbox %s: failed unknown message %s", a.id, ev.GetId())
		}
		m.Attempts++
		m.LastError = ev.GetError()
		m.LeasedUntilUnixNano = 0
		m.NextAttemptUnixNano = ev.GetNextAttemptUnixNano()
		if m.NextAttemptUnixNano == 0 {
			// Given up: nobody will send it, so its secret goes too.
			m.Status, m.Body = failed, ""
		}
	default:
		return fmt.Errorf("outbox: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.OutboxState)
	if !ok {
		return fmt.Errorf("outbox: snapshot is %s, want OutboxState", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	return nil
}

func validID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return invalid("message id must be 1 to %d characters", MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return invalid("message id must be printable ASCII without spaces")
		}
	}
	return nil
}

// validMessage refuses what could not be delivered or would break a mail
// header: line breaks in the recipient or subject would let a caller add
// headers or recipients.
func validMessage(m *protocol.OutboxEnqueue) error {
	switch m.GetChannel() {
	case protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL, protocol.OutboxChannel_OUTBOX_CHANNEL_SMS:
	default:
		return invalid("channel must be mail or sms")
	}
	if err := line("to", m.GetTo(), MaxToLen, true); err != nil {
		return err
	}
	if m.GetChannel() == protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL && !strings.Contains(m.GetTo(), "@") {
		return invalid("to must be an e-mail address for mail")
	}
	if err := line("subject", m.GetSubject(), MaxSubject, m.GetChannel() == protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL); err != nil {
		return err
	}
	if m.GetBody() == "" || len(m.GetBody()) > MaxBody || !utf8.ValidString(m.GetBody()) {
		return invalid("body must be 1 to %d bytes of UTF-8", MaxBody)
	}
	return nil
}

func line(field, v string, max int, required bool) error {
	switch {
	case v == "" && required:
		return invalid("%s is required", field)
	case len(v) > max:
		return invalid("%s is longer than %d bytes", field, max)
	case !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0:
		return invalid("%s must be one line of UTF-8 text", field)
	}
	return nil
}

// cleanError keeps a transport's error short and on one line.
func cleanError(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxErrorLen {
		s = strings.ToValidUTF8(s[:maxErrorLen], "") + "..."
	}
	return s
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func statusName(s protocol.OutboxStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "OUTBOX_STATUS_"))
}
