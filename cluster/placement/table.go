package placement

import (
	"fmt"
	"sync"
)

// Table is one member's view of who leads each partition. The Raft layer
// feeds it (Set on every leadership observation, with the Raft term as the
// epoch); placement reads it to route activations and to passivate the
// activations of partitions this member no longer leads.
//
// Every member has its own Table; views may lag each other briefly. Two
// members can therefore both believe they lead a partition for a moment, but
// only the real leader can commit (Raft fences a deposed leader), and the
// deposed member passivates as soon as its own Table learns.
//
// A Table is safe for concurrent use.
type Table struct {
	mu      sync.RWMutex
	entries []leadership
	subs    map[uint64]func(partition int)
	nextSub uint64
}

type leadership struct {
	leader  string // "" while no leader is known
	epoch   uint64
	claimed bool // the leader itself said so (Claim), not a second-hand Set
}

// NewTable returns a table of partitions entries, all without a known leader.
// It panics if partitions < 1 (a configuration bug).
func NewTable(partitions int) *Table {
	if partitions < 1 {
		panic(fmt.Sprintf("placement: NewTable with %d partitions", partitions))
	}
	return &Table{
		entries: make([]leadership, partitions),
		subs:    make(map[uint64]func(int)),
	}
}

// Partitions is P, the number of partitions the table covers.
func (t *Table) Partitions() int { return len(t.entries) }

// Set records a second-hand observation: member leader leads partition in
// epoch (the Raft term); leader "" means no leader is currently known (an
// election is under way, or this member stepped down). It reports whether
// the entry changed.
//
// Observations may arrive out of order, so an older epoch never overwrites a
// newer one. A second-hand observation can pair a new epoch with the old
// leader: a Raft follower adopts the term of a vote request before it learns
// who won, and keeps naming the previous leader meanwhile. So at an equal
// epoch a Set may replace another Set, but never a Claim.
//
// Subscribers are called after the table is updated, outside its lock, on
// the caller's goroutine. It panics if partition is out of range.
func (t *Table) Set(partition int, leader string, epoch uint64) bool {
	return t.set(partition, leadership{leader: leader, epoch: epoch})
}

// Claim records that leader itself says it leads partition in epoch: Raft
// elects at most one leader per term, so a claim is authoritative for its
// epoch. At an equal epoch it replaces any Set and is replaced only by ""
// (the leader stepped down, or no longer serves).
func (t *Table) Claim(partition int, leader string, epoch uint64) bool {
	return t.set(partition, leadership{leader: leader, epoch: epoch, claimed: leader != ""})
}

func (t *Table) set(partition int, e leadership) bool {
	t.mu.Lock()
	if partition < 0 || partition >= len(t.entries) {
		t.mu.Unlock()
		panic(fmt.Sprintf("placement: Set partition %d of %d", partition, len(t.entries)))
	}
	cur := t.entries[partition]
	switch {
	case e.epoch < cur.epoch,
		e.epoch == cur.epoch && cur.leader == e.leader && (cur.claimed || !e.claimed),
		e.epoch == cur.epoch && cur.claimed && e.leader != "":
		t.mu.Unlock()
		return false
	}
	changed := cur.leader != e.leader || cur.epoch != e.epoch
	t.entries[partition] = e
	subs := make([]func(int), 0, len(t.subs))
	if changed {
		for _, fn := range t.subs {
			subs = append(subs, fn)
		}
	}
	t.mu.Unlock()

	for _, fn := range subs {
		fn(partition)
	}
	return changed
}

// Leader returns the leader of partition and the epoch it was observed in;
// ok is false when no leader is known (the epoch is still the latest seen).
// It panics if partition is out of range.
func (t *Table) Leader(partition int) (leader string, epoch uint64, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if partition < 0 || partition >= len(t.entries) {
		panic(fmt.Sprintf("placement: Leader partition %d of %d", partition, len(t.entries)))
	}
	e := t.entries[partition]
	return e.leader, e.epoch, e.leader != ""
}

// Subscribe calls fn with the partition number after every change to that
// partition's entry, until cancel is called. The notification carries only
// the partition on purpose: concurrent Sets may notify out of order, so a
// subscriber reads the current entry with Leader rather than trusting a
// value that may already be stale. fn must be quick and must not block (it
// runs on the goroutine of whoever called Set, typically Raft's observer).
func (t *Table) Subscribe(fn func(partition int)) (cancel func()) {
	t.mu.Lock()
	id := t.nextSub
	t.nextSub++
	t.subs[id] = fn
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.subs, id)
			t.mu.Unlock()
		})
	}
}
