package membership

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// These tests drive the provider without protoactor (gossip, metadata,
// states, subscriptions, keys), so they run in-process and fast.

// sinkRecorder stands in for protoactor's MemberList.
type sinkRecorder struct {
	mu    sync.Mutex
	calls int
	last  cluster.Members
}

func (r *sinkRecorder) sink(ms cluster.Members) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.last = ms
}

func (r *sinkRecorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.last {
		out = append(out, m.Id)
	}
	return out
}

func (r *sinkRecorder) is(ids ...string) bool {
	got := r.ids()
	if len(got) != len(ids) {
		return false
	}
	for i := range ids { // both sorted by ID
		if got[i] != ids[i] {
			return false
		}
	}
	return true
}

// bare is a provider started without protoactor, with member ID id.
func bare(t *testing.T, cfg Config, id string) (*Provider, *sinkRecorder) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new %s: %v", id, err)
	}
	rec := &sinkRecorder{}
	meta := Meta{RemoteHost: "127.0.0.1", RemotePort: 4000, Kinds: []string{"echo", "session"}}
	if err := p.start(id, "bare-"+t.Name(), meta, rec.sink); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() { _ = p.Shutdown(false) })
	return p, rec
}

func states(ms []Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s=%s ", m.ID, m.State)
	}
	return b.String()
}

func TestMembersStatesAndSubscription(t *testing.T) {
	a, recA := bare(t, testConfig("node-a"), "id-a")
	sub, cancel := a.Subscribe()
	defer cancel()
	if first := <-sub; len(first) != 1 || !first[0].Self || first[0].State != StateAlive {
		t.Fatalf("first view: %+v", first)
	}
	b, _ := bare(t, testConfig("node-b", a.GossipAddr()), "id-b")
	c, _ := bare(t, testConfig("node-c", b.GossipAddr()), "id-c")

	// The subscription converges on three alive members with their metadata.
	deadline := time.After(5 * time.Second)
	for converged := false; !converged; {
		select {
		case view := <-sub:
			converged = len(view) == 3
			for _, m := range view {
				converged = converged && m.State == StateAlive
			}
			if converged {
				m, _ := memberByID(view, "id-c")
				if m.Meta.NodeName != "node-c" || m.Meta.RemotePort != 4000 || m.Meta.RaftAddr != "127.0.0.1:7000" ||
					len(m.Meta.Kinds) != 2 || m.GossipAddr != c.GossipAddr() || m.Self {
					t.Errorf("c as a sees it: %+v", m)
				}
			}
		case <-deadline:
			t.Fatalf("subscription never showed three alive members; members: %s", states(a.Members()))
		}
	}
	eventually(t, 2*time.Second, "sink gets all three", func() bool { return recA.is("id-a", "id-b", "id-c") })

	// A burst of joins is debounced: a handful of pushes, not one per event.
	recA.mu.Lock()
	t.Logf("pushes to protoactor while three members formed: %d", recA.calls)
	recA.mu.Unlock()

	// Graceful: left, and gone from the topology.
	if err := c.Shutdown(true); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	if err := c.Shutdown(true); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	eventually(t, 2*time.Second, "c dropped", func() bool { return recA.is("id-a", "id-b") })
	if m, _ := memberByID(a.Members(), "id-c"); m.State != StateLeft {
		t.Errorf("c is %v after a graceful leave, want left", m.State)
	}

	// Silent: dead within the detection bound.
	start := time.Now()
	if err := b.Shutdown(false); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	bound := LocalTiming().FailureDetectionBound(3) + 4*testConfig("").Debounce
	eventually(t, bound+slack, "b dropped", func() bool { return recA.is("id-a") })
	t.Logf("silent member detected in %v (bound %v)", time.Since(start), bound)
	if m, _ := memberByID(a.Members(), "id-b"); m.State != StateDead {
		t.Errorf("b is %v after going silent, want dead", m.State)
	}

	// Dead and left members are forgotten after DeadRetention.
	if !a.pruneDead(time.Now().Add(DefaultDeadRetention + time.Second)) {
		t.Error("nothing pruned")
	}
	if ms := a.Members(); len(ms) != 1 {
		t.Errorf("after pruning: %s", states(ms))
	}

	// Shutdown closes subscriptions; later ones get a closed channel.
	_ = a.Shutdown(false)
	for range sub {
	}
	if _, ok := <-mustSubscribe(a); ok {
		t.Error("subscription after shutdown delivered a value")
	}
}

func mustSubscribe(p *Provider) <-chan []Member {
	ch, _ := p.Subscribe()
	return ch
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	keyA := make([]byte, SecretKeySize)
	keyB := make([]byte, SecretKeySize)
	for i := range keyA {
		keyA[i], keyB[i] = byte(i), byte(255-i)
	}
	cfgA := testConfig("a")
	cfgA.SecretKey = keyA
	a, recA := bare(t, cfgA, "id-a")

	cfgB := testConfig("b", a.GossipAddr())
	cfgB.SecretKey = keyB
	b, recB := bare(t, cfgB, "id-b")

	c, recC := bare(t, testConfig("c", a.GossipAddr()), "id-c") // no key at all

	cfgD := testConfig("d", a.GossipAddr())
	cfgD.SecretKey = keyA
	_, recD := bare(t, cfgD, "id-d")

	// The right key joins; that proves the wrong ones had their chance.
	eventually(t, 5*time.Second, "same-key member joins", func() bool {
		return recA.is("id-a", "id-d") && recD.is("id-a", "id-d")
	})
	time.Sleep(time.Second) // a few join retries (300 ms apart)
	for _, n := range []struct {
		p   *Provider
		rec *sinkRecorder
		id  string
	}{{b, recB, "id-b"}, {c, recC, "id-c"}} {
		err := n.p.LastJoinError()
		if err == nil {
			t.Errorf("%s: no join error", n.id)
		} else {
			t.Logf("%s: %v", n.id, err)
		}
		if !n.rec.is(n.id) {
			t.Errorf("%s: topology %v, want itself alone", n.id, n.rec.ids())
		}
		if _, ok := memberByID(a.Members(), n.id); ok {
			t.Errorf("a lists %s", n.id)
		}
	}
	if !recA.is("id-a", "id-d") {
		t.Errorf("a's topology changed: %v", recA.ids())
	}
}

func TestLabelKeepsClustersApart(t *testing.T) {
	cfgA := testConfig("a")
	cfgA.Label = "one"
	a, recA := bare(t, cfgA, "id-a")
	cfgB := testConfig("b", a.GossipAddr())
	cfgB.Label = "two"
	b, recB := bare(t, cfgB, "id-b")
	time.Sleep(500 * time.Millisecond)
	if b.LastJoinError() == nil {
		t.Error("joined a cluster with another label")
	}
	if !recA.is("id-a") || !recB.is("id-b") {
		t.Errorf("topologies %v and %v, want each alone", recA.ids(), recB.ids())
	}
}

func TestSeedListNamingOnlyItselfIsANewCluster(t *testing.T) {
	cfg := testConfig("a")
	cfg.BindAddr = freeLoopbackAddr(t)
	cfg.Seeds = []string{cfg.BindAddr}
	a, rec := bare(t, cfg, "id-a")
	eventually(t, time.Second, "alone", func() bool { return rec.is("id-a") })
	if err := a.LastJoinError(); err != nil {
		t.Errorf("join error for a self-only seed list: %v", err)
	}
	if got := a.GossipAddr(); got != cfg.BindAddr {
		t.Errorf("gossip address %s, want %s", got, cfg.BindAddr)
	}
}

func TestStartRejectsOversizedMeta(t *testing.T) {
	p, err := New(testConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := make([]string, 40)
	for i := range kinds {
		kinds[i] = fmt.Sprintf("a-rather-long-kind-name-%02d", i)
	}
	err = p.start("id", "x", Meta{RemoteHost: "127.0.0.1", RemotePort: 1, Kinds: kinds}, nil)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("start with %d kinds: %v, want ErrMetaTooLarge", len(kinds), err)
	}
	if p.Shutdown(true) != nil {
		t.Error("shutdown of a provider that never started failed")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no bind", func(c *Config) { c.BindAddr = "" }, "BindAddr is required"},
		{"bad bind", func(c *Config) { c.BindAddr = "localhost" }, "BindAddr"},
		{"bad advertise", func(c *Config) { c.AdvertiseAddr = "1.2.3.4:99999" }, "AdvertiseAddr"},
		{"short key", func(c *Config) { c.SecretKey = make([]byte, 16) }, "SecretKey is 16 bytes"},
		{"probe timeout", func(c *Config) { c.Timing.ProbeTimeout = c.Timing.ProbeInterval }, "ProbeTimeout"},
		{"suspicion", func(c *Config) { c.Timing.SuspicionMult = 0 }, "SuspicionMult"},
	} {
		cfg := testConfig("a")
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	cfg := Config{BindAddr: "127.0.0.1:0"}
	if err := cfg.withDefaults(); err != nil || cfg.Timing != LANTiming() || cfg.Debounce != DefaultDebounce {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
}

func TestFailureDetectionBound(t *testing.T) {
	// 3 nodes: too few for confirmations, so the minimum suspicion applies.
	// Local: 2 rounds × 2 × 200 ms + 100 ms + 4 × 200 ms + 3 × 50 ms.
	if got, want := LocalTiming().FailureDetectionBound(3), 1850*time.Millisecond; got != want {
		t.Errorf("local, 3 nodes: %v, want %v", got, want)
	}
	// LAN: 2 × 2 × 500 ms + 250 ms + 4 × 500 ms + 3 × 100 ms.
	if got, want := LANTiming().FailureDetectionBound(3), 4550*time.Millisecond; got != want {
		t.Errorf("LAN, 3 nodes: %v, want %v", got, want)
	}
	// 5 nodes expect confirmations: the maximum suspicion is the bound.
	if LANTiming().FailureDetectionBound(5) <= LANTiming().FailureDetectionBound(4) {
		t.Error("bound does not grow with the cluster")
	}
}

// A member held for dead is retried: here its address comes back as a new,
// seedless process (a restart with a new ID), and the survivor finds it.
// memberlist's own gossip to the dead is cut short so that only the retry
// can find it.
func TestDeadMembersAddressIsRetried(t *testing.T) {
	cfgA := testConfig("a")
	cfgA.Timing.GossipToTheDeadTime = 100 * time.Millisecond
	a, recA := bare(t, cfgA, "id-a")
	cfgB := testConfig("b", a.GossipAddr())
	cfgB.BindAddr = freeLoopbackAddr(t)
	b, _ := bare(t, cfgB, "id-b")
	eventually(t, 3*time.Second, "b joins", func() bool { return recA.is("id-a", "id-b") })
	_ = b.Shutdown(false)
	eventually(t, 5*time.Second, "b declared dead", func() bool { return recA.is("id-a") })
	time.Sleep(500 * time.Millisecond) // past GossipToTheDeadTime

	cfgB2 := testConfig("b")
	cfgB2.BindAddr = cfgB.BindAddr // no seeds: it would stay alone by itself
	_, recB2 := bare(t, cfgB2, "id-b2")
	took := eventually(t, 10*time.Second, "a reconnects to b's address", func() bool {
		return recA.is("id-a", "id-b2") && recB2.is("id-a", "id-b2")
	})
	t.Logf("reconnected after %v", took)
}

// With KeepUnreachable a member declared dead stays in protoactor's
// topology (so protoactor never block-lists its id and it can come back
// from a partition) until its node is back under a new id; then the old id
// goes, and pruning forgets it.
func TestKeepUnreachableUntilReplaced(t *testing.T) {
	cfgA := testConfig("a")
	cfgA.KeepUnreachable = true
	a, recA := bare(t, cfgA, "id-a")
	cfgB := testConfig("b", a.GossipAddr())
	cfgB.BindAddr = freeLoopbackAddr(t)
	cfgB.KeepUnreachable = true
	b, _ := bare(t, cfgB, "id-b")
	eventually(t, 3*time.Second, "b joins", func() bool { return recA.is("id-a", "id-b") })

	_ = b.Shutdown(false)
	bound := LocalTiming().FailureDetectionBound(2) + 4*cfgA.Debounce
	eventually(t, bound+slack, "b declared dead", func() bool {
		m, ok := memberByID(a.Members(), "id-b")
		return ok && m.State == StateDead
	})
	time.Sleep(4 * cfgA.Debounce) // a topology push after the death, if any
	if !recA.is("id-a", "id-b") {
		t.Fatalf("the unreachable member left protoactor's topology")
	}
	// Pruning keeps it past DeadRetention, not past UnreachableRetention.
	if a.pruneDead(time.Now().Add(DefaultDeadRetention + time.Second)) {
		t.Fatalf("an unreachable member was pruned after DeadRetention: %s", states(a.Members()))
	}

	// b's node restarts under a new id: the old one is dropped.
	cfgB2 := testConfig("b", a.GossipAddr())
	cfgB2.KeepUnreachable = true
	_, _ = bare(t, cfgB2, "id-b2")
	eventually(t, 5*time.Second, "the restarted node replaces its old id", func() bool { return recA.is("id-a", "id-b2") })
	if !a.pruneDead(time.Now().Add(DefaultDeadRetention + time.Second)) {
		t.Fatalf("the replaced id was not pruned after DeadRetention: %s", states(a.Members()))
	}
	if _, ok := memberByID(a.Members(), "id-b"); ok {
		t.Fatalf("id-b still listed after pruning: %s", states(a.Members()))
	}
}
