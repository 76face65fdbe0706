//go:build race

package simulation

// Under -race pebble's instrumented code dominates; 50 seeds keep their
// breadth with a smaller budget each.
func init() { seedOps = 150 }
