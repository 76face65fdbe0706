// Package clusterbench measures the cluster end to end: N nodes in one
// process (each with its own pebble store, raft over real loopback TCP,
// gossip over UDP/TCP, actor remoting over gRPC), register puts through
// Host.Request, so every commit is an actor step, a raft round to R
// replicas and an fsync on each.
package clusterbench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

func freeAddr(b *testing.B) string {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	b.Fatal("no free port")
	return ""
}

type benchCluster struct {
	nodes  []*cluster.Node
	stores []*persistence.Store
}

func startCluster(b *testing.B, size, replicas int) *benchCluster {
	b.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var gossip []string
	for range size {
		gossip = append(gossip, freeAddr(b))
	}
	c := &benchCluster{}
	for i := range size {
		dir := filepath.Join(b.TempDir(), fmt.Sprintf("n%d", i+1))
		store, err := persistence.Open(dir, persistence.Options{Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		c.stores = append(c.stores, store)
		cfg := cluster.NodeConfig{
			Host: cluster.Config{
				Kinds:  []actors.Kind{register.Kind},
				Logger: log, Registerer: prometheus.NewRegistry(),
				RequestTimeout: 10 * time.Second,
			},
			Store: store, Name: fmt.Sprintf("n%d", i+1),
			Replicas: replicas, GossipAddr: gossip[i], Timing: membership.LocalTiming(),
		}
		if size > 1 {
			cfg.Join = gossip
			cfg.BootstrapExpect = size
		}
		n, err := cluster.StartNode(cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range c.nodes {
			_ = n.Stop(ctx)
		}
		for _, s := range c.stores {
			_ = s.Close()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready := true
		for _, n := range c.nodes {
			ready = ready && n.Ready()
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("cluster not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let rebalancing settle (preferred-leader transfers) before measuring.
	time.Sleep(3 * time.Second)
	return c
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// load runs workers concurrent writers for about dur, each putting to its
// own registers (ids chosen by pick) through node via(worker), and reports
// commits/s, latency percentiles and CPU-µs per commit.
func load(b *testing.B, c *benchCluster, workers int, dur time.Duration, pick func(w, i int) string, via func(w int) *cluster.Node) {
	b.Helper()
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	stop := time.Now().Add(dur)
	cpu0, t0 := cpuTime(), time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := via(w)
			var mine []time.Duration
			bad := 0
			for i := 0; time.Now().Before(stop); i++ {
				start := time.Now()
				_, err := n.Request(context.Background(), register.KindName, pick(w, i), &protocol.RegisterPut{Value: "v"})
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	if len(lats) == 0 {
		b.Fatalf("no request succeeded (%d errors)", errs)
	}
	slices.Sort(lats)
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(lats)), "cpu-µs/commit")
	b.ReportMetric(float64(errs), "errors")
}

const duration = 5 * time.Second

// BenchmarkClusterCommitsAllPartitions: 3 nodes, R=3, P=16, writers spread
// over all partitions, each request entering at a random node.
func BenchmarkClusterCommits(b *testing.B) {
	for _, tc := range []struct{ nodes, replicas int }{{1, 1}, {3, 3}, {5, 3}} {
		b.Run(fmt.Sprintf("nodes=%d/R=%d/all-partitions", tc.nodes, tc.replicas), func(b *testing.B) {
			c := startCluster(b, tc.nodes, tc.replicas)
			b.ResetTimer()
			for range b.N {
				load(b, c, 256, duration,
					func(w, i int) string { return fmt.Sprintf("r-%d-%d", w, i%8) },
					func(w int) *cluster.Node { return c.nodes[w%len(c.nodes)] })
			}
		})
	}
}

// BenchmarkClusterOnePartition: every writer's registers hash to one
// partition (one raft group's throughput).
func BenchmarkClusterOnePartition(b *testing.B) {
	c := startCluster(b, 3, 3)
	var ids []string
	for i := 0; len(ids) < 512; i++ {
		id := fmt.Sprintf("one-%d", i)
		if placement.PartitionOf(register.KindName, id, cluster.DefaultPartitions) == 0 {
			ids = append(ids, id)
		}
	}
	b.ResetTimer()
	for range b.N {
		load(b, c, 256, duration,
			func(w, i int) string { return ids[(w*2+i%2)%len(ids)] },
			func(w int) *cluster.Node { return c.nodes[w%len(c.nodes)] })
	}
}

// BenchmarkCrossNodeRequest: one request at a time from a node to actors
// whose partition another node leads (a remoting hop each way), against
// the same to actors it leads itself.
func BenchmarkCrossNodeRequest(b *testing.B) {
	c := startCluster(b, 3, 3)
	from := c.nodes[0]
	var local, remote []string
	for i := 0; len(local) < 64 || len(remote) < 64; i++ {
		id := fmt.Sprintf("x-%d", i)
		p := placement.PartitionOf(register.KindName, id, cluster.DefaultPartitions)
		leader, _, _ := from.Table.Leader(p)
		if leader == from.MemberID() {
			local = append(local, id)
		} else {
			remote = append(remote, id)
		}
	}
	for _, tc := range []struct {
		name string
		ids  []string
	}{{"remote-leader", remote}, {"local-leader", local}} {
		b.Run(tc.name, func(b *testing.B) {
			ids := tc.ids
			// Reads: no commit, so this is the routing cost (plus the read
			// fence's quorum round).
			for _, id := range ids {
				if _, err := from.Request(context.Background(), register.KindName, id, &protocol.RegisterPut{Value: "x"}); err != nil {
					b.Fatal(err)
				}
			}
			lats := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := from.Request(context.Background(), register.KindName, ids[i%len(ids)], &protocol.RegisterGet{}); err != nil {
					b.Fatal(err)
				}
				lats = append(lats, time.Since(start))
			}
			slices.Sort(lats)
			b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		})
	}
}
