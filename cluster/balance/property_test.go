package balance

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// randomCase builds an arbitrary, possibly messy input: nodes in random
// states and order, replicas on unknown/non-active nodes, duplicates, leaders
// that are not replicas, and a current assignment shorter or longer than p.
func randomCase(rng *rand.Rand, maxNodes, maxParts int) (cur Assignment, p int, nodes []Node, r int) {
	nn := 1 + rng.IntN(maxNodes)
	names := make([]string, nn)
	for i := range names {
		names[i] = fmt.Sprintf("n%02d", i)
		st := Active
		if rng.IntN(4) == 0 {
			st = NodeState(1 + rng.IntN(3))
		}
		nodes = append(nodes, Node{Name: names[i], State: st})
	}
	rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	pool := append(slices.Clone(names), "ghost")
	p = 1 + rng.IntN(maxParts)
	r = 1 + rng.IntN(4)
	if rng.IntN(3) > 0 {
		cur = make(Assignment, max(0, p+rng.IntN(3)-1))
		for i := range cur {
			for range rng.IntN(r + 2) {
				cur[i].Replicas = append(cur[i].Replicas, pool[rng.IntN(len(pool))])
			}
			switch rng.IntN(3) {
			case 0:
				if len(cur[i].Replicas) > 0 {
					cur[i].Leader = cur[i].Replicas[rng.IntN(len(cur[i].Replicas))]
				}
			case 1:
				cur[i].Leader = pool[rng.IntN(len(pool))]
			}
		}
	}
	return cur, p, nodes, r
}

func TestPlanPropertiesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for c := range 600 {
		cur, p, nodes, r := randomCase(rng, 9, 40)
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			got := Plan(cur, p, nodes, r)
			validate(t, cur, p, nodes, r, got)

			// Determinism, independent of node order.
			shuffled := slices.Clone(nodes)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if again := Plan(cur, p, shuffled, r); !reflect.DeepEqual(again, got) {
				t.Fatalf("order dependent:\n %v\n %v", got, again)
			}
			// Stable: planning a plan changes nothing.
			if again := Plan(got, p, nodes, r); !reflect.DeepEqual(again, got) {
				t.Fatalf("not idempotent: %+v", Moves(got, again))
			}
		})
	}
}

func clone(a Assignment) Assignment {
	if a == nil {
		return nil
	}
	out := make(Assignment, len(a))
	for i, p := range a {
		out[i] = Partition{Replicas: slices.Clone(p.Replicas), Leader: p.Leader}
	}
	return out
}

func TestPlanDoesNotMutateInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		cur, p, nodes, r := randomCase(rng, 6, 12)
		before, nodesBefore := clone(cur), slices.Clone(nodes)
		Plan(cur, p, nodes, r)
		if !reflect.DeepEqual(cur, before) || !slices.Equal(nodes, nodesBefore) {
			t.Fatalf("input mutated")
		}
	}
}

// TestPlanMinimalMovementBruteForce compares Plan with an exhaustive search
// over every balanced assignment on small clusters: the number of replica
// moves must be the minimum; among minimum-move replica sets the number of
// current leaders kept as replicas must be the maximum; and for the chosen
// replicas the number of kept leaders must be the maximum a balanced leader
// choice allows.
func TestPlanMinimalMovementBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for c := range 400 {
		cur, p, nodes, r := randomCase(rng, 5, 4)
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			got := Plan(cur, p, nodes, r)
			validate(t, cur, p, nodes, r, got)
			var active []string
			for _, n := range nodes {
				if n.State == Active {
					active = append(active, n.Name)
				}
			}
			if len(active) == 0 {
				return
			}
			slices.Sort(active)
			n, np := len(active), max(p, len(cur))
			k := min(r, n)
			idx := map[string]int{}
			for i, a := range active {
				idx[a] = i
			}
			held, lead := make([]uint, np), make([]int, np)
			for i := range np {
				lead[i] = -1
				if i < len(cur) {
					for _, name := range cur[i].Replicas {
						if j, ok := idx[name]; ok {
							held[i] |= 1 << j
						}
					}
					if j, ok := idx[cur[i].Leader]; ok && held[i]&(1<<j) != 0 {
						lead[i] = j
					}
				}
			}
			var subsets []uint
			for m := uint(0); m < 1<<n; m++ {
				if bits.OnesCount(m) == k {
					subsets = append(subsets, m)
				}
			}
			// Exhaustive search over balanced replica sets.
			bestAdds, bestKeep := 1<<30, -1
			choice := make([]uint, np)
			var rec func(i int)
			rec = func(i int) {
				if i == np {
					cnt := make([]int, n)
					a, kl := 0, 0
					for q, m := range choice {
						a += bits.OnesCount(m &^ held[q])
						if lead[q] >= 0 && m&(1<<lead[q]) != 0 {
							kl++
						}
						for j := range n {
							if m&(1<<j) != 0 {
								cnt[j]++
							}
						}
					}
					if slices.Max(cnt)-slices.Min(cnt) > 1 {
						return
					}
					if a < bestAdds || (a == bestAdds && kl > bestKeep) {
						bestAdds, bestKeep = a, kl
					}
					return
				}
				for _, m := range subsets {
					choice[i] = m
					rec(i + 1)
				}
			}
			rec(0)

			gotAdds, gotKeep := 0, 0
			gotSets := make([][]int, np)
			for q, pt := range got {
				var m uint
				for _, name := range pt.Replicas {
					m |= 1 << idx[name]
					gotSets[q] = append(gotSets[q], idx[name])
				}
				gotAdds += bits.OnesCount(m &^ held[q])
				if lead[q] >= 0 && m&(1<<lead[q]) != 0 {
					gotKeep++
				}
			}
			if gotAdds != bestAdds {
				t.Fatalf("replica moves = %d, optimum %d\ncur %v\ngot %v", gotAdds, bestAdds, cur, got)
			}
			if gotKeep != bestKeep {
				t.Fatalf("leader replicas kept = %d, optimum %d", gotKeep, bestKeep)
			}

			// Exhaustive search over balanced leader choices for got's replicas.
			bestLead := -1
			pick := make([]int, np)
			var recL func(i int)
			recL = func(i int) {
				if i == np {
					cnt := make([]int, n)
					kept := 0
					for q, j := range pick {
						cnt[j]++
						if j == lead[q] {
							kept++
						}
					}
					if slices.Max(cnt)-slices.Min(cnt) <= 1 {
						bestLead = max(bestLead, kept)
					}
					return
				}
				for _, j := range gotSets[i] {
					pick[i] = j
					recL(i + 1)
				}
			}
			recL(0)
			gotLead := 0
			for q, pt := range got {
				if idx[pt.Leader] == lead[q] {
					gotLead++
				}
			}
			if gotLead != bestLead {
				t.Fatalf("leaders kept = %d, optimum %d\ncur %v\ngot %v", gotLead, bestLead, cur, got)
			}
		})
	}
}

// TestPlanMembershipChangeMovesRandom starts from a balanced plan, then adds,
// drains or kills nodes, and compares the number of replica moves with the
// lower bound: every replica on a node that is no longer Active must move,
// and every Active node above its new target must shed the excess (see
// excess).
//
// When nodes only join, the bound is met exactly (slack 0): the new nodes hold
// nothing, so every shed replica has a destination not already in its
// partition. When nodes leave, a displaced replica's only node with room may
// already hold that partition, and the fix is a swap through another partition
// that costs an extra move. About 6% of such random cases need swaps, and over
// thousands of seeds the total never exceeded twice the bound, which is the
// slack asserted here. That the extra moves are necessary (not planner waste)
// is what TestPlanMinimalMovementBruteForce proves on small clusters.
func TestPlanMembershipChangeMovesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for c := range 500 {
		n0 := 1 + rng.IntN(7)
		p := 1 + rng.IntN(48)
		r := 1 + rng.IntN(4)
		var nodes []Node
		for i := range n0 {
			nodes = append(nodes, Node{Name: fmt.Sprintf("n%02d", i), State: Active})
		}
		start := Plan(nil, p, nodes, r)

		// Change membership: add up to 3 nodes, and take down up to 2.
		next := slices.Clone(nodes)
		for i := range rng.IntN(4) {
			next = append(next, Node{Name: fmt.Sprintf("m%02d", i), State: Active})
		}
		for range rng.IntN(3) {
			i := rng.IntN(len(next))
			next[i].State = NodeState(1 + rng.IntN(3))
		}
		growOnly := !slices.ContainsFunc(next, func(n Node) bool { return n.State != Active })
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			got := Plan(start, p, next, r)
			validate(t, start, p, next, r, got)
			active := map[string]bool{}
			for _, nd := range next {
				if nd.State == Active {
					active[nd.Name] = true
				}
			}
			if len(active) == 0 {
				return
			}
			k := min(r, len(active))
			if k != min(r, n0) {
				return // replication factor changed: partitions grow, bound differs
			}
			reps, _ := Counts(start)
			var names []string
			bound := 0
			for name, cnt := range reps {
				if !active[name] {
					bound += cnt
				}
			}
			for name := range active {
				names = append(names, name)
			}
			bound += excess(reps, names, p*k)
			moves := adds(start, got)
			if growOnly && moves != bound || moves < bound || moves > 2*bound {
				t.Fatalf("moves = %d, lower bound %d (p=%d r=%d, %v -> %v)", moves, bound, p, r, nodes, next)
			}
		})
	}
}

// excess is the least number of units that must leave the given nodes so
// that total units end balanced over them: only total%n nodes may keep the
// ceiling, and the cheapest choice gives it to the nodes that hold most.
func excess(counts map[string]int, nodes []string, total int) int {
	held := make([]int, 0, len(nodes))
	for _, n := range nodes {
		held = append(held, counts[n])
	}
	slices.Sort(held)
	slices.Reverse(held)
	base, extra := total/len(nodes), total%len(nodes)
	sum := 0
	for i, c := range held {
		target := base
		if i < extra {
			target++
		}
		sum += max(0, c-target)
	}
	return sum
}
