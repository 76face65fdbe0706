package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/edge/registers"
	"github.com/wardhq/ward/simulation/linearizability"
)

// leaderOf returns the status's leader of partition p.
func leaderOf(st *cluster.Status, p int) string {
	for _, ps := range st.Partitions {
		if ps.ID == p {
			return ps.Leader
		}
	}
	return ""
}

// TestClusterLeaderKillUnderLoad: SIGKILL the leader of a busy partition
// during a write load. No acknowledged write is lost, writes resume, and
// the time from the kill to the first acknowledged write on that partition
// is measured.
func TestClusterLeaderKillUnderLoad(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	const P = cluster.DefaultPartitions
	// Registers on one busy partition, and some elsewhere.
	busy := placement.PartitionOf(register.KindName, "busy-0", P)
	var ids []string
	for i := 0; len(ids) < 24; i++ {
		id := fmt.Sprintf("busy-%d", i)
		if placement.PartitionOf(register.KindName, id, P) == busy || i%4 == 0 {
			ids = append(ids, id)
		}
	}
	st, err := c.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	victim := leaderOf(st, busy)
	var live []string
	for _, n := range c.names() {
		if n != victim {
			live = append(live, n)
		}
	}
	t.Logf("partition %d is led by %s; writing through %v", busy, victim, live)

	type acked struct {
		v      registers.Value
		unsure bool // a write after this ack had an unknown outcome
	}
	var (
		mu        sync.Mutex
		last      = map[string]acked{}
		killedAt  atomic.Int64
		recovered atomic.Int64
		acks      atomic.Int64
		failures  atomic.Int64
		slowest   time.Duration // longest write in flight at or after the kill
		// lateFailures are writes sent after recovery that failed.
		lateFailures []string
		stop         = make(chan struct{})
		wg           sync.WaitGroup
	)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[(w*7+seq)%len(ids)]
				val := fmt.Sprintf("w%d-%d", w, seq)
				t0 := time.Now()
				v, err := c.put(live[seq%len(live)], id, val)
				mu.Lock()
				if killedAt.Load() != 0 {
					slowest = max(slowest, time.Since(t0))
				}
				if err != nil {
					a := last[id]
					a.unsure = true
					last[id] = a
					failures.Add(1)
					// Once the killed leader's partition took a write again,
					// every partition has had its election; a write sent
					// after that has its whole budget to find the leaders.
					if r := recovered.Load(); r != 0 && t0.UnixNano() > r {
						lateFailures = append(lateFailures, fmt.Sprintf("put %s after %s: %v", id, time.Since(t0).Round(time.Millisecond), err))
					}
				} else {
					if a := last[id]; v.Version > a.v.Version {
						last[id] = acked{v: v}
					}
					acks.Add(1)
					// Only a write sent after the kill shows recovery.
					if k := killedAt.Load(); k != 0 && t0.UnixNano() > k && placement.PartitionOf(register.KindName, id, P) == busy && recovered.Load() == 0 {
						recovered.Store(time.Now().UnixNano())
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Second)
	before := acks.Load()
	c.kill(victim)
	killedAt.Store(time.Now().UnixNano())
	deadline := time.Now().Add(20 * time.Second)
	for recovered.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if recovered.Load() == 0 {
		t.Fatalf("no write on partition %d acknowledged within 20s of killing its leader", busy)
	}
	failover := time.Duration(recovered.Load() - killedAt.Load())
	t.Logf("FAILOVER: SIGKILL of %s (leader of partition %d) -> first acknowledged write on it: %s (acks before kill %d, total %d, failed %d; slowest write from the kill on %s)",
		victim, busy, failover.Round(time.Millisecond), before, acks.Load(), failures.Load(), slowest.Round(time.Millisecond))
	if len(lateFailures) > 0 {
		t.Fatalf("%d writes sent after recovery failed, first: %s", len(lateFailures), lateFailures[0])
	}

	// Bring the victim back; every acknowledged write is there, read from
	// every node.
	c.start(victim)
	c.waitStatus(live[0], 60*time.Second, "victim rejoins", healthy("n1", "n2", "n3"))
	for _, via := range c.names() {
		for id, a := range last {
			got, err := c.get(via, id)
			if err != nil {
				t.Fatalf("get %s via %s: %v", id, via, err)
			}
			if got.Version < a.v.Version || got.Version == a.v.Version && got.Value != a.v.Value {
				t.Fatalf("acknowledged write lost: %s is %+v via %s, acknowledged %+v", id, got, via, a.v)
			}
			if !a.unsure && got != a.v {
				t.Fatalf("%s is %+v via %s, last write %+v was acknowledged and none after it failed", id, got, via, a.v)
			}
		}
	}
}

// TestClusterLinearizable: clients put, get and compare-and-set a few
// registers through random nodes while nodes are SIGKILLed and restarted;
// porcupine checks the history is linearizable.
func TestClusterLinearizable(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	keys := []string{"lin-a", "lin-b", "lin-c", "lin-d"}
	var (
		rec   linearizability.Recorder
		down  sync.Map // node name -> true while killed
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		total atomic.Int64
	)
	for client := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 7))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				names := c.names()
				via := names[rng.IntN(len(names))]
				if _, isDown := down.Load(via); isDown {
					continue
				}
				key := keys[rng.IntN(len(keys))]
				val := fmt.Sprintf("c%d-%d", client, seq)
				total.Add(1)
				switch r := rng.IntN(10); {
				case r < 4:
					id := rec.Start(client, linearizability.Op{Kind: linearizability.Get, Key: key})
					v, err := c.get(via, key)
					if err != nil {
						rec.Finish(id, linearizability.Result{Unknown: true})
						continue
					}
					rec.Finish(id, linearizability.Result{Value: v.Value, Version: v.Version, OK: true})
				case r < 8:
					id := rec.Start(client, linearizability.Op{Kind: linearizability.Put, Key: key, Value: val})
					v, err := c.put(via, key, val)
					if err != nil {
						rec.Finish(id, linearizability.Result{Unknown: true})
						continue
					}
					rec.Finish(id, linearizability.Result{Value: v.Value, Version: v.Version, OK: true})
				default:
					// CAS against a version read just before (the read is
					// recorded too).
					gid := rec.Start(client, linearizability.Op{Kind: linearizability.Get, Key: key})
					cur, err := c.get(via, key)
					if err != nil {
						rec.Finish(gid, linearizability.Result{Unknown: true})
						continue
					}
					rec.Finish(gid, linearizability.Result{Value: cur.Value, Version: cur.Version, OK: true})
					id := rec.Start(client, linearizability.Op{Kind: linearizability.CAS, Key: key, Value: val, ExpectVersion: cur.Version})
					code, b, err := c.do(via, http.MethodPost, "/v1/registers/"+key+"/cas", map[string]any{"expect_version": cur.Version, "value": val})
					switch {
					case err == nil && code == http.StatusConflict:
						rec.Finish(id, linearizability.Result{OK: false})
					case err == nil && code == http.StatusOK:
						v, err := decodeValue(code, b, nil)
						if err != nil {
							rec.Finish(id, linearizability.Result{Unknown: true})
							continue
						}
						rec.Finish(id, linearizability.Result{Value: v.Value, Version: v.Version, OK: true})
					default:
						rec.Finish(id, linearizability.Result{Unknown: true})
					}
				}
			}
		}()
	}
	// Faults: kill a node, bring it back, kill another, bring it back.
	for _, victim := range []string{"n1", "n2"} {
		time.Sleep(1500 * time.Millisecond)
		down.Store(victim, true)
		c.kill(victim)
		time.Sleep(2 * time.Second)
		c.start(victim)
		c.waitStatus("n3", 60*time.Second, victim+" back", healthy("n1", "n2", "n3"))
		down.Delete(victim)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	res, err := rec.Check(2 * time.Minute)
	t.Logf("porcupine: %d operations (%d attempted), result %v", rec.Len(), total.Load(), res)
	if err != nil {
		path := filepath.Join(t.TempDir(), "history.html")
		_ = rec.Visualize(path)
		if errors.Is(err, linearizability.ErrCheckTimedOut) {
			t.Fatalf("linearizability check timed out: %v", err)
		}
		t.Fatalf("history is not linearizable: %v (visualization: %s)", err, path)
	}
}

// TestClusterRollingRestartUnderLoad: the operator's rolling upgrade. Each
// node in turn is stopped gracefully (SIGTERM) and started again while
// writers keep writing through the other nodes; a graceful stop hands its
// leaderships over first, so no write through a running node may fail, and
// every acknowledged write is there at the end, read from every node.
func TestClusterRollingRestartUnderLoad(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	names := c.names()
	var down atomic.Value // the node being restarted, or ""
	down.Store("")
	load := c.startWriters(4, "roll", func(w, seq int) (string, bool) {
		via := names[(w+seq)%len(names)]
		return via, via != down.Load().(string)
	}, func(via string) bool { return via == down.Load().(string) })
	time.Sleep(time.Second)
	for _, n := range names {
		down.Store(n)
		t0 := time.Now()
		c.stop(n)
		c.start(n)
		others := slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == n })
		c.waitStatus(others[0], 60*time.Second, n+" back", healthy(names...))
		t.Logf("%s stopped, restarted and back in %s", n, time.Since(t0).Round(time.Millisecond))
		down.Store("")
		time.Sleep(time.Second)
	}
	load.stopAndCheck("ROLLING RESTART", names)
}

// writeLoad is writers putting to their registers through running nodes
// until stopped, recording the last acknowledged value of each register,
// the writes that failed and the slowest write.
type writeLoad struct {
	c        *tcluster
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	last     map[string]registers.Value
	acks     int
	failures []string
	slowest  time.Duration
}

// startWriters starts writers putting to 24 registers named prefix-i. via
// picks the node for a writer's next write (false: skip this turn); a
// failed write through a node for which excused reports true (a node being
// stopped: its answer may be lost with it) is neither counted nor checked.
func (c *tcluster) startWriters(writers int, prefix string, via func(w, seq int) (string, bool), excused func(via string) bool) *writeLoad {
	l := &writeLoad{c: c, stop: make(chan struct{}), last: map[string]registers.Value{}}
	for w := range writers {
		l.wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				node, ok := via(w, seq)
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				id := fmt.Sprintf("%s-%d", prefix, (w*5+seq)%24)
				t0 := time.Now()
				v, err := c.put(node, id, fmt.Sprintf("w%d-%d", w, seq))
				d := time.Since(t0)
				l.mu.Lock()
				l.slowest = max(l.slowest, d)
				switch {
				case err != nil && excused(node):
				case err != nil:
					l.failures = append(l.failures, fmt.Sprintf("put %s via %s after %s: %v", id, node, d.Round(time.Millisecond), err))
				default:
					if v.Version > l.last[id].Version {
						l.last[id] = v
					}
					l.acks++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stopAndCheck stops the writers, fails the test if any write failed, and
// reads every register through every node in readVia: no acknowledged
// write may be missing.
func (l *writeLoad) stopAndCheck(what string, readVia []string) {
	t := l.c.t
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d writes acknowledged, %d failed, slowest %s", what, l.acks, len(l.failures), l.slowest.Round(time.Millisecond))
	if len(l.failures) > 0 {
		t.Fatalf("%s: %d writes through running nodes failed, first: %s", what, len(l.failures), l.failures[0])
	}
	for _, via := range readVia {
		for id, want := range l.last {
			got, err := l.c.get(via, id)
			if err != nil {
				t.Fatalf("%s: get %s via %s: %v", what, id, via, err)
			}
			if got.Version < want.Version || got.Version == want.Version && got.Value != want.Value {
				t.Fatalf("%s: acknowledged write lost: %s is %+v via %s, acknowledged %+v", what, id, got, via, want)
			}
		}
	}
}
