// Package clusterbench measures the cluster end to end: N nodes in one
// process (each with its own pebble store, raft over real loopback TCP,
// gossip over UDP/TCP, actor remoting over gRPC), register puts through
// Host.Request, so every commit is an actor step, a raft round to R
// replicas and an fsync on each.
package clusterbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
	regs   []*prometheus.Registry
	// candidacies counts partition replicas turning candidate: a follower
	// that missed its leader for a heartbeat timeout, whether or not its
	// (pre-)vote then started a new term.
	candidacies atomic.Int64
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
		reg := prometheus.NewRegistry()
		c.regs = append(c.regs, reg)
		cfg := cluster.NodeConfig{
			Host: cluster.Config{
				Kinds:  []actors.Kind{register.Kind},
				Logger: log, Registerer: reg,
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
	for _, n := range c.nodes {
		for p := range cluster.DefaultPartitions {
			if pt := n.Partition(p); pt != nil {
				ch := make(chan raft.Observation, 16)
				go func() {
					for o := range ch {
						if s, ok := o.Data.(raft.RaftState); ok && s == raft.Candidate {
							c.candidacies.Add(1)
						}
					}
				}()
				obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
					_, ok := o.Data.(raft.RaftState)
					return ok
				})
				pt.Raft().RegisterObserver(obs)
				b.Cleanup(func() {
					pt.Raft().DeregisterObserver(obs)
					close(ch)
				})
			}
		}
	}
	return c
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// load runs workers concurrent writers for about dur, each putting to its
// own registers (ids chosen by pick) through node via(worker), and reports
// commits/s, latency percentiles and CPU-µs per commit, and where the work
// went: WAL fsyncs and heap bytes per commit, writes per raft entry, the
// mean time from proposing an entry to its apply on the leader, and raft
// elections during the run (any would make the figures meaningless).
func load(b *testing.B, c *benchCluster, workers int, dur time.Duration, pick func(w, i int) string, via func(w int) *cluster.Node) {
	b.Helper()
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	stop := time.Now().Add(dur)
	before := c.counters(b)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	defer observe(b)()
	if os.Getenv("WARD_BENCH_RAFTMETRICS") != "" {
		defer raftTimers(b)()
	}
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
	delta := c.counters(b).minus(before)
	runtime.ReadMemStats(&ms1)
	if len(lats) == 0 {
		b.Fatalf("no request succeeded (%d errors)", errs)
	}
	slices.Sort(lats)
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(lats)), "cpu-µs/commit")
	b.ReportMetric(float64(errs), "errors")
	commits := float64(len(lats))
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/commits/1024, "alloc-KiB/commit")
	b.ReportMetric(delta.fsyncs/commits, "fsyncs/commit")
	if delta.fsyncs > 0 {
		b.ReportMetric(delta.fsyncSecs/delta.fsyncs*1e3, "fsync-ms")
	}
	if delta.entries > 0 {
		b.ReportMetric(delta.writes/delta.entries, "writes/entry")
		b.ReportMetric(delta.applySum/delta.entries*1e3, "apply-ms/entry")
	}
	b.ReportMetric(delta.terms, "elections")
	b.ReportMetric(delta.candidacies, "candidacies")
	if delta.commitN > 0 {
		b.ReportMetric(delta.commitSum/delta.commitN*1e3, "partition-commit-ms")
	}
}

// counters are cumulative figures summed over the nodes, read before and
// after a run: where a commit's time and fsyncs go.
type counters struct {
	fsyncs, fsyncSecs  float64 // WAL fsyncs and their time, all stores
	entries, writes    float64 // raft entries proposed and the writes they carried
	applySum           float64 // seconds from proposing an entry to its local apply
	commitSum, commitN float64 // partition commit latency, queueing included
	terms              float64 // sum over partitions of the highest raft term seen: elections
	candidacies        float64
}

func (a counters) minus(b counters) counters {
	return counters{a.fsyncs - b.fsyncs, a.fsyncSecs - b.fsyncSecs, a.entries - b.entries, a.writes - b.writes,
		a.applySum - b.applySum, a.commitSum - b.commitSum, a.commitN - b.commitN, a.terms - b.terms,
		a.candidacies - b.candidacies}
}

func (c *benchCluster) counters(b *testing.B) counters {
	out := counters{candidacies: float64(c.candidacies.Load())}
	for _, s := range c.stores {
		var m dto.Metric
		if err := s.DB().Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
			b.Fatal(err)
		}
		out.fsyncs += float64(m.GetHistogram().GetSampleCount())
		out.fsyncSecs += m.GetHistogram().GetSampleSum() / 1e9 // observed in ns
	}
	for p := range cluster.DefaultPartitions {
		var term uint64
		for _, n := range c.nodes {
			if pt := n.Partition(p); pt != nil {
				term = max(term, pt.Raft().CurrentTerm())
			}
		}
		out.terms += float64(term)
	}
	for _, reg := range c.regs {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				switch mf.GetName() {
				case "ward_partition_batch_writes":
					out.entries += float64(h.GetSampleCount())
					out.writes += h.GetSampleSum()
				case "ward_partition_apply_seconds":
					out.applySum += h.GetSampleSum()
				case "ward_partition_commit_seconds":
					out.commitSum += h.GetSampleSum()
					out.commitN += float64(h.GetSampleCount())
				}
			}
		}
	}
	return out
}

const duration = 5 * time.Second

// observe starts what the environment asks for over a measured phase
// only (the test binary's -cpuprofile and -trace also cover cluster start
// and settling): WARD_BENCH_CPUPROFILE=f a CPU profile, WARD_BENCH_TRACE=f
// an execution trace. The returned function stops them.
func observe(b *testing.B) (stop func()) {
	var stops []func()
	start := func(env string, begin func(io.Writer) error, end func()) {
		f := os.Getenv(env)
		if f == "" {
			return
		}
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := begin(out); err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() { end(); _ = out.Close() })
	}
	start("WARD_BENCH_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	start("WARD_BENCH_TRACE", trace.Start, trace.Stop)
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// writers is the number of concurrent writers of the commit benchmarks:
// 256, or WARD_BENCH_WRITERS to see how latency and batching move with load.
func writers() int {
	if n, err := strconv.Atoi(os.Getenv("WARD_BENCH_WRITERS")); err == nil && n > 0 {
		return n
	}
	return 256
}

// BenchmarkClusterIdle: CPU of 3 idle nodes (R=3, P=16), the fixed cost
// every loaded figure carries: heartbeats, raft's commit-index appends
// every CommitTimeout per follower and group, gossip.
func BenchmarkClusterIdle(b *testing.B) {
	c := startCluster(b, 3, 3)
	_ = c
	b.ResetTimer()
	for range b.N {
		stop := observe(b)
		cpu0, t0 := cpuTime(), time.Now()
		time.Sleep(duration)
		b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/time.Since(t0).Seconds(), "cpu-ms/s")
		stop()
	}
}

// BenchmarkClusterCommitsAllPartitions: 3 nodes, R=3, P=16, writers spread
// over all partitions, each request entering at a random node.
func BenchmarkClusterCommits(b *testing.B) {
	for _, tc := range []struct{ nodes, replicas int }{{1, 1}, {3, 3}, {5, 3}} {
		b.Run(fmt.Sprintf("nodes=%d/R=%d/all-partitions", tc.nodes, tc.replicas), func(b *testing.B) {
			c := startCluster(b, tc.nodes, tc.replicas)
			b.ResetTimer()
			for range b.N {
				load(b, c, writers(), duration,
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

// raftTimers collects hashicorp/raft's own timers (all groups, all nodes
// of the process) until the returned function logs their means: where a
// raft round's time goes (WARD_BENCH_RAFTMETRICS=1).
func raftTimers(b *testing.B) func() {
	sink := gometrics.NewInmemSink(time.Hour, time.Hour)
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics, cfg.EnableServiceLabel = false, false, false
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		b.Fatal(err)
	}
	return func() {
		_, _ = gometrics.NewGlobal(cfg, &gometrics.BlackholeSink{})
		type agg struct{ n, sum float64 }
		by := map[string]*agg{}
		for _, iv := range sink.Data() {
			iv.RLock()
			for _, s := range iv.Samples {
				name := s.Name
				a := by[name]
				if a == nil {
					a = &agg{}
					by[name] = a
				}
				a.n += float64(s.Count)
				a.sum += s.Sum
			}
			iv.RUnlock()
		}
		for _, name := range slices.Sorted(maps.Keys(by)) {
			a := by[name]
			fmt.Fprintf(os.Stderr, "%-50s n=%8.0f mean=%8.3f ms\n", name, a.n, a.sum/a.n)
		}
	}
}
