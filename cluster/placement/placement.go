// Package placement decides where an actor lives: its identity hashes to one
// of P partitions (PartitionOf), and each partition's activations live on the
// member that currently leads the partition's Raft group (Table). It has no
// dependency on protoactor so that the simulation places actors with exactly
// the same logic as the production runtime (DESIGN.md §2, §4); the protoactor
// identity lookup built on it is in the leaderlookup subpackage.
package placement

import (
	"fmt"
	"hash/fnv"
)

// DefaultPartitions is P when the cluster is initialised without one
// (DESIGN.md §4). P is fixed for a cluster's life: changing it moves data.
const DefaultPartitions = 16

// PartitionOf maps an actor identity to its partition in [0, partitions).
//
// The hash is 64-bit FNV-1a (hash/fnv, New64a) of the bytes of
// kind + "/" + id, reduced mod partitions. Kinds never contain '/', so the
// input is unambiguous. Persisted data is stored by partition, so this
// function must never change: a different hash or input layout would strand
// every actor's state on the wrong Raft group. partition_test.go pins values.
//
// It panics if partitions < 1, which is a configuration bug, not a runtime
// condition.
func PartitionOf(kind, id string, partitions int) int {
	if partitions < 1 {
		panic(fmt.Sprintf("placement: PartitionOf with %d partitions", partitions))
	}
	h := fnv.New64a()
	// Writes to a hash.Hash never fail.
	_, _ = h.Write([]byte(kind))
	_, _ = h.Write([]byte{'/'})
	_, _ = h.Write([]byte(id))
	return int(h.Sum64() % uint64(partitions))
}
