package balance

import (
	"container/heap"
	"math"
)

// flowGraph is a small min-cost max-flow network, solved by successive
// shortest paths (Dijkstra with Johnson potentials). The heap orders by
// (distance, vertex index) and vertices are numbered in partition-id and
// node-name order, so ties, and hence the result, are deterministic.
type flowGraph struct {
	adj [][]flowEdge
}

type flowEdge struct {
	to, rev int
	cap     int
	cost    int64
}

func newFlowGraph(vertices int) *flowGraph {
	return &flowGraph{adj: make([][]flowEdge, vertices)}
}

// addEdge adds u→v and returns its index in adj[u], so callers can read the
// flow back (an edge carries flow when its residual capacity dropped).
func (g *flowGraph) addEdge(u, v, capacity int, cost int64) int {
	g.adj[u] = append(g.adj[u], flowEdge{to: v, rev: len(g.adj[v]), cap: capacity, cost: cost})
	g.adj[v] = append(g.adj[v], flowEdge{to: u, rev: len(g.adj[u]) - 1, cap: 0, cost: -cost})
	return len(g.adj[u]) - 1
}

// minCostFlow pushes up to limit units from s to t at minimum cost and
// returns the flow pushed. All initial edge costs must be non-negative.
func (g *flowGraph) minCostFlow(s, t, limit int) int {
	n := len(g.adj)
	const inf = math.MaxInt64 / 4
	pot := make([]int64, n)
	dist := make([]int64, n)
	done := make([]bool, n)
	prevV := make([]int, n)
	prevE := make([]int, n)
	flow := 0
	for flow < limit {
		for i := range dist {
			dist[i], done[i], prevV[i] = inf, false, -1
		}
		dist[s] = 0
		q := pq{{0, s}}
		for len(q) > 0 {
			it := heap.Pop(&q).(pqItem)
			u := it.v
			if done[u] || it.d != dist[u] {
				continue
			}
			done[u] = true
			for ei, e := range g.adj[u] {
				if e.cap <= 0 || done[e.to] {
					continue
				}
				nd := dist[u] + e.cost + pot[u] - pot[e.to]
				if nd < dist[e.to] {
					dist[e.to], prevV[e.to], prevE[e.to] = nd, u, ei
					heap.Push(&q, pqItem{nd, e.to})
				}
			}
		}
		if dist[t] >= inf {
			break
		}
		for v := range pot {
			if dist[v] < inf {
				pot[v] += dist[v]
			}
		}
		push := limit - flow
		for v := t; v != s; v = prevV[v] {
			if c := g.adj[prevV[v]][prevE[v]].cap; c < push {
				push = c
			}
		}
		for v := t; v != s; v = prevV[v] {
			e := &g.adj[prevV[v]][prevE[v]]
			e.cap -= push
			g.adj[v][e.rev].cap += push
		}
		flow += push
	}
	return flow
}

type pqItem struct {
	d int64
	v int
}

// pq is a min-heap of (distance, vertex), ties broken by vertex index.
type pq []pqItem

func (q pq) Len() int { return len(q) }
func (q pq) Less(i, j int) bool {
	return q[i].d < q[j].d || q[i].d == q[j].d && q[i].v < q[j].v
}
func (q pq) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pq) Push(x any)   { *q = append(*q, x.(pqItem)) }
func (q *pq) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}
