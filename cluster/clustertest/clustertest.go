// Package clustertest starts a real one-node cluster (pebble store, meta
// group, raft partitions, protoactor host) for the tests and benchmarks of
// the layers above the cluster: the edge handlers run against the real
// request path, not a double of it.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/persistence"
)

// Partitions is the test node's partition count: small, so it starts fast.
const Partitions = 4

// OneNode opens a store in a fresh directory under the system temp dir,
// starts a node hosting kinds and waits until every partition has a
// leader, it leads the meta group (so it can write the key state) and its
// signing keys exist. stop stops the node, closes the store and removes
// the directory; packages share one node and call stop from TestMain, or
// let the process end.
func OneNode(kinds ...actors.Kind) (n *cluster.Node, stop func(), err error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := os.MkdirTemp("", "ward-clustertest-")
	if err != nil {
		return nil, nil, err
	}
	var store *persistence.Store
	stop = func() {
		if n != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = n.Stop(ctx)
			cancel()
		}
		if store != nil {
			_ = store.Close()
		}
		_ = os.RemoveAll(dir)
	}
	fail := func(err error) (*cluster.Node, func(), error) {
		stop()
		return nil, nil, err
	}
	if store, err = persistence.Open(dir, persistence.Options{Logger: log}); err != nil {
		return fail(err)
	}
	n, err = cluster.StartNode(cluster.NodeConfig{
		Store: store, Partitions: Partitions,
		Host: cluster.Config{Kinds: kinds, Logger: log, Registerer: prometheus.NewRegistry()},
	})
	if err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !n.Ready() || !n.Meta().IsLeader() {
		if time.Now().After(deadline) {
			return fail(errors.New("clustertest: node not ready within 60s"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		_, err := n.KeySet()
		if err == nil {
			return n, stop, nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("clustertest: no signing keys within 60s: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
