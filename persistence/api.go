package persistence

import (
	"time"

	"github.com/wardhq/ward/protocol"
)

// ActorKey names one actor's journal. It mirrors actors.Identity without
// importing actors/ (persistence depends on protocol/ only).
type ActorKey struct {
	Kind string
	ID   string
}

func (k ActorKey) String() string { return k.Kind + "/" + k.ID }

// Write is everything one actor step makes durable, applied atomically: its
// events, optionally a snapshot, and its timer changes. Commit returns only
// after the write is synced.
type Write struct {
	Actor ActorKey
	// FirstSeq is the sequence number of Events[0]. It must be exactly one
	// past the actor's last stored sequence number; anything else means two
	// activations of one actor wrote concurrently, and the write is refused
	// with ErrSeqConflict.
	FirstSeq uint64
	Events   []protocol.Message
	// Snapshot, when set, is the state after the last event of this write
	// (or after Snapshot.Seq when Events is empty). Events at or below its
	// Seq are deleted in the same batch.
	Snapshot *Snapshot
	// Timers are applied in order after the events. Setting a timer name
	// replaces any earlier due time of the same name.
	Timers []TimerChange
}

// Snapshot is an actor's whole state as of event Seq.
type Snapshot struct {
	Seq   uint64
	State protocol.Message
}

// TimerChange sets or cancels one durable timer of the writing actor.
type TimerChange struct {
	Name    string
	Due     time.Time
	Payload protocol.Message // nil when Cancel
	Cancel  bool
}

// Timer is one stored durable timer.
type Timer struct {
	Actor   ActorKey
	Name    string
	Due     time.Time
	Payload protocol.Message
}

// Loaded is an actor's journal as read on activation: the newest snapshot (if
// any) and every event after it, in order.
type Loaded struct {
	Snapshot *Snapshot // nil when the actor never snapshotted
	Events   []protocol.Message
	// LastSeq is the sequence number of the last event (0 for a new actor);
	// the next write's FirstSeq is LastSeq+1.
	LastSeq uint64
}
