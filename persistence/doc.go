// Package persistence is Ward's durable storage: one pebble database per node
// holding every hosted actor's event log, its newest snapshot and its durable
// timers. Writes from many actors share one pebble batch and one fsync (group
// commit); a Write is durable when Commit returns nil.
//
// # Key layout
//
// Every key starts with a 4-byte big-endian namespace followed by one family
// byte; the rest depends on the family. Integers are big-endian so that byte
// order is numeric order.
//
//	family          key                                        value (framed, see below)
//	--------------  -----------------------------------------  --------------------------------
//	format version  ns=0 | 'V'                                 "ward-store/1" (raw, unframed)
//	event           ns | 'e' | actor | seq(8)                  event as protocol.Marshal bytes
//	snapshot        ns | 's' | actor                           seq(8) | state (protocol.Marshal)
//	timer           ns | 't' | actor | str(name)               due(8)
//	timer due index ns | 'd' | due(8) | actor | str(name)      payload (protocol.Marshal) or empty
//	reply           ns | 'r' | actor | n(8)                    str(request id) | response (protocol.Marshal)
//	applied index   ns | 'A'   (replicated namespaces only)    index(8) of the last applied Raft entry
//	event feed      ns | 'f' | pos(8)                          protocol.EventEnvelope (protocol.Marshal)
//	feed head       ns | 'F'                                   pos(8) of the last feed entry ever written
//
// where
//
//	actor   = str(kind) | str(id)
//	str(x)  = uvarint(len(x)) | x
//	due(8)  = uint64(unix nanoseconds) XOR 1<<63, so that times before 1970 sort first
//
// Length-prefixing kind, id and name makes the actor encoding prefix-free: no
// (kind, id) pair's encoding is a prefix of another's, so the events of actor
// ("a", "bc") can never be read as those of ("ab", "c"), and a prefix scan over
// one actor's events never strays into another's.
//
// The timer family is the primary record (one per actor and timer name) and
// tells a replacement or cancellation which due-index entry to delete; the due
// index makes DueTimers a single range scan in due order.
//
// Replies are numbered per actor from 1 over its whole life (n is the
// actor's reply count, kept by the validation cache like its sequence
// numbers): a write that carries one stores it at n = last+1 and deletes
// n-MaxReplies in the same batch, so an actor holds its last MaxReplies
// replies, Load reads them with one prefix scan in order, and every replica,
// applying the same writes to the same state, uses the same keys. Snapshots
// do not touch them: replies answer requests, not state.
//
// # Namespaces
//
// The namespace is reserved for Raft partitions, which will each own a
// contiguous slice of the keyspace so that a partition can be snapshotted,
// transferred or dropped with one range operation. Namespace 0 is the
// node-local space: it holds the format-version key and the actor data of a
// node without partitions; Commit writes there. Partition p uses namespace
// p+1, written only through ApplyReplicated by the partition's Raft state
// machine, read through Namespace(p+1), snapshotted and restored whole with
// SnapshotNamespace and RestoreNamespace (replicated.go and nssnapshot.go
// say how, and why applying needs no fsync). Namespaces stay below
// 0xF0000000: keys with the leading byte 0xF0 belong to persistence/raftstore
// (Raft logs, stable state and snapshots on the same database, reached
// through DB; group 0 is the cluster's meta group, group p+1 partition p),
// and the single key "\xf1node/identity" is the cluster node's identity
// record (name, incarnation, partition count; cluster/node.go).
//
// # Values
//
// Every value except the format version is framed as
//
//	crc32c(payload) (4 bytes, big-endian) | payload
//
// using the Castagnoli polynomial. A mismatch on read is reported as an error
// wrapping ErrCorrupt that names the key family and actor. The format-version
// value is kept raw so that tools show it as text; it is compared exactly, so
// any damage to it is reported (as ErrVersion) rather than accepted.
package persistence
