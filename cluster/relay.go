package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// Event relay
//
// An actor's emitted domain events are stored in its journal's event feed by
// the write of the step that emitted them (persistence's feed.go), so they
// are exactly as durable as the state change. The relay moves them on: it
// reads each feed this node serves (a partition only on its leader), hands
// each tenant's entries, in feed order, to that tenant's event log actor
// (Config.EventLogKind), and then trims what every tenant took. Delivery is
// at least once: a relay that fails or dies after the hand-over and before
// the trim hands the same entries on again (from this node or from the next
// leader), and the event log skips positions it already holds, per source
// feed. A tenant whose hand-over fails holds back the trim of everything
// from its first entry on, so nothing is trimmed before it was taken.

// feedJournal is a journal with an event feed.
type feedJournal interface {
	Feed(after uint64, limit int) ([]persistence.FeedEntry, error)
	TrimFeed(ctx context.Context, through uint64) error
}

// Bounds of one relay round per feed.
const (
	relayBatch        = 500 // feed entries read per round, and per hand-over
	relayTrimTimeout  = 5 * time.Second
	relayRoundTimeout = 10 * time.Second
	relayMinInterval  = 50 * time.Millisecond
)

type eventRelay struct {
	h    *Host
	on   atomic.Bool // the event log kind is hosted
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newRelay(h *Host) *eventRelay {
	return &eventRelay{h: h, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// start runs the relay if the event log kind is hosted (known only once
// the host registered its kinds).
func (r *eventRelay) start() {
	_, on := r.h.kinds[r.h.cfg.EventLogKind]
	r.on.Store(on)
	if !on {
		close(r.done)
		return
	}
	go r.run()
}

func (r *eventRelay) stop() {
	select {
	case <-r.quit:
	default:
		close(r.quit)
	}
	<-r.done
}

// notify asks for a round soon: a step just emitted events.
func (r *eventRelay) notify() {
	if !r.on.Load() {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *eventRelay) run() {
	defer close(r.done)
	t := time.NewTimer(r.h.cfg.RelayPoll)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-t.C:
		case <-r.wake:
			// Under load every commit wakes the relay; rounds at most every
			// relayMinInterval let one hand-over and one trim per partition
			// carry many events instead of one each.
			if d := relayMinInterval - time.Since(last); d > 0 {
				select {
				case <-time.After(d):
				case <-r.quit:
					return
				}
			}
		case <-r.quit:
			return
		}
		last = time.Now()
		more := r.round()
		wait := r.h.cfg.RelayPoll
		if more {
			wait = 0 // a feed had a full batch: go on at once
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(wait, time.Millisecond))
	}
}

// round relays every feed once; it reports whether any feed may hold more.
func (r *eventRelay) round() bool {
	more := false
	if r.h.parts == nil {
		if fj, ok := r.h.journal.(feedJournal); ok {
			more = r.relayFeed("local", fj)
		}
		return more
	}
	for p, j := range r.h.parts {
		select {
		case <-r.quit:
			return false
		default:
		}
		if fj, ok := j.(feedJournal); ok {
			if r.relayFeed("p"+strconv.Itoa(p), fj) {
				more = true
			}
		}
	}
	return more
}

// handOver appends entries of one source feed to the tenant's event log.
func (r *eventRelay) handOver(ctx context.Context, source, tenant string, entries []*protocol.FeedEntry) error {
	_, err := r.h.Request(ctx, r.h.cfg.EventLogKind, tenant, &protocol.EventLogAppend{Source: source, Entries: entries})
	return err
}

// oneByOne hands entries over singly, dropping each the log refuses as
// malformed; it returns how many it dropped and the first other error.
func (r *eventRelay) oneByOne(ctx context.Context, source, tenant string, list []*protocol.FeedEntry) (int, error) {
	bad := 0
	for _, e := range list {
		err := r.handOver(ctx, source, tenant, []*protocol.FeedEntry{e})
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			bad++
			r.h.log.Error("dropping a domain event the event log refuses", "source", source, "tenant", tenant,
				"position", e.GetPosition(), "type", e.GetEvent().GetType(), "id", e.GetEvent().GetId(), "err", err)
			continue
		}
		if err != nil {
			return bad, err
		}
	}
	return bad, nil
}

// relayFeed hands one feed's oldest entries on and trims them; it reports
// whether the batch was full.
func (r *eventRelay) relayFeed(source string, fj feedJournal) bool {
	entries, err := fj.Feed(0, relayBatch)
	if err != nil {
		if !errors.Is(err, partition.ErrNotLeader) && !errors.Is(err, partition.ErrNotReady) {
			r.h.log.Warn("event relay cannot read a feed", "source", source, "err", err)
		}
		return false
	}
	if len(entries) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayRoundTimeout)
	defer cancel()

	// Per tenant, in feed order; tenants in order of first appearance.
	var order []string
	byTenant := make(map[string][]*protocol.FeedEntry)
	through := entries[len(entries)-1].Position
	dropped := 0
	for _, e := range entries {
		t := e.Event.GetTenant()
		if validID(t) != nil {
			// An event without a tenant has no log to go to; the emitting
			// actor has a bug. It is counted and trimmed, not kept forever.
			dropped++
			r.h.log.Error("dropping a domain event without a valid tenant", "source", source,
				"position", e.Position, "type", e.Event.GetType(), "id", e.Event.GetId())
			continue
		}
		if _, ok := byTenant[t]; !ok {
			order = append(order, t)
		}
		byTenant[t] = append(byTenant[t], &protocol.FeedEntry{Position: e.Position, Event: e.Event})
	}
	relayed := 0 // net of entries dropped one by one
	for _, t := range order {
		list := byTenant[t]
		err := r.handOver(ctx, source, t, list)
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			// The log refuses a batch whole; a malformed entry must not
			// hold back its tenant's feed forever. One at a time, the
			// entries it refuses are dropped (an emitter bug, logged).
			var bad int
			bad, err = r.oneByOne(ctx, source, t, list)
			dropped += bad
			relayed -= bad
		}
		if err != nil {
			r.h.metrics.relayed.WithLabelValues("failed").Add(float64(len(list)))
			r.h.log.Warn("event relay: hand-over to the event log failed; retried next round",
				"source", source, "tenant", t, "entries", len(list), "err", err)
			through = min(through, list[0].Position-1)
			continue
		}
		relayed += len(list)
	}
	r.h.metrics.relayed.WithLabelValues("ok").Add(float64(relayed))
	r.h.metrics.relayed.WithLabelValues("dropped").Add(float64(dropped))
	if through == 0 {
		return false
	}
	tctx, tcancel := context.WithTimeout(context.Background(), relayTrimTimeout)
	defer tcancel()
	if err := fj.TrimFeed(tctx, through); err != nil {
		// The entries are handed on; the next round hands them again and
		// the event log skips them.
		r.h.log.Warn("event relay: trim failed", "source", source, "through", through, "err", fmt.Sprint(err))
		return false
	}
	return len(entries) == relayBatch && through == entries[len(entries)-1].Position
}
