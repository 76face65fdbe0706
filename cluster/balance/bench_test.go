package balance

import (
	"fmt"
	"testing"
)

func BenchmarkPlan(b *testing.B) {
	for _, c := range []struct{ p, n int }{{16, 5}, {256, 20}} {
		var nodes []Node
		for i := range c.n {
			nodes = append(nodes, Node{Name: fmt.Sprintf("n%03d", i), State: Active})
		}
		start := Plan(nil, c.p, nodes[:c.n-2], 3)
		b.Run(fmt.Sprintf("P=%d/n=%d", c.p, c.n), func(b *testing.B) {
			for b.Loop() {
				Plan(start, c.p, nodes, 3)
			}
		})
	}
}
