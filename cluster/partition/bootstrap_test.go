package partition

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence/raftstore"
)

// TestHalfDoneBootstrapStartsOver: a crash inside raft.BootstrapCluster,
// after it stored term 1 and before its configuration entry, used to leave
// a group that never elected ("no known peers"); Open now bootstraps it
// again and it leads.
func TestHalfDoneBootstrapStartsOver(t *testing.T) {
	c := newCluster(t, 0, nil)
	nd := c.addNode("n1")
	stores, err := raftstore.New(nd.store.DB(), c.part+1, raftstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := stores.Stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if has, _ := raft.HasExistingState(stores.Log, stores.Stable, stores.Snapshots); !has {
		t.Fatal("setup: term 1 alone does not count as state")
	}
	c.start(nd, []raft.Server{{Suffrage: raft.Voter, ID: nd.id, Address: nd.addr}})
	if l := c.leader(10 * time.Second); l != nd {
		t.Fatalf("leader %v", l)
	}
}
