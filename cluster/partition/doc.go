// Package partition runs one Raft-replicated partition of Ward's actor
// journal on this node: a hashicorp/raft group whose log, stable state and
// snapshots live in the node's pebble database (persistence/raftstore, group
// p+1; group 0 is reserved for the meta group) and whose state machine is
// namespace p+1 of the node's persistence.Store.
//
// # Writes
//
// Commit has the signature of cluster.Journal's. Commits queue on the
// partition; a proposer goroutine takes everything queued (up to
// MaxBatchWrites) and proposes it as ONE Raft log entry (a
// protocol.JournalBatch), so many actors' writes share one entry, one
// replication round and one fsync on each replica. At most MaxInflight
// entries (default 1) are in flight; while they are, new commits queue up,
// and before cutting the next entry the proposer waits (at most BatchWindow)
// until as many writes are queued as were answered last time, so callers in
// a closed loop all land in the same entry (measured: 64 concurrent actors
// give 50-63 writes per entry here). Commit returns after the entry is
// committed by a quorum AND applied to the local store, with the write's own
// result: every replica validates each write of an entry against the same
// state (sequence numbers, see persistence.Write), so a write refused with
// persistence.ErrSeqConflict is refused identically everywhere and changed
// nothing anywhere.
//
// A Commit on a node that is not the leader fails with a *NotLeaderError
// (errors.Is(err, ErrNotLeader)) naming the leader when known: nothing was
// proposed. So does one refused by raft because a leadership transfer is
// under way. If leadership is lost while the entry is in flight the outcome is
// unknown (the entry may still commit under the next leader): the error
// wraps both ErrOutcomeUnknown and ErrNotLeader. The caller must then drop
// its activation and reload from the new leader; the sequence check fences
// any retry, so an unknown outcome is never applied twice.
//
// # Reads
//
// Load and DueTimers are served only by the leader, and only after the
// leader has completed a raft.Barrier in its current leadership: the
// barrier commits an entry of the new term and waits until the local state
// machine has applied everything before it, so the leader's namespace holds
// every write acknowledged by any earlier leader. Until then they return
// ErrNotReady; on a follower a *NotLeaderError. The OnLeadership callback
// reports true at exactly that moment (ready to serve) and false when
// leadership is lost, so the host can passivate activations.
//
// A deposed leader that has not noticed yet (at most LeaderLeaseTimeout) can
// still serve a Load of old state. That cannot corrupt an actor: its next
// write carries a FirstSeq the new leader's state has moved past, and the
// state machine refuses it with ErrSeqConflict on every replica.
//
// It could, however, answer a read from that old state. VerifyLeader fences
// such reads: it confirms leadership with a quorum round (raft.VerifyLeader)
// started after the call, in the same leadership (LeaderEpoch) the caller
// loaded its state in. Concurrent callers share one round: a caller waits
// for the next round to start rather than joining one under way, so the
// cost is one quorum round trip per read burst, not per read.
//
// # Apply and restart
//
// The state machine applies entries with persistence.Store.ApplyReplicated,
// which records the applied index in the same pebble batch and skips entries
// at or below it, so replaying the log after a restart applies nothing twice.
// Raft is configured with NoSnapshotRestoreOnStart: the namespace already
// holds at least the last snapshot's state (snapshots are written with a
// sync, which makes every earlier unsynced apply durable through pebble's
// single WAL), so a restart replays only the log tail instead of rewriting
// the whole namespace.
package partition
