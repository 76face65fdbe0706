package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/edge/registers"
)

// formFour starts n1..n4 with --bootstrap-expect 4 and waits until the
// cluster is healthy and balanced.
func (c *tcluster) formFour(extra ...string) {
	c.t.Helper()
	for i := 1; i <= 4; i++ {
		c.add(i)
	}
	for i := 1; i <= 4; i++ {
		c.start(fmt.Sprintf("n%d", i), append([]string{"--bootstrap-expect", "4"}, extra...)...)
	}
	c.waitStatus("n1", 90*time.Second, "4-node cluster forms", func(st *cluster.Status) bool {
		return healthy("n1", "n2", "n3", "n4")(st) && balanced(st) && len(st.Members) == 4
	})
}

// idsPerPartition returns n register ids on every partition, grouped by
// partition.
func idsPerPartition(prefix string, n int) [][]string {
	const P = cluster.DefaultPartitions
	out := make([][]string, P)
	for i, full := 0, 0; full < P; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		p := placement.PartitionOf(register.KindName, id, P)
		if len(out[p]) < n {
			out[p] = append(out[p], id)
			if len(out[p]) == n {
				full++
			}
		}
	}
	return out
}

// putRetry writes id via via, retrying for a bounded time: placement may
// lag a healthy status by a moment. Every write it reports was
// acknowledged.
func (c *tcluster) putRetry(via, id, value string, within time.Duration) registers.Value {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := c.put(via, id, value)
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("put %s via %s: still failing after %s: %v", id, via, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkAcked reads every register from every node in via and compares it
// with the last acknowledged write.
func (c *tcluster) checkAcked(what string, via []string, want map[string]registers.Value) {
	c.t.Helper()
	for _, node := range via {
		for id, w := range want {
			t0 := time.Now()
			got, err := c.get(node, id)
			if d := time.Since(t0); d > 300*time.Millisecond {
				c.t.Logf("slow read %s: get %s (p%d) via %s: %s", what, id, placement.PartitionOf(register.KindName, id, cluster.DefaultPartitions), node, d)
			}
			if err != nil {
				c.t.Fatalf("%s: get %s via %s: %v", what, id, node, err)
			}
			if got != w {
				c.t.Fatalf("%s: %s via %s is %+v, acknowledged %+v", what, id, node, got, w)
			}
		}
	}
}

func member(st *cluster.Status, name string) (cluster.MemberStatus, bool) {
	for _, m := range st.Members {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.MemberStatus{}, false
}

// replicatedWithout: every partition has a leader and r replicas, exactly
// the assigned ones, none of them gone (neither in the raft configuration
// nor in the assignment), and gone has left the meta group.
func replicatedWithout(gone string, r int) func(*cluster.Status) bool {
	return func(st *cluster.Status) bool {
		if len(st.Partitions) != cluster.DefaultPartitions || len(st.Errors) > 0 {
			return false
		}
		for _, p := range st.Partitions {
			if p.Leader == "" || p.Leader == gone || len(p.Replicas) != r || !slices.Equal(p.Replicas, p.Assigned) || slices.Contains(p.Replicas, gone) {
				return false
			}
		}
		return st.Meta.Leader != "" && st.Meta.Leader != gone && !slices.Contains(st.Meta.Replicas, gone)
	}
}

// TestClusterDeadNodeReplicasRecreated: four nodes, R=3, a short
// --dead-after. A node holding replicas is SIGKILLed; after dead-after the
// meta leader declares it dead and the planner re-creates its replicas on
// the other three: every partition ends with three replicas, none on the
// dead node, which the status shows as "dead". Every acknowledged write
// reads back from every live node, and new writes work.
func TestClusterDeadNodeReplicasRecreated(t *testing.T) {
	const deadAfter = 4 * time.Second
	c := newTestCluster(t)
	start := time.Now()
	c.formFour("--dead-after", deadAfter.String(), "--replicas", "3")
	t.Logf("4 nodes formed and balanced in %s", time.Since(start).Round(time.Millisecond))

	// Two registers on every partition, written twice through every node.
	ids := idsPerPartition("dead", 2)
	want := map[string]registers.Value{}
	for round := range 2 {
		for p, pids := range ids {
			for j, id := range pids {
				via := c.names()[(p+j+round)%4]
				v := c.putRetry(via, id, fmt.Sprintf("r%d-%s", round, id), 30*time.Second)
				if v.Version != uint64(round+1) {
					t.Fatalf("put %s: version %d in round %d", id, v.Version, round)
				}
				want[id] = v
			}
		}
	}

	// The victim: not the meta leader (so the leader's dead-after clock
	// starts at the kill), holding replicas, and leading the most.
	st, err := c.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	victim, most := "", -1
	for _, m := range st.Members {
		if m.Name != st.Meta.Leader && m.Replicas > 0 && m.Leaders > most {
			victim, most = m.Name, m.Leaders
		}
	}
	if victim == "" {
		t.Fatalf("no member other than the meta leader %s holds replicas: %+v", st.Meta.Leader, st.Members)
	}
	vm, _ := member(st, victim)
	var live []string
	for _, n := range c.names() {
		if n != victim {
			live = append(live, n)
		}
	}
	t.Logf("killing %s (%d replicas, %d leaders); meta leader %s", victim, vm.Replicas, vm.Leaders, st.Meta.Leader)

	// Writers through the live nodes from before the kill until the leaders
	// are balanced again: the failover, the re-replication and the leader
	// moves that follow must fail none of them.
	load := c.startWriters(4, "dead-bg", func(w, seq int) (string, bool) { return live[(w+seq)%len(live)], true },
		func(string) bool { return false })
	time.Sleep(500 * time.Millisecond)
	c.kill(victim)
	killed := time.Now()
	st = c.waitStatus(live[0], 90*time.Second, "replicas of the dead "+victim+" re-created", func(st *cluster.Status) bool {
		m, ok := member(st, victim)
		return ok && m.State == "dead" && m.Replicas == 0 && m.Leaders == 0 && replicatedWithout(victim, 3)(st)
	})
	took := time.Since(killed)
	t.Logf("RE-REPLICATION: SIGKILL of %s -> every partition back to 3 replicas on %v: %s (dead-after %s)",
		victim, live, took.Round(time.Millisecond), deadAfter)
	// Then the preferred leaders take over (leadership transfers, spaced
	// per partition); reads are checked once the leaders are balanced.
	st = c.waitStatus(live[0], 60*time.Second, "leaders balanced after re-replication", func(st *cluster.Status) bool {
		return replicatedWithout(victim, 3)(st) && balanced(st)
	})
	t.Logf("SETTLED: SIGKILL of %s -> leaders balanced on %v: %s", victim, live, time.Since(killed).Round(time.Millisecond))
	load.stopAndCheck("KILL, RE-REPLICATION AND REBALANCING UNDER LOAD", live)
	// The assignment only leaves a member the meta leader declared dead:
	// before dead-after it was still assigned.
	if took < deadAfter {
		t.Fatalf("replicas moved off %s %s after the kill, before dead-after (%s)", victim, took, deadAfter)
	}
	for _, m := range st.Members {
		if m.Name != victim && (m.State != "alive" || m.Replicas != cluster.DefaultPartitions) {
			t.Fatalf("member %s after re-replication: %+v (want alive, %d replicas)", m.Name, m, cluster.DefaultPartitions)
		}
	}
	if len(st.Meta.Voters) != 3 {
		t.Fatalf("meta voters %v after %s died, want the 3 live members", st.Meta.Voters, victim)
	}

	// Every acknowledged write, from every live node.
	reads := time.Now()
	c.checkAcked("after re-replication", live, want)
	t.Logf("%d reads in %s", len(want)*len(live), time.Since(reads).Round(time.Millisecond))
	// New writes on every partition, through every live node.
	for p, pids := range ids {
		for j, id := range pids {
			via := live[(p+j)%len(live)]
			v := c.putRetry(via, id, "after-"+id, 10*time.Second)
			if v.Version != want[id].Version+1 {
				t.Fatalf("put %s after re-replication: version %d after %d", id, v.Version, want[id].Version)
			}
			want[id] = v
		}
	}
	c.checkAcked("after new writes", live, want)
}

// wardCLI runs the ward binary and returns its combined output.
func (c *tcluster) wardCLI(args ...string) (string, error) {
	out, err := c.cli(args...).CombinedOutput()
	return string(out), err
}

// TestClusterRemoveNode: `ward cluster remove NAME` on a live member (the
// meta leader, asked through another node): the member is marked removed at
// once, its replicas are re-created on the others, it leaves the meta group
// and ends with nothing. Writes go on during the removal and none
// acknowledged is lost. Unknown names are refused with a clear error and a
// non-zero exit, for remove and drain; removing twice is accepted and
// changes nothing; a removed member cannot be drained (removal is final).
func TestClusterRemoveNode(t *testing.T) {
	c := newTestCluster(t)
	c.formFour()
	server := func(name string) string { return "http://" + c.node(name).http }

	ids := idsPerPartition("rm", 1)
	want := map[string]registers.Value{}
	for p, pids := range ids {
		id := pids[0]
		want[id] = c.putRetry(c.names()[p%4], id, "v0-"+id, 30*time.Second)
	}

	// Bad input: an unknown name, for remove and drain.
	for _, verb := range []string{"remove", "drain"} {
		out, err := c.wardCLI("cluster", verb, "no-such-node", "--server", server("n2"))
		if err == nil {
			t.Fatalf("ward cluster %s of an unknown node exited 0:\n%s", verb, out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Fatalf("ward cluster %s of an unknown node: %v", verb, err)
		}
		if !strings.Contains(out, "unknown member") || !strings.Contains(out, "no-such-node") || !strings.Contains(out, "404") {
			t.Fatalf("ward cluster %s of an unknown node does not say which name is unknown:\n%s", verb, out)
		}
	}
	// A missing name is a usage error.
	if out, err := c.wardCLI("cluster", "remove", "--server", server("n2")); err == nil {
		t.Fatalf("ward cluster remove without a name exited 0:\n%s", out)
	}
	st, err := c.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 4 || !healthy("n1", "n2", "n3", "n4")(st) {
		t.Fatalf("refused requests changed the cluster: %+v", st.Members)
	}

	// The victim: the meta leader, asked through another member (the
	// request is forwarded to the leader, which removes itself).
	victim := st.Meta.Leader
	var live []string
	for _, n := range c.names() {
		if n != victim {
			live = append(live, n)
		}
	}
	t.Logf("removing %s (meta leader) via %s", victim, live[0])

	// Writes through the other members while the removal runs.
	type acked struct {
		v      registers.Value
		unsure bool
	}
	var (
		mu       sync.Mutex
		last     = map[string]acked{}
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		acks     int
		failures int
	)
	for id, v := range want {
		last[id] = acked{v: v}
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ids[(w*5+seq)%len(ids)][0]
				v, err := c.put(live[(w+seq)%len(live)], id, fmt.Sprintf("w%d-%d", w, seq))
				mu.Lock()
				a := last[id]
				switch {
				case err != nil:
					a.unsure = true
					failures++
				case v.Version > a.v.Version:
					a = acked{v: v}
					acks++
				default:
					acks++
				}
				last[id] = a
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)

	out, err := c.wardCLI("cluster", "remove", victim, "--server", server(live[0]))
	if err != nil {
		t.Fatalf("ward cluster remove %s: %v\n%s", victim, err, out)
	}
	if !strings.Contains(out, victim) || !strings.Contains(out, "remove requested") {
		t.Fatalf("ward cluster remove %s answered:\n%s", victim, out)
	}
	removed := time.Now()
	// Removed takes effect at once (no dead-after, no drain phase first).
	st = c.waitStatus(live[1], 10*time.Second, victim+" shown as removed", func(st *cluster.Status) bool {
		m, ok := member(st, victim)
		return ok && m.State == "removed"
	})
	st = c.waitStatus(live[1], 90*time.Second, "replicas of the removed "+victim+" re-created", func(st *cluster.Status) bool {
		m, ok := member(st, victim)
		return ok && m.State == "removed" && m.Replicas == 0 && m.Leaders == 0 && replicatedWithout(victim, 3)(st)
	})
	t.Logf("REMOVE: %s removed -> every partition on 3 of %v, meta led by %s: %s",
		victim, live, st.Meta.Leader, time.Since(removed).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	t.Logf("writes during the removal: %d acknowledged, %d failed", acks, failures)
	if acks == 0 {
		t.Fatal("no write acknowledged during the removal")
	}
	for _, m := range st.Members {
		if m.Name != victim && (m.State != "alive" || m.Replicas != cluster.DefaultPartitions) {
			t.Fatalf("member %s after the removal: %+v", m.Name, m)
		}
	}
	if len(st.Meta.Voters) != 3 || slices.Contains(st.Meta.Voters, victim) {
		t.Fatalf("meta voters %v after removing %s", st.Meta.Voters, victim)
	}
	// The removed node's process keeps running and leads nothing. (A
	// replica it followed can linger there as a candidate when it never
	// heard that it was taken out of the partition's configuration; the
	// others refuse its pre-votes. It is only logged here.)
	if n := c.node(victim); n.cmd.ProcessState != nil {
		t.Fatalf("removed node %s exited: %v", victim, n.cmd.ProcessState)
	}
	var local cluster.LocalStatus
	code, b, err := c.do(victim, "GET", cluster.LocalStatusPath, nil)
	if err != nil || code != 200 {
		t.Fatalf("local status of %s: %d %v", victim, code, err)
	}
	if err := json.Unmarshal(b, &local); err != nil {
		t.Fatal(err)
	}
	for _, lp := range local.Partitions {
		if lp.State == "Leader" {
			t.Fatalf("removed %s still leads partition %d: %s", victim, lp.ID, b)
		}
	}
	t.Logf("replicas still open on the removed %s: %d", victim, len(local.Partitions))

	// Removing again is accepted and changes nothing.
	out, err = c.wardCLI("cluster", "remove", victim, "--server", server(live[2]))
	if err != nil {
		t.Fatalf("second ward cluster remove %s: %v\n%s", victim, err, out)
	}
	// Removal is final: a drain cannot bring the member back as draining.
	out, err = c.wardCLI("cluster", "drain", victim, "--server", server(live[1]))
	if err == nil {
		t.Fatalf("ward cluster drain of the removed %s exited 0:\n%s", victim, out)
	}
	if !strings.Contains(out, "removed") || !strings.Contains(out, victim) || !strings.Contains(out, "409") {
		t.Fatalf("ward cluster drain of the removed %s does not say it was removed:\n%s", victim, out)
	}
	time.Sleep(time.Second)
	st = c.waitStatus(live[0], 10*time.Second, "cluster after the second remove and the drain", func(st *cluster.Status) bool {
		m, ok := member(st, victim)
		return ok && m.State == "removed" && replicatedWithout(victim, 3)(st)
	})

	// Nothing acknowledged is lost: every register from every live node.
	for _, via := range live {
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
	// New writes on every partition.
	for p, pids := range ids {
		c.putRetry(live[p%len(live)], pids[0], "after-remove", 10*time.Second)
	}
}
