// Package simulation is Ward's deterministic world: it runs the same actor
// code as production (actors.Step, actors.ApplyAll, Snapshot/Restore) and
// the real persistence.Store, in one goroutine, under a seeded scheduler on
// virtual time, and checks the properties DESIGN.md §7 promises against a
// reference model of what clients were told.
//
// # Determinism
//
// Everything happens in the goroutine that calls Run. Events sit in one
// queue ordered by (virtual time, sequence number); virtual time starts at
// Epoch and only moves when the next event is taken. Every random choice
// comes from a ChaCha8 stream derived from Config.Seed (separate streams for
// network/disk timing, faults, workload choices and actor entropy, so that
// changing one does not shift the others). Nothing reads the wall clock,
// crypto/rand or the global math/rand source. pebble runs goroutines of its
// own, but the host waits for every call to return and only its logical
// results (what Load, Commit and DueTimers return) reach the world, never
// anything that depends on when its background work ran.
//
// Every step, commit, reply, crash and restart is appended to a canonical
// trace (virtual time, identities, message type names and deterministic
// protobuf bytes) hashed with SHA-256 into Report.TraceHash: the same seed
// gives the same hash, bit for bit.
//
// # Host
//
// The simulated node hosts actors the way production does:
//
//   - activation loads the snapshot and later events from the store;
//   - a message is stepped (actors.Step) with virtual Now and the seeded
//     entropy; its events, a snapshot every Config.SnapshotEvery events and
//     its timer changes go to the store as one persistence.Write with
//     FirstSeq; a fired timer's record is deleted in that same write;
//   - only after Commit returns are the events applied to the live actor and
//     the replies, sends, timers and publications released (write-ahead);
//     a step that persists nothing replies at once;
//   - an actor handles one message at a time; others wait in its mailbox
//     while its write is on the (simulated) disk;
//   - an actor idle for a while is passivated and later re-activated from
//     the store; at random it is passivated at once (forced);
//   - durable timers are mirrored in memory from commits and re-read from
//     the store with DueTimers after a restart.
//
// # Fault model
//
//   - Crash (power cut) at random instants (exponential, mean
//     Config.CrashEvery), and right after a write is durable but before its
//     replies leave (probability Config.CrashAfterCommit per commit), so a
//     client sees no acknowledgement of a write that happened. A crash drops
//     every activation, mailbox, timer and write not yet committed; the disk
//     keeps exactly what was synced (pebble's vfs.MemFS.CrashClone); the
//     node restarts after 10 ms-1 s on the surviving disk.
//   - Messages to a node that is down are lost; replies already sent survive
//     the crash of their sender.
//   - Message delays: 1-10 ms, with 2% slow messages of 100 ms-1.5 s, so
//     messages of different clients reorder and replies can arrive after the
//     client gave up (3 s). Disk writes take 0.2-3 ms of virtual time.
//   - Timers fire 0-50 ms after their due time, or after a restart.
//   - Faults stop once the last session can have expired, so every timer
//     can fire before the final checks; they are never applied to the store
//     itself (no torn or lost synced writes: pebble's own tests cover that).
//
// # Workload and invariants
//
// Config.Clients clients create sessions (with random ttl, half short enough
// to expire during the run) and rotate (with the newest secret they were
// given, sometimes a superseded or forged one), touch, get and revoke them,
// one request at a time each; an admin client revokes and reads anyone's
// sessions concurrently. The reference model records only what was
// acknowledged, and when (a reply received before a request was sent binds
// that request). Unanswered requests are "happened or not". Checked on
// every reply, after every restart, on every passivation and at the end
// (each failure is one Report.ViolationDetails line):
//
//   - an acknowledged create exists after any crash (never NOT_FOUND);
//   - an acknowledged rotation's secret, or a later one, is the only one
//     accepted: superseded and forged secrets are refused, and the newest
//     acknowledged secret is accepted unless an unanswered rotation may have
//     replaced it; a rotation from generation g issues g+1;
//   - a session seen revoked or expired is never active again, and refuses
//     rotate and touch; no session is revoked without a revoke request, or
//     expired before its expiry;
//   - a request sent after expiry+TimerSlack finds the session ended
//     (expired unless revoked before), and it refuses rotation;
//   - the generation a reply shows never goes below one acknowledged before
//     the request was sent;
//   - state rebuilt from the store equals the in-memory state (Snapshot
//     messages compared with protocol.Equal) at every passivation, idle or
//     forced;
//   - no event is applied that was not committed, and the store holds
//     exactly the committed history after every restart (replayed state,
//     last sequence number and durable timers compared with a shadow copy
//     fed only by successful commits);
//   - at the end, no timer due more than TimerSlack ago is still stored.
//
// After the workload's Config.Ops requests the run drains (faults continue
// until the last possible expiry, then stop for TimerSlack) and probes every
// session with a get.
package simulation
