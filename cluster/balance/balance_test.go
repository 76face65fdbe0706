package balance

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

func act(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n, State: Active}
	}
	return out
}

func part(leader string, replicas ...string) Partition {
	return Partition{Replicas: replicas, Leader: leader}
}

// validate checks rules 1, 2 and 5 for got = Plan(cur, p, nodes, r).
func validate(t *testing.T, cur Assignment, p int, nodes []Node, r int, got Assignment) {
	t.Helper()
	state := map[string]NodeState{}
	for _, n := range nodes {
		if n.Name == "" {
			continue
		}
		if s, ok := state[n.Name]; !ok || n.State > s {
			state[n.Name] = n.State
		}
	}
	var active []string
	for name, s := range state {
		if s == Active {
			active = append(active, name)
		}
	}
	if want := max(p, len(cur)); len(got) != want {
		t.Fatalf("len = %d, want %d", len(got), want)
	}
	if len(active) == 0 {
		for i := range got {
			var c Partition
			if i < len(cur) {
				c = cur[i]
			}
			if !slices.Equal(got[i].Replicas, c.Replicas) || got[i].Leader != c.Leader {
				t.Fatalf("no active nodes: partition %d = %v, want unchanged %v", i, got[i], c)
			}
		}
		return
	}
	k := min(max(r, 1), len(active))
	for i, pt := range got {
		if len(pt.Replicas) != k {
			t.Fatalf("partition %d: %d replicas %v, want %d", i, len(pt.Replicas), pt.Replicas, k)
		}
		seen := map[string]bool{}
		for _, n := range pt.Replicas {
			if state[n] != Active || n == "" {
				t.Fatalf("partition %d: replica on non-active node %q (state %v)", i, n, state[n])
			}
			if seen[n] {
				t.Fatalf("partition %d: duplicate replica %q", i, n)
			}
			seen[n] = true
		}
		if !seen[pt.Leader] {
			t.Fatalf("partition %d: leader %q not among replicas %v", i, pt.Leader, pt.Replicas)
		}
	}
	reps, leads := Counts(got)
	for name := range reps {
		if state[name] != Active {
			t.Fatalf("non-active node %q holds replicas", name)
		}
	}
	for name := range leads {
		if state[name] != Active {
			t.Fatalf("non-active node %q leads", name)
		}
	}
	if d := spread(reps, active); d > 1 {
		t.Fatalf("replica counts unbalanced (max-min=%d): %v", d, reps)
	}
	if d := spread(leads, active); d > 1 {
		t.Fatalf("leader counts unbalanced (max-min=%d): %v", d, leads)
	}
}

func spread(counts map[string]int, active []string) int {
	lo, hi := -1, 0
	for _, n := range active {
		c := counts[n]
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return hi - lo
}

// adds counts replicas in to that are not in from (one per replica move).
func adds(from, to Assignment) int {
	n := 0
	for _, m := range Moves(from, to) {
		n += len(m.Add)
	}
	return n
}

func TestPlanTable(t *testing.T) {
	tests := []struct {
		name    string
		current Assignment
		p       int
		nodes   []Node
		r       int
		want    Assignment // nil: only the rules are checked
	}{
		{
			name:  "single node holds everything",
			p:     2,
			nodes: act("a"),
			r:     3,
			want:  Assignment{part("a", "a"), part("a", "a")},
		},
		{
			name:    "no active node keeps current",
			current: Assignment{part("x", "x", "y"), part("", "y")},
			p:       3,
			nodes:   []Node{{"x", Dead}, {"y", Draining}},
			r:       2,
			want:    Assignment{part("x", "x", "y"), part("", "y"), {}},
		},
		{
			name:    "balanced assignment is kept",
			current: Assignment{part("a", "a", "b"), part("b", "b", "c"), part("c", "a", "c")},
			p:       3,
			nodes:   act("c", "a", "b"),
			r:       2,
			want:    Assignment{part("a", "a", "b"), part("b", "b", "c"), part("c", "a", "c")},
		},
		{
			name:    "drain moves replicas and leadership away",
			current: Assignment{part("a", "a", "b"), part("b", "b", "c"), part("c", "a", "c")},
			p:       3,
			nodes:   []Node{{"a", Active}, {"b", Active}, {"c", Draining}},
			r:       2,
			want:    Assignment{part("a", "a", "b"), part("b", "a", "b"), part("a", "a", "b")},
		},
		{
			name:    "dead replica re-created on least-loaded node",
			current: Assignment{part("d", "a", "d"), part("b", "b", "c")},
			p:       2,
			nodes:   []Node{{"a", Active}, {"b", Active}, {"c", Active}, {"d", Dead}},
			r:       2,
			want:    Assignment{part("a", "a", "b"), part("b", "b", "c")},
		},
		{
			name:    "new partition leader is the least-loaded replica",
			current: Assignment{part("a", "a", "b"), part("c", "c", "d"), part("b", "a", "b")},
			p:       4,
			nodes:   act("a", "b", "c", "d"),
			r:       2,
			want:    Assignment{part("a", "a", "b"), part("c", "c", "d"), part("b", "a", "b"), part("d", "c", "d")},
		},
		{
			name:    "duplicates, unknown and removed nodes are dropped",
			current: Assignment{part("z", "a", "a", "z", "r")},
			p:       1,
			nodes:   []Node{{"a", Active}, {"b", Active}, {"r", Removed}},
			r:       2,
			want:    Assignment{part("a", "a", "b")},
		},
		{
			name:    "conflicting duplicate node entries take the stricter state",
			current: Assignment{part("a", "a"), part("b", "b")},
			p:       2,
			nodes:   []Node{{"a", Active}, {"b", Active}, {"a", Draining}, {"", Active}},
			r:       1,
			want:    Assignment{part("b", "b"), part("b", "b")},
		},
		{
			name:  "r larger than cluster",
			p:     4,
			nodes: act("a", "b"),
			r:     5,
		},
		{
			name:  "r below one counts as one",
			p:     4,
			nodes: act("a", "b"),
			r:     0,
		},
		{
			name:    "current longer than partitions",
			current: Assignment{part("a", "a"), part("a", "a"), part("a", "a"), part("a", "a")},
			p:       2,
			nodes:   act("a", "b"),
			r:       1,
		},
		{
			name:    "leader moves only as much as balance needs",
			current: Assignment{part("a", "a", "b"), part("a", "a", "b"), part("a", "a", "b"), part("b", "a", "b")},
			p:       4,
			nodes:   act("a", "b"),
			r:       2,
		},
		{
			name:  "more nodes than replicas to place",
			p:     1,
			nodes: act("a", "b", "c", "d", "e"),
			r:     3,
			want:  Assignment{part("a", "a", "b", "c")},
		},
		{
			name:  "fresh cluster",
			p:     16,
			nodes: act("n3", "n1", "n2", "n5", "n4"),
			r:     3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.current, tt.p, tt.nodes, tt.r)
			validate(t, tt.current, tt.p, tt.nodes, tt.r, got)
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Plan =\n %v\nwant\n %v", got, tt.want)
			}
			if again := Plan(got, tt.p, tt.nodes, tt.r); !reflect.DeepEqual(again, got) {
				t.Fatalf("not idempotent:\n %v\n %v", got, again)
			}
		})
	}
}

func TestPlanLeaderMovesMinimal(t *testing.T) {
	cur := Assignment{part("a", "a", "b"), part("a", "a", "b"), part("a", "a", "b"), part("b", "a", "b")}
	got := Plan(cur, 4, act("a", "b"), 2)
	if n := len(Moves(cur, got)); n != 1 {
		t.Fatalf("%d partitions changed, want exactly one leader change: %v", n, Moves(cur, got))
	}
}

func TestPlanGrowThreeToFive(t *testing.T) {
	const p, r = 16, 3
	three := Plan(nil, p, act("n1", "n2", "n3"), r)
	validate(t, nil, p, act("n1", "n2", "n3"), r, three)
	five := act("n1", "n2", "n3", "n4", "n5")
	got := Plan(three, p, five, r)
	validate(t, three, p, five, r, got)
	// Each old node holds 16 and may keep ceil(48/5)=10: 3*(16-10) = 18.
	if n := adds(three, got); n != 18 || excess(replicaCounts(three), []string{"n1", "n2", "n3", "n4", "n5"}, p*r) != 18 {
		t.Fatalf("replica moves = %d, want the minimum 18", n)
	}
	// 16 leaders over 5 nodes (targets 4,3,3,3,3): the old nodes lead 6,5,5
	// and must give up 2+2+2.
	_, before := Counts(three)
	wantLead := excess(before, []string{"n1", "n2", "n3", "n4", "n5"}, p)
	if wantLead != 6 {
		t.Fatalf("bound = %d, want 6 (leaders %v)", wantLead, before)
	}
	changed := 0
	for i := range got {
		if got[i].Leader != three[i].Leader {
			changed++
		}
	}
	if changed != wantLead {
		t.Fatalf("leader changes = %d, want the minimum %d", changed, wantLead)
	}
}

func TestMoves(t *testing.T) {
	from := Assignment{part("a", "a", "b"), part("b", "b", "c"), part("c", "c", "a")}
	to := Assignment{part("a", "b", "a"), part("c", "c", "d"), part("a", "c", "a"), part("d", "d")}
	want := []Move{
		{Partition: 1, Add: []string{"d"}, Remove: []string{"b"}, Leader: "c"},
		{Partition: 2, Leader: "a"},
		{Partition: 3, Add: []string{"d"}, Leader: "d"},
	}
	if got := Moves(from, to); !reflect.DeepEqual(got, want) {
		t.Fatalf("Moves =\n %+v\nwant\n %+v", got, want)
	}
	if got := Moves(to, to); got != nil {
		t.Fatalf("Moves(x, x) = %v, want nil", got)
	}
	back := Moves(to, from)
	if len(back) != 3 || back[2].Partition != 3 || !slices.Equal(back[2].Remove, []string{"d"}) || back[2].Leader != "" {
		t.Fatalf("Moves(to, from) = %+v", back)
	}
}

func TestCounts(t *testing.T) {
	reps, leads := Counts(Assignment{part("a", "a", "b"), part("", "b", "b", "c"), part("b", "b")})
	if want := map[string]int{"a": 1, "b": 3, "c": 1}; !reflect.DeepEqual(reps, want) {
		t.Fatalf("replicas = %v, want %v", reps, want)
	}
	if want := map[string]int{"a": 1, "b": 1}; !reflect.DeepEqual(leads, want) {
		t.Fatalf("leaders = %v, want %v", leads, want)
	}
}

func (p Partition) String() string { return fmt.Sprintf("%v@%s", p.Replicas, p.Leader) }

// replicaCounts returns the replica counts of a.
func replicaCounts(a Assignment) map[string]int {
	r, _ := Counts(a)
	return r
}
