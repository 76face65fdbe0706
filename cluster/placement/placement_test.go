package placement

import (
	"fmt"
	"sync"
	"testing"
)

// TestPartitionOfGolden pins the placement hash. These values were checked
// against an independent FNV-1a 64 implementation. If this test fails, the
// change would move every persisted actor to another partition: do not
// update the table, revert the change.
func TestPartitionOfGolden(t *testing.T) {
	cases := []struct {
		kind, id       string
		p16, p3, p1024 int
	}{
		{"session", "s-1", 15, 0, 559}, // fnv1a64 = 0x1abe7c531d039e2f
		{"session", "s-2", 2, 1, 994},  // 0x1abe7d531d039fe2
		{"user", "alice", 1, 2, 33},    // 0x6faa0cb365589421
		{"device", "d-42", 1, 0, 513},  // 0x01750605f6dda201
		{"patient", "p/7", 15, 0, 799}, // '/' in the id is fine
		{"", "", 14, 0, 510},           // 0xaf63a24c860189fe ("/")
		{"tenant", "ünï", 15, 1, 175},  // UTF-8 bytes
	}
	for _, c := range cases {
		for _, pc := range []struct{ n, want int }{{16, c.p16}, {3, c.p3}, {1024, c.p1024}} {
			if got := PartitionOf(c.kind, c.id, pc.n); got != pc.want {
				t.Errorf("PartitionOf(%q, %q, %d) = %d, want %d", c.kind, c.id, pc.n, got, pc.want)
			}
		}
		if got := PartitionOf(c.kind, c.id, 1); got != 0 {
			t.Errorf("PartitionOf(%q, %q, 1) = %d, want 0", c.kind, c.id, got)
		}
	}
}

// The separator matters: without it "ab"+"c" and "a"+"bc" would collide by
// construction.
func TestPartitionOfSeparatesKindAndID(t *testing.T) {
	same := 0
	for i := range 64 {
		a := PartitionOf("ab", fmt.Sprintf("c%d", i), 1024)
		b := PartitionOf("a", fmt.Sprintf("bc%d", i), 1024)
		if a == b {
			same++
		}
	}
	if same > 4 {
		t.Fatalf("%d of 64 shifted kind/id pairs share a partition", same)
	}
}

func TestPartitionOfSpreads(t *testing.T) {
	const n, p = 16000, 16
	var counts [p]int
	for i := range n {
		counts[PartitionOf("session", fmt.Sprintf("s-%d", i), p)]++
	}
	for i, c := range counts {
		// Expect 1000 each; a uniform hash stays well within ±20%.
		if c < 800 || c > 1200 {
			t.Errorf("partition %d got %d of %d identities", i, c, n)
		}
	}
}

func TestPartitionOfPanicsOnNoPartitions(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("PartitionOf with 0 partitions did not panic")
		}
	}()
	PartitionOf("k", "i", 0)
}

func TestTableEpochs(t *testing.T) {
	tb := NewTable(4)
	if tb.Partitions() != 4 {
		t.Fatalf("Partitions() = %d", tb.Partitions())
	}
	if l, e, ok := tb.Leader(2); ok || l != "" || e != 0 {
		t.Fatalf("fresh entry = %q %d %v, want no leader", l, e, ok)
	}
	steps := []struct {
		claim   bool // Claim, else Set
		leader  string
		epoch   uint64
		applied bool
		want    string
		wantE   uint64
	}{
		{true, "a", 3, true, "a", 3},
		{true, "a", 3, false, "a", 3},  // repeat claim
		{false, "a", 3, false, "a", 3}, // a hint agreeing with the claim
		{true, "b", 3, false, "a", 3},  // two leaders in one term: refused
		{false, "b", 3, false, "a", 3}, // a hint never overrides a claim
		{true, "b", 2, false, "a", 3},  // stale term
		{false, "", 3, true, "", 3},    // a stepped down
		{true, "a", 3, true, "a", 3},   // late learning within the term is allowed
		{false, "", 4, true, "", 4},    // election in term 4
		// A follower that adopted term 5 from a vote request still names
		// the old leader: a hint, replaced by the winner's claim.
		{false, "b", 5, true, "b", 5},
		{false, "c", 5, true, "c", 5}, // a later hint replaces a hint
		{true, "d", 5, true, "d", 5},
		{false, "c", 5, false, "d", 5},
		{true, "e", 9, true, "e", 9},
		{true, "a", 6, false, "e", 9},
		{false, "a", 6, false, "e", 9},
	}
	for i, s := range steps {
		set := tb.Set
		if s.claim {
			set = tb.Claim
		}
		if got := set(2, s.leader, s.epoch); got != s.applied {
			t.Fatalf("step %d: claim=%v (%q, %d) = %v, want %v", i, s.claim, s.leader, s.epoch, got, s.applied)
		}
		l, e, ok := tb.Leader(2)
		if l != s.want || e != s.wantE || ok != (s.want != "") {
			t.Fatalf("step %d: Leader = %q %d %v, want %q %d", i, l, e, ok, s.want, s.wantE)
		}
	}
	if _, _, ok := tb.Leader(1); ok {
		t.Fatal("Set on partition 2 changed partition 1")
	}
}

func TestTableSubscribe(t *testing.T) {
	tb := NewTable(3)
	var mu sync.Mutex
	var got []int
	cancel := tb.Subscribe(func(p int) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	})
	tb.Set(1, "a", 1)
	tb.Set(1, "a", 1) // no change, no notification
	tb.Set(0, "b", 1)
	cancel()
	cancel() // idempotent
	tb.Set(2, "c", 1)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[1 0]" {
		t.Fatalf("notifications %v, want [1 0]", got)
	}
}

func TestTableConcurrent(t *testing.T) {
	tb := NewTable(2)
	defer tb.Subscribe(func(p int) { tb.Leader(p) })()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for e := range uint64(200) {
				tb.Set(int(e%2), fmt.Sprint("m", g), e)
				tb.Leader(int(e % 2))
			}
		})
	}
	wg.Wait()
	for p := range 2 {
		if _, e, ok := tb.Leader(p); !ok || e != 198+uint64(p) {
			t.Fatalf("partition %d: epoch %d ok %v, want the last epoch", p, e, ok)
		}
	}
}

func TestTablePanicsOutOfRange(t *testing.T) {
	tb := NewTable(2)
	for _, p := range []int{-1, 2} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%d) did not panic", p)
				}
			}()
			tb.Set(p, "a", 1)
		}()
	}
}
