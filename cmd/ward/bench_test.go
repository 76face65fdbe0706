package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkNodesRegisterPuts: 3 `ward node` processes (R=3, P=16) and 256
// concurrent HTTP clients in this process, each putting its own registers
// through node (client mod 3), so about 2/3 of the puts take a remoting hop
// to their partition's leader. Reports puts/s, latency, and the nodes' CPU
// per put (from /proc, without this process's clients). The nodes inherit
// WARD_BENCH_NODE_ENV (space-separated NAME=VALUE pairs), to compare
// runtime settings such as GOMAXPROCS on the same binary.
//
//	go test -run '^$' -bench BenchmarkNodesRegisterPuts -benchtime 1x ./cmd/ward
func BenchmarkNodesRegisterPuts(b *testing.B) {
	c := newTestCluster(b)
	c.env = strings.Fields(os.Getenv("WARD_BENCH_NODE_ENV"))
	c.formThree()
	c.waitStatus("n1", 60*time.Second, "leaders balanced", balanced)
	tr := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	names := c.names()
	put := func(w, i int) (time.Duration, error) {
		n := c.node(names[w%len(names)])
		body := []byte(`{"value":"v"}`)
		req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/registers/b-%d-%d", n.http, w, i%8), bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	const workers = 256
	run := func(d time.Duration) (lats []time.Duration, errs int, elapsed time.Duration) {
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		t0 := time.Now()
		stop := t0.Add(d)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				bad := 0
				for i := 0; time.Now().Before(stop); i++ {
					lat, err := put(w, i)
					if err != nil {
						bad++
						continue
					}
					mine = append(mine, lat)
				}
				mu.Lock()
				lats = append(lats, mine...)
				errs += bad
				mu.Unlock()
			}()
		}
		wg.Wait()
		return lats, errs, time.Since(t0)
	}
	run(2 * time.Second) // connections, activations, steady batching
	b.ResetTimer()
	for range b.N {
		cpu0 := c.nodesCPU(b)
		lats, errs, elapsed := run(5 * time.Second)
		cpu := c.nodesCPU(b) - cpu0
		if len(lats) == 0 {
			b.Fatalf("no put succeeded (%d errors)", errs)
		}
		slices.Sort(lats)
		b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "puts/s")
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(cpu.Microseconds())/float64(len(lats)), "node-cpu-µs/put")
		b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "node-cores")
		b.ReportMetric(float64(errs), "errors")
	}
}

// nodesCPU sums user and system CPU time of the running node processes.
func (c *tcluster) nodesCPU(tb testing.TB) time.Duration {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, n := range c.nodes {
		if n.cmd == nil || n.cmd.Process == nil || n.cmd.ProcessState != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			tb.Fatal(err)
		}
		// Fields after the parenthesised command name; utime and stime
		// are the 14th and 15th fields of the whole line, in clock ticks
		// (100 per second on Linux).
		rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		for _, f := range rest[11:13] {
			ticks, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			sum += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return sum
}

// BenchmarkNodesIdle: CPU of 3 idle `ward node` processes (R=3, P=16),
// what a cluster costs with nothing to do: raft heartbeats and commit-index
// appends, gossip, the reconcilers.
//
//	go test -run '^$' -bench BenchmarkNodesIdle -benchtime 1x ./cmd/ward
func BenchmarkNodesIdle(b *testing.B) {
	c := newTestCluster(b)
	c.env = strings.Fields(os.Getenv("WARD_BENCH_NODE_ENV"))
	c.formThree()
	c.waitStatus("n1", 60*time.Second, "leaders balanced", balanced)
	time.Sleep(2 * time.Second)
	b.ResetTimer()
	for range b.N {
		cpu0, t0 := c.nodesCPU(b), time.Now()
		time.Sleep(5 * time.Second)
		b.ReportMetric(float64((c.nodesCPU(b)-cpu0).Milliseconds())/time.Since(t0).Seconds(), "node-cpu-ms/s")
	}
}
