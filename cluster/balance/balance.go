// Package balance is the pure replica and leader planner of the meta leader.
//
// Given the current partition assignment and the cluster's nodes, Plan
// computes the desired one: every partition on min(r, #active) distinct
// Active nodes, replica and preferred-leader counts per node within one of
// each other, and as little movement as that allows.
//
// Why a min-cost flow and not a greedy pass: "add the missing replica to the
// least-loaded node" can get stuck. With nodes A, B, C, r=2, P=3 and
// partitions {A,B}, {A,B}, {C}, the only node with room (C) already holds the
// short partition; the fix is a chain (move A from partition 0 to 2, add C to
// 0) that greedy code has to rediscover with ad-hoc repair loops. Expressed as
// a flow — partitions supply r units, each unit may go to any node, a node
// accepts ⌊Pr/n⌋ units plus one more through a shared "extra" vertex that
// accepts exactly Pr mod n — a maximum flow is exactly a balanced assignment
// (the capacities sum to Pr, so saturating them forces every node to the floor
// or the ceiling), and such a flow always exists (round-robin is one). Edge
// costs then make the cheapest balanced flow the one with the least movement:
// keeping a current replica is cheap, keeping the current leader's replica is
// cheaper still, and a new replica costs more than all the leader savings
// combined, so the objectives are lexicographic: fewest replica moves first,
// then fewest lost leaders. Leaders are placed by a second flow of the same
// shape (one unit per partition, only to its replicas, cost 0 to keep the
// current leader), which also balances exactly: if node replica counts are
// balanced, a balanced leader choice always exists (Hall's condition follows
// from ⌈Pr/n⌉ ≤ r⌈P/n⌉ and ⌊Pr/n⌋ ≥ r⌊P/n⌋).
//
// Because a plan that is already balanced is the unique zero-move solution,
// Plan is idempotent, and the meta leader can re-run it on every membership
// change without causing churn. Everything is ordered by node name and then
// partition id (vertex order in the flow network), so the output depends only
// on the input sets, never on the order of nodes.
package balance

import (
	"slices"
)

// NodeState is how the planner may use a node.
type NodeState int

const (
	Active   NodeState = iota // may hold replicas and lead
	Draining                  // must end with zero replicas (operator `ward cluster drain`)
	Dead                      // dead longer than the grace time: its replicas are re-created elsewhere
	Removed                   // gone for good
)

// String returns the state's lower-case name.
func (s NodeState) String() string {
	switch s {
	case Active:
		return "active"
	case Draining:
		return "draining"
	case Dead:
		return "dead"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Node is a cluster member as the planner sees it. A name listed more than
// once takes its most restrictive state (Removed > Dead > Draining > Active);
// nodes with an empty name are ignored, and replicas on names not listed are
// treated as Removed.
type Node struct {
	Name  string
	State NodeState
}

// Partition is one partition's replica node names (order irrelevant, no
// duplicates) and its preferred leader ("" = none yet).
type Partition struct {
	Replicas []string
	Leader   string
}

// Assignment is indexed by partition id.
type Assignment []Partition

// Move is the change of one partition between two assignments.
type Move struct {
	Partition int
	Add       []string // nodes that gain a replica, sorted
	Remove    []string // nodes that lose their replica, sorted
	Leader    string   // new preferred leader, "" if unchanged (or cleared)
}

// Plan returns the desired assignment for max(partitions, len(current))
// partitions (missing partitions start empty) given the nodes and the
// replication factor r (values below 1 count as 1).
//
// Each partition gets exactly min(r, #active) distinct Active replicas, replica
// and leader counts per Active node differ by at most one, existing replicas on
// Active nodes are kept unless balance forbids it, and current leaders are kept
// when they remain replicas and leader balance allows. Replicas are returned
// sorted by name. With no Active node nothing can be placed, so the current
// assignment is returned unchanged (padded to the partition count).
func Plan(current Assignment, partitions int, nodes []Node, r int) Assignment {
	np := max(partitions, len(current), 0)

	states := make(map[string]NodeState, len(nodes))
	for _, nd := range nodes {
		if nd.Name == "" {
			continue
		}
		if s, ok := states[nd.Name]; !ok || nd.State > s {
			states[nd.Name] = nd.State
		}
	}
	var active []string
	for name, s := range states {
		if s == Active {
			active = append(active, name)
		}
	}
	slices.Sort(active)

	out := make(Assignment, np)
	if len(active) == 0 {
		for p := range min(np, len(current)) {
			out[p] = Partition{Replicas: slices.Clone(current[p].Replicas), Leader: current[p].Leader}
		}
		return out
	}

	n := len(active)
	k := min(max(r, 1), n)
	index := make(map[string]int, n)
	for i, name := range active {
		index[name] = i
	}

	// Current state restricted to Active nodes, as node indices.
	held := make([][]bool, np) // held[p][i]: node i currently holds a replica of p
	lead := make([]int, np)    // current leader's index if it is a held replica, or -1
	for p := range np {
		held[p] = make([]bool, n)
		lead[p] = -1
		if p >= len(current) {
			continue
		}
		for _, name := range current[p].Replicas {
			if i, ok := index[name]; ok {
				held[p][i] = true
			}
		}
		if i, ok := index[current[p].Leader]; ok && held[p][i] {
			lead[p] = i
		}
	}

	replicas := placeReplicas(held, lead, n, k)
	leaders := placeLeaders(replicas, lead, n)

	for p := range np {
		names := make([]string, len(replicas[p]))
		for j, i := range replicas[p] {
			names[j] = active[i]
		}
		out[p] = Partition{Replicas: names, Leader: active[leaders[p]]}
	}
	return out
}

// placeReplicas returns, per partition, k distinct node indices in increasing
// order with balanced per-node counts and the fewest changes to held.
func placeReplicas(held [][]bool, lead []int, n, k int) [][]int {
	np := len(held)
	total := np * k
	base, extra := total/n, total%n

	// Cost of a new replica exceeds the sum of every possible leader saving,
	// so minimizing cost minimizes moves first and lost leaders second.
	const keep, keepLeader = 1, 0
	move := int64(np + 2)

	src, hub := 0, 1+np+n
	sink := hub + 1
	g := newFlowGraph(sink + 1)
	edges := make([][]int, np)
	for p := range np {
		pv := 1 + p
		g.addEdge(src, pv, k, 0)
		edges[p] = make([]int, n)
		for i := range n {
			cost := move
			if held[p][i] {
				cost = keep
				if lead[p] == i {
					cost = keepLeader
				}
			}
			edges[p][i] = g.addEdge(pv, 1+np+i, 1, cost)
		}
	}
	for i := range n {
		g.addEdge(1+np+i, sink, base, 0)
		g.addEdge(1+np+i, hub, 1, 0)
	}
	g.addEdge(hub, sink, extra, 0)
	g.minCostFlow(src, sink, total)

	out := make([][]int, np)
	count := make([]int, n)
	for p := range np {
		for i := range n {
			if g.adj[1+p][edges[p][i]].cap == 0 {
				out[p] = append(out[p], i)
				count[i]++
			}
		}
	}
	// A full flow always exists (round-robin is one); this only guards the
	// invariant "exactly k distinct replicas" should that ever be violated.
	for p := range np {
		for len(out[p]) < k {
			best := -1
			for i := range n {
				if !slices.Contains(out[p], i) && (best < 0 || count[i] < count[best]) {
					best = i
				}
			}
			out[p] = append(out[p], best)
			count[best]++
		}
		slices.Sort(out[p])
	}
	return out
}

// placeLeaders returns, per partition, the index of one of its replicas so that
// leader counts per node are balanced and as many current leaders as possible
// are kept.
func placeLeaders(replicas [][]int, lead []int, n int) []int {
	np := len(replicas)
	base, extra := np/n, np%n

	src, hub := 0, 1+np+n
	sink := hub + 1
	g := newFlowGraph(sink + 1)
	edges := make([][]int, np)
	for p := range np {
		pv := 1 + p
		g.addEdge(src, pv, 1, 0)
		edges[p] = make([]int, len(replicas[p]))
		for j, i := range replicas[p] {
			cost := int64(1)
			if lead[p] == i {
				cost = 0
			}
			edges[p][j] = g.addEdge(pv, 1+np+i, 1, cost)
		}
	}
	for i := range n {
		g.addEdge(1+np+i, sink, base, 0)
		g.addEdge(1+np+i, hub, 1, 0)
	}
	g.addEdge(hub, sink, extra, 0)
	g.minCostFlow(src, sink, np)

	out := make([]int, np)
	count := make([]int, n)
	var unset []int
	for p := range np {
		out[p] = -1
		for j, i := range replicas[p] {
			if g.adj[1+p][edges[p][j]].cap == 0 {
				out[p] = i
				count[i]++
			}
		}
		if out[p] < 0 {
			unset = append(unset, p)
		}
	}
	// Guard only: with balanced replicas the flow is always full. Otherwise
	// keep the current leader if possible, else take the least-loaded replica.
	for _, p := range unset {
		best := -1
		for _, i := range replicas[p] {
			if i == lead[p] {
				best = i
				break
			}
			if best < 0 || count[i] < count[best] {
				best = i
			}
		}
		out[p] = best
		count[best]++
	}
	return out
}

// Moves lists the partitions whose replicas or preferred leader differ between
// from and to, in partition order. A partition present in only one of them is
// compared with an empty partition.
func Moves(from, to Assignment) []Move {
	var out []Move
	for p := range max(len(from), len(to)) {
		var f, t Partition
		if p < len(from) {
			f = from[p]
		}
		if p < len(to) {
			t = to[p]
		}
		add, remove := difference(t.Replicas, f.Replicas), difference(f.Replicas, t.Replicas)
		if len(add) == 0 && len(remove) == 0 && f.Leader == t.Leader {
			continue
		}
		m := Move{Partition: p, Add: add, Remove: remove}
		if f.Leader != t.Leader {
			m.Leader = t.Leader
		}
		out = append(out, m)
	}
	return out
}

// difference returns the sorted distinct elements of a that are not in b.
func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

// Counts returns the number of partitions each node holds a replica of and
// the number of partitions each node is the preferred leader of. Nodes with
// zero leaders but some replicas appear in replicas only.
func Counts(a Assignment) (replicas, leaders map[string]int) {
	replicas, leaders = map[string]int{}, map[string]int{}
	for _, p := range a {
		seen := make(map[string]bool, len(p.Replicas))
		for _, name := range p.Replicas {
			if !seen[name] {
				seen[name] = true
				replicas[name]++
			}
		}
		if p.Leader != "" {
			leaders[p.Leader]++
		}
	}
	return replicas, leaders
}
