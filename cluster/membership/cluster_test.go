package membership

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// slack absorbs scheduling delays under the race detector on a 2-core box.
const slack = 1500 * time.Millisecond

func clusterName(t *testing.T) string {
	return "t-" + strings.ReplaceAll(t.Name(), "/", "-")
}

// startThree starts a seed member and two that join through it, each in its
// own process.
func startThree(t *testing.T) (a, b, c *proc) {
	t.Helper()
	name := clusterName(t)
	a = launch(t, name, "a", false)
	a.ready()
	// b and c start together; c's seed list names a twice and b's list
	// would name b itself, as one list for every node does.
	b = launch(t, name, "b", false, a.gossip)
	c = launch(t, name, "c", false, a.gossip, a.gossip)
	var wg sync.WaitGroup
	wg.Go(b.ready)
	c.ready()
	wg.Wait()
	if b.id == "" {
		t.FailNow()
	}
	took := eventually(t, 10*time.Second, "topology converges on three members", func() bool {
		return a.topologyIs(a.id, b.id, c.id) && b.topologyIs(a.id, b.id, c.id) && c.topologyIs(a.id, b.id, c.id)
	})
	t.Logf("topology converged %v after the last member started", took)
	return a, b, c
}

func echo(t *testing.T, from *proc, identity string) (host string) {
	t.Helper()
	r := from.call("echo " + identity)
	if r.Err != "" {
		t.Fatalf("echo %s from %s: %s", identity, from.name, r.Err)
	}
	host, val, _ := strings.Cut(r.Value, ":")
	if val != identity {
		t.Fatalf("echo %s from %s: got %q", identity, from.name, r.Value)
	}
	return host
}

func TestThreeMembersServeGrainsAndOneLeaves(t *testing.T) {
	a, b, c := startThree(t)
	nodes := []*proc{a, b, c}

	// Every grain answers from every node, always from the same host, and
	// placement spreads them over all three (30 identities: the chance that
	// a node hosts none is about 2e-5).
	servedBy := map[string]int{}
	for i := range 30 {
		id := fmt.Sprintf("g%d", i)
		host := echo(t, a, id)
		servedBy[host]++
		for _, from := range nodes[1:] {
			if h := echo(t, from, id); h != host {
				t.Fatalf("grain %s answered from %s and from %s", id, host, h)
			}
		}
	}
	for _, n := range nodes {
		if servedBy[n.id] == 0 {
			t.Errorf("node %s hosted no grain: %v", n.name, servedBy)
		}
	}

	// A cluster client learns the topology, is not part of it, and calls
	// grains.
	d := launch(t, clusterName(t), "d", true, b.gossip)
	d.ready()
	eventually(t, 5*time.Second, "client learns the topology", func() bool { return d.topologyIs(a.id, b.id, c.id) })
	for i := range 5 {
		echo(t, d, fmt.Sprintf("g%d", i))
	}
	if !a.topologyIs(a.id, b.id, c.id) {
		t.Error("the client entered the members' topology")
	}

	// Metadata made it through gossip.
	for _, n := range nodes {
		m, ok := a.member(n.id)
		if !ok || m.State != "alive" || m.NodeName != n.name || m.RaftAddr != "127.0.0.1:7000" ||
			m.Version != "test" || m.RemotePort == 0 || !strings.Contains(strings.Join(m.Kinds, ","), echoKindName) {
			t.Errorf("a sees %s as %+v", n.name, m)
		}
	}

	// c leaves gracefully: the others drop it at once, and see it as left.
	start := time.Now()
	if r := c.call("leave"); r.Err != "" {
		t.Errorf("c leave: %s", r.Err)
	}
	took := eventually(t, 3*time.Second, "a, b and the client drop the member that left", func() bool {
		return a.topologyIs(a.id, b.id) && b.topologyIs(a.id, b.id) && d.topologyIs(a.id, b.id)
	})
	t.Logf("graceful leave took %v, seen by all %v after it returned", time.Since(start)-took, took)
	for _, n := range []*proc{a, b} {
		if m, ok := n.member(c.id); !ok || m.State != "left" {
			t.Errorf("%s sees c as %+v, want left", n.name, m)
		}
	}

	// c's grains moved: every identity still answers, never from c.
	for i := range 30 {
		if host := echo(t, a, fmt.Sprintf("g%d", i)); host == c.id {
			t.Fatalf("grain g%d answered by the member that left", i)
		}
	}
}

func TestKilledMemberDetectedWithinTimingBound(t *testing.T) {
	a, b, c := startThree(t)
	bound := LocalTiming().FailureDetectionBound(3) + 4*testConfig("").Debounce
	start := time.Now()
	c.kill()
	eventually(t, bound+slack, "a and b drop the killed member", func() bool {
		return a.topologyIs(a.id, b.id) && b.topologyIs(a.id, b.id)
	})
	t.Logf("kill -9 detected by both survivors in %v (bound %v, test allows %v more)", time.Since(start), bound, slack)
	for _, n := range []*proc{a, b} {
		if m, ok := n.member(c.id); !ok || m.State != "dead" {
			t.Errorf("%s sees c as %+v, want dead", n.name, m)
		}
	}
	// The survivors serve every grain, including those c hosted.
	for i := range 20 {
		echo(t, b, fmt.Sprintf("after-kill-%d", i))
	}
}
