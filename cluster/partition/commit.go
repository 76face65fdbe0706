package partition

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

type reqState uint8

const (
	reqQueued reqState = iota
	reqTaken
	reqAbandoned
)

type request struct {
	actor  persistence.ActorKey
	jw     *protocol.JournalWrite
	queued time.Time
	done   chan error
	state  reqState // guarded by Partition.mu
}

// proposal is one log entry in flight and the commits it carries.
type proposal struct {
	future raft.ApplyFuture
	reqs   []*request
	start  time.Time
}

// Commit replicates w through the partition's raft group (cluster.Journal).
// It returns nil once the write is committed by a quorum and applied to this
// replica; see the package doc for the errors and what they imply.
//
// ctx is honoured while the write waits to be proposed (the write is then
// not proposed at all); once proposed, Commit waits for the outcome.
func (p *Partition) Commit(ctx context.Context, w *persistence.Write) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	jw, err := persistence.EncodeReplicatedWrite(w)
	if err != nil {
		return fmt.Errorf("partition %d: %w", p.id, err)
	}
	if len(jw.Events) == 0 && jw.Snapshot == nil && len(jw.Timers) == 0 && jw.Reply == nil {
		return nil // nothing to make durable, as persistence.Store.Commit
	}
	if err := p.fsm.failed.Load(); err != nil {
		return fmt.Errorf("partition %d: commit %s: %w", p.id, w.Actor, ErrFailed)
	}
	// Fail fast on a follower: nothing is queued, nothing proposed.
	if p.raft.State() != raft.Leader {
		return fmt.Errorf("partition %d: commit %s: %w", p.id, w.Actor, p.notLeader())
	}
	r := &request{actor: w.Actor, jw: jw, queued: time.Now(), done: make(chan error, 1)}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return fmt.Errorf("partition %d: commit %s: %w", p.id, w.Actor, ErrClosed)
	}
	p.queue = append(p.queue, r)
	n := len(p.queue)
	wake := n == 1 || n >= p.waitTarget
	p.mu.Unlock()
	if wake {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	select {
	case err = <-r.done:
	case <-ctx.Done():
		p.mu.Lock()
		if r.state == reqQueued {
			r.state = reqAbandoned
			p.mu.Unlock()
			return ctx.Err()
		}
		p.mu.Unlock()
		err = <-r.done
	}
	p.metrics.commitLatency.Observe(time.Since(r.queued).Seconds())
	return err
}

// propose is the proposer goroutine: it turns whatever is queued into one
// log entry whenever an in-flight slot is free.
func (p *Partition) propose() {
	defer p.wg.Done()
	defer close(p.proposed)
	for {
		// A slot first: while all slots are busy the queue keeps growing,
		// which is what makes the next entry a bigger batch.
		select {
		case p.inflight <- struct{}{}:
		case <-p.stop:
			return
		}
		reqs, ok := p.take()
		if !ok {
			return
		}
		if len(reqs) == 0 {
			<-p.inflight
			continue
		}
		data, err := p.encode(reqs)
		if err != nil {
			<-p.inflight
			for _, r := range reqs {
				r.done <- err
			}
			continue
		}
		start := time.Now()
		f := p.raft.Apply(data, p.applyTimeout)
		p.stats.entries.Add(1)
		p.stats.writes.Add(uint64(len(reqs)))
		p.metrics.batchWrites.Observe(float64(len(reqs)))
		p.metrics.entryBytes.Observe(float64(len(data)))
		p.proposed <- proposal{future: f, reqs: reqs, start: start}
	}
}

// take waits for queued commits and returns up to maxBatch of them; false
// when the partition is closing.
//
// Batch size follows the load the way persistence's group commit does:
// callers in a closed loop come back right after their answer, so the
// writes answered last time (plus any still queued) estimate how many will
// be queued shortly. take waits for that many, but never longer than
// BatchWindow after a slot was freed (or the first one arrived, if later).
// Without the wait, 64 closed-loop callers split into two cohorts that
// alternate between entries, halving the writes per entry.
func (p *Partition) take() ([]*request, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 {
		if p.closing {
			return nil, false
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.stop:
		}
		p.mu.Lock()
	}
	target := min(max(int(p.lastBatch.Load()), 1), p.maxBatch)
	if p.window > 0 && len(p.queue) < target {
		// The window counts from when a slot was freed (or from the first
		// arrival, if later), as persistence's group commit does. Counting
		// from the first arrival alone expires it before it starts whenever
		// a raft round outlasts the window (the queue then holds writes
		// that arrived during the round), and the callers just answered
		// always miss the next entry: two cohorts alternate, each entry
		// carries half of them, and every per-entry cost (appends, fsyncs,
		// RPCs, applies on each replica) is paid twice.
		start := p.freeAt
		if q := p.queue[0].queued; q.After(start) {
			start = q
		}
		deadline := start.Add(p.window)
		p.waitTarget = target
		for len(p.queue) < target && !p.closing {
			d := time.Until(deadline)
			if d <= 0 {
				break
			}
			p.mu.Unlock()
			p.timer.Reset(d)
			select {
			case <-p.wake:
			case <-p.timer.C:
			case <-p.stop:
			}
			p.timer.Stop()
			p.mu.Lock()
		}
		p.waitTarget = int(^uint(0) >> 1)
	}
	if p.closing {
		return nil, false
	}
	n := min(len(p.queue), p.maxBatch)
	reqs := make([]*request, 0, n)
	for _, r := range p.queue[:n] {
		if r.state == reqAbandoned {
			continue
		}
		r.state = reqTaken
		reqs = append(reqs, r)
	}
	rest := copy(p.queue, p.queue[n:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	return reqs, true // empty when every taken commit was abandoned
}

func (p *Partition) encode(reqs []*request) ([]byte, error) {
	jws := make([]*protocol.JournalWrite, len(reqs))
	for i, r := range reqs {
		jws[i] = r.jw
	}
	data, err := persistence.MarshalReplicatedBatch(jws)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", p.id, err)
	}
	return data, nil
}

// await is the waiter goroutine: it resolves proposals in order and answers
// their commits.
func (p *Partition) await() {
	defer p.wg.Done()
	for pr := range p.proposed {
		err := p.waitFuture(pr.future)
		var resp any
		if err == nil {
			resp = pr.future.Response()
		}
		p.metrics.applyLatency.Observe(time.Since(pr.start).Seconds())
		p.answer(pr.reqs, err, resp)
		// The answered callers are the estimate of the next batch (see take);
		// the slot is freed only now so that they can queue again first.
		p.mu.Lock()
		p.lastBatch.Store(int64(len(pr.reqs) + len(p.queue)))
		p.freeAt = time.Now()
		p.mu.Unlock()
		<-p.inflight
	}
}

func (p *Partition) answer(reqs []*request, err error, resp any) {
	if err != nil {
		err = p.mapApplyErr(err)
		for _, r := range reqs {
			r.done <- fmt.Errorf("partition %d: commit %s: %w", p.id, r.actor, err)
		}
		return
	}
	res, ok := resp.(*applyResult)
	if !ok {
		err := fmt.Errorf("partition %d: state machine returned %T: %w", p.id, resp, ErrOutcomeUnknown)
		for _, r := range reqs {
			r.done <- err
		}
		return
	}
	for i, r := range reqs {
		switch {
		case res.err != nil:
			r.done <- fmt.Errorf("partition %d: commit %s: %w", p.id, r.actor, res.err)
		case res.skipped:
			// Cannot happen for an entry this leader just proposed: its
			// index is past everything applied.
			r.done <- fmt.Errorf("partition %d: commit %s: entry skipped as already applied: %w", p.id, r.actor, ErrOutcomeUnknown)
		case i >= len(res.errs):
			r.done <- fmt.Errorf("partition %d: commit %s: no result for write %d: %w", p.id, r.actor, i, ErrOutcomeUnknown)
		case res.errs[i] != nil:
			r.done <- fmt.Errorf("partition %d: %w", p.id, res.errs[i])
		default:
			r.done <- nil
		}
	}
}

// mapApplyErr translates raft's apply errors into the package's.
func (p *Partition) mapApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		// Refused before entering the log.
		return p.notLeader()
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Also refused before entering the log: this leader is handing
		// over, so the write belongs at the next one.
		return fmt.Errorf("%w (%w)", p.notLeader(), err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("raft apply queue full for %s: %w", p.applyTimeout, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w (%w)", ErrOutcomeUnknown, p.notLeader(), err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w (%w)", ErrOutcomeUnknown, ErrClosed, err)
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}
