package persistence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wardhq/ward/protocol"
)

// Event feed
//
// Domain events an actor emits (protocol.EventEnvelope) are stored with the
// write of the step that emitted them, in the same pebble batch: an event
// exists exactly when the state change it reports does. Each namespace keeps
// its own feed, numbered from 1 in commit order; the number of the last one
// is stored beside it ('F'), so positions are never reused, not even after
// every entry was trimmed. A relay reads the feed (View.Feed), hands the
// entries on, and trims what it handed on (TrimFeed for the local namespace,
// a trim entry through Raft for a partition, so every replica trims the
// same). Positions follow from the namespace's state and the order of
// writes, so every replica of a partition numbers its feed the same.

const (
	famFeed     byte = 'f'
	famFeedHead byte = 'F'
)

// MaxEmitted bounds the domain events of one write.
const MaxEmitted = 64

// FeedEntry is one stored domain event and its position in its feed.
type FeedEntry struct {
	Position uint64
	Event    *protocol.EventEnvelope
}

func feedKey(ns uint32, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(familyPrefix(ns, famFeed), pos)
}

func feedHeadKey(ns uint32) []byte { return familyPrefix(ns, famFeedHead) }

// readFeedHead returns the namespace's last feed position, 0 if none.
func readFeedHead(g getter, ns uint32) (uint64, error) {
	return readUint64(g, feedHeadKey(ns), fmt.Sprintf("feed head of namespace %d", ns))
}

// feedHead returns the namespace's feed head as of the batch being built.
func (s *Store) feedHead(sp *journalSpace, bb *batchBuilder) (uint64, error) {
	if bb.feedDirty {
		return bb.feedHead, nil
	}
	if !sp.feedHeadKnown {
		h, err := readFeedHead(s.db, sp.ns)
		if err != nil {
			return 0, err
		}
		sp.feedHead, sp.feedHeadKnown = h, true
	}
	return sp.feedHead, nil
}

// applyFeed adds a write's emitted events to the batch at the next
// positions.
func (s *Store) applyFeed(sp *journalSpace, bb *batchBuilder, b *pebble.Batch, w *encodedWrite) error {
	if len(w.emitted) == 0 {
		return nil
	}
	head, err := s.feedHead(sp, bb)
	if err != nil {
		return err
	}
	for _, ev := range w.emitted {
		head++
		if err := b.Set(feedKey(sp.ns, head), ev, nil); err != nil {
			return fmt.Errorf("persistence: commit %s: batch feed entry: %w", w.key, err)
		}
	}
	if err := b.Set(feedHeadKey(sp.ns), uint64Value(head), nil); err != nil {
		return fmt.Errorf("persistence: commit %s: batch feed head: %w", w.key, err)
	}
	bb.feedHead, bb.feedDirty = head, true
	return nil
}

// feedCommitted records a committed batch's feed head in sp.
func feedCommitted(sp *journalSpace, bb *batchBuilder) {
	if bb.feedDirty {
		sp.feedHead, sp.feedHeadKnown = bb.feedHead, true
	}
}

// trimFeed deletes the namespace's feed entries at or below through.
func trimFeed(b *pebble.Batch, ns uint32, through uint64) error {
	if through == 0 {
		return nil
	}
	end := feedKey(ns, through+1)
	if through == ^uint64(0) {
		end = prefixEnd(familyPrefix(ns, famFeed))
	}
	return b.DeleteRange(feedKey(ns, 0), end, nil)
}

// TrimFeed deletes the local namespace's feed entries at or below through.
// It need not be synced: a trim lost in a crash only makes the relay hand
// the same entries on again, which its consumer recognises by position.
// ctx is for symmetry with a partition's trim, which waits on Raft.
func (s *Store) TrimFeed(ctx context.Context, through uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.reader(func() error {
		b := s.db.NewBatch()
		defer func() { _ = b.Close() }()
		if err := trimFeed(b, s.ns, through); err != nil {
			return fmt.Errorf("persistence: trim feed: %w", err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("persistence: trim feed: %w", pebbleErr(err))
		}
		return nil
	})
}

// Feed returns the local namespace's feed entries after position after.
func (s *Store) Feed(after uint64, limit int) ([]FeedEntry, error) {
	return s.Namespace(s.ns).Feed(after, limit)
}

// Feed returns up to limit of the namespace's feed entries after position
// after, in position order.
func (v *View) Feed(after uint64, limit int) ([]FeedEntry, error) {
	if limit <= 0 || after == ^uint64(0) {
		return nil, nil
	}
	var out []FeedEntry
	err := v.s.reader(func() error {
		prefix := familyPrefix(v.ns, famFeed)
		it, err := v.s.db.NewIter(&pebble.IterOptions{LowerBound: feedKey(v.ns, after+1), UpperBound: prefixEnd(prefix)})
		if err != nil {
			return fmt.Errorf("persistence: namespace %d: read feed: %w", v.ns, err)
		}
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+8 {
				_ = it.Close()
				return fmt.Errorf("persistence: namespace %d: feed key %x is %d bytes: %w", v.ns, k, len(k), ErrCorrupt)
			}
			pos := binary.BigEndian.Uint64(k[len(prefix):])
			what := fmt.Sprintf("feed entry %d of namespace %d", pos, v.ns)
			p, err := unframe(it.Value(), what)
			if err != nil {
				_ = it.Close()
				return err
			}
			m, err := protocol.Unmarshal(p)
			if err != nil {
				_ = it.Close()
				return fmt.Errorf("persistence: %s: %w: %w", what, ErrCorrupt, err)
			}
			ev, ok := m.(*protocol.EventEnvelope)
			if !ok {
				_ = it.Close()
				return fmt.Errorf("persistence: %s: holds %s, not an event envelope: %w", what, protocol.TypeName(m), ErrCorrupt)
			}
			out = append(out, FeedEntry{Position: pos, Event: ev})
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("persistence: namespace %d: read feed: %w", v.ns, pebbleErr(err))
		}
		return nil
	})
	return out, err
}
