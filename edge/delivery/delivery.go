// Package delivery takes due messages from the outbox actors and hands them
// to a transport: SMTP in production, the development mailbox in ward dev.
// It decides nothing about retries or bounds; it reports each outcome to the
// outbox actor, which does (actors/outbox).
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/protocol"
)

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// Transport delivers one message and says how it left.
type Transport interface {
	Deliver(ctx context.Context, m *protocol.OutboxMessage) (protocol.OutboxVia, error)
}

// Capture is the development transport: nothing leaves; the outbox keeps the
// message, body included, as sent to the dev mailbox.
type Capture struct{}

// Deliver implements Transport.
func (Capture) Deliver(context.Context, *protocol.OutboxMessage) (protocol.OutboxVia, error) {
	return protocol.OutboxVia_OUTBOX_VIA_DEV_MAILBOX, nil
}

// ErrNoSMSGateway is the failure of SMS on a transport without one.
var ErrNoSMSGateway = errors.New("no SMS gateway is configured")

// Sender runs the delivery loop for some tenants' outboxes.
type Sender struct {
	Actors    Requester
	Tenants   []string
	Transport Transport
	// Due wakes the loop (the outbox actors publish on outbox.Topic);
	// optional.
	Due <-chan protocol.Message
	// Poll is the loop's period when nothing wakes it; default 5s.
	Poll time.Duration
	// Lease is how long a taken message is held from other nodes'
	// senders; default 2 minutes.
	Lease  time.Duration
	Logger *slog.Logger

	once sync.Once
	wake chan struct{}
}

// Wake asks the loop to look now (after an enqueue in this process).
func (s *Sender) Wake() {
	select {
	case s.wakeChan() <- struct{}{}:
	default:
	}
}

func (s *Sender) wakeChan() chan struct{} {
	s.once.Do(func() { s.wake = make(chan struct{}, 1) })
	return s.wake
}

// Run delivers until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	if s.Poll == 0 {
		s.Poll = 5 * time.Second
	}
	if s.Lease == 0 {
		s.Lease = 2 * time.Minute
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	wake := s.wakeChan()
	due := s.Due
	t := time.NewTicker(s.Poll)
	defer t.Stop()
	for {
		for _, tenant := range s.Tenants {
			s.Once(ctx, tenant)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		case _, ok := <-due:
			if !ok {
				// The host stopped: a closed channel would spin.
				due = nil
			}
		}
	}
}

// Once delivers what is due in one tenant's outbox now and returns how
// many messages it handled.
func (s *Sender) Once(ctx context.Context, tenant string) int {
	lease := s.Lease
	if lease == 0 {
		lease = 2 * time.Minute
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	m, err := s.Actors.Request(ctx, outbox.KindName, tenant, &protocol.OutboxListPending{LeaseNanos: int64(lease)})
	if err != nil {
		if ctx.Err() == nil {
			log.Debug("outbox not reachable yet", "tenant", tenant, "err", err)
		}
		return 0
	}
	msgs := m.(*protocol.OutboxList).GetMessages()
	for _, msg := range msgs {
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		via, err := s.Transport.Deliver(dctx, msg)
		cancel()
		// Reports go through even while stopping, so a delivered message
		// is not sent again.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err != nil {
			// Never the body: it carries one-time secrets.
			log.Warn("outbox delivery failed", "tenant", tenant, "message", msg.GetId(), "attempt", msg.GetAttempts()+1, "err", err)
			_, err = s.Actors.Request(rctx, outbox.KindName, tenant, &protocol.OutboxMarkFailed{Id: msg.GetId(), Error: err.Error()})
		} else {
			_, err = s.Actors.Request(rctx, outbox.KindName, tenant, &protocol.OutboxMarkSent{Id: msg.GetId(), Via: via})
		}
		rcancel()
		if err != nil {
			log.Error("outbox report failed; the message is retried after its lease", "tenant", tenant, "message", msg.GetId(), "err", fmt.Errorf("report: %w", err))
		}
	}
	return len(msgs)
}
