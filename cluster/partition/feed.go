package partition

import (
	"context"
	"fmt"
	"time"

	"github.com/wardhq/ward/persistence"
)

// Feed reads the partition's event feed (see persistence's feed.go) after
// position after. Only the ready leader serves it: the relay that reads it
// runs there.
func (p *Partition) Feed(after uint64, limit int) ([]persistence.FeedEntry, error) {
	if err := p.readCheck(); err != nil {
		return nil, err
	}
	return p.view.Feed(after, limit)
}

// TrimFeed deletes the feed entries at or below through on every replica,
// through one Raft entry. It is proposed directly, not batched with writes:
// a relay trims once per round.
func (p *Partition) TrimFeed(ctx context.Context, through uint64) error {
	if err := p.readCheck(); err != nil {
		return err
	}
	data, err := persistence.MarshalFeedTrim(through)
	if err != nil {
		return err
	}
	timeout := p.applyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, max(time.Millisecond, time.Until(d)))
	}
	f := p.raft.Apply(data, timeout)
	if err := p.waitFuture(f); err != nil {
		return fmt.Errorf("partition %d: trim feed through %d: %w", p.id, through, p.mapApplyErr(err))
	}
	if res, ok := f.Response().(*applyResult); ok && res.err != nil {
		return fmt.Errorf("partition %d: trim feed through %d: %w", p.id, through, res.err)
	}
	return nil
}
