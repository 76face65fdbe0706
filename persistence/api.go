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
	// Reply, when set, is the answer of the step that produced this write.
	// It is stored in the same batch, so it is durable exactly when the
	// write is: a request retried after an unknown outcome (a leadership
	// change mid-commit, a lost answer) finds it on whichever replica
	// activates the actor next and is answered without stepping again.
	// Each actor keeps its last MaxReplies replies; a write may carry a
	// reply alone (no events, snapshot or timers).
	Reply *Reply
	// Emitted are the step's domain events, appended to the namespace's
	// event feed in the same batch (feed.go); at most MaxEmitted.
	Emitted []*protocol.EventEnvelope
}

// Reply is the stored answer to one request.
type Reply struct {
	// RequestID is the caller's request id: 1 to MaxRequestIDLen bytes.
	RequestID string
	// Response is the answer as sent (the cluster host stores its
	// *protocol.Response).
	Response protocol.Message
}

// Limits on stored replies.
const (
	// MaxReplies is how many replies an actor keeps: a write that adds one
	// deletes the one MaxReplies older in the same batch. It matches the
	// host's in-memory window of recent responses, which Loaded.Replies
	// seeds.
	MaxReplies = 64
	// MaxRequestIDLen bounds a reply's request id; longer ids are refused
	// with ErrInvalidWrite (they would bloat every stored reply).
	MaxRequestIDLen = 128
)

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
	// Replies are the actor's stored replies, oldest first: at most
	// MaxReplies, those of its most recent writes that carried one.
	Replies []Reply
}
