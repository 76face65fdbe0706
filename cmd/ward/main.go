// Command ward is Ward's one binary: the dev node, the simulation, and (as
// the cluster grows) node and operator subcommands. It only wires packages
// together; behaviour lives in actors/, cluster/, persistence/ and edge/.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ward:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "ward",
		Short:         "Ward: identity platform and remote patient monitoring on one actor runtime",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(subcommands...)
	return root
}

// subcommands is filled by each subcommand's file in its init, so files can
// be added without touching this one.
var subcommands []*cobra.Command
