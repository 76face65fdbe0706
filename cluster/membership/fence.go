package membership

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// fenceWait bounds how long a topology push waits for protoactor's gossip
// actor to park. The actor answers in microseconds when idle; if it is gone
// or wedged the push goes ahead unfenced rather than stall membership.
const fenceWait = 500 * time.Millisecond

// topologySink returns the function that hands a member set to protoactor.
//
// Why the fence: at the pinned protoactor version MemberList writes its
// member set under its mutex in UpdateClusterTopology, but the gossip actor
// reads it with no lock on every incoming gossip request
// (cluster/gossip_actor.go: MemberList.ContainsMemberID), and the same
// topology update writes the BlockList that gossip reads unlocked
// (remote/blocklist.go: IsBlocked). Any provider that pushes topology from
// its own goroutine races with gossip; the race detector reports it within
// seconds of a second member joining. We cannot take MemberList's lock, but
// we can make the gossip actor stand still: it is sent a state request whose
// reply goes to a PID of ours, and our process's SendUserMessage, which runs
// on the gossip actor's goroutine inside its handler, blocks until the
// update is done. Everything gossip did before is then ordered before the
// update and everything after it after.
func topologySink(c *cluster.Cluster) func(cluster.Members) {
	return func(members cluster.Members) {
		fenceGossip(c.ActorSystem, c.Gossip.GossipActorName, fenceWait, func() {
			c.MemberList.UpdateClusterTopology(members)
		})
	}
}

// fenceGossip runs f while the actor registered locally as gossipName is
// parked in a handler; it reports whether the actor parked in time (if not,
// f runs anyway). A cluster client runs no gossip actor: f runs at once.
func fenceGossip(sys *actor.ActorSystem, gossipName string, wait time.Duration, f func()) bool {
	if _, ok := sys.ProcessRegistry.GetLocal(gossipName); !ok {
		f()
		return false
	}
	fp := &fenceProcess{parked: make(chan struct{}), release: make(chan struct{})}
	pid, ok := sys.ProcessRegistry.Add(fp, "membership-fence$"+sys.ProcessRegistry.NextId())
	if !ok {
		f()
		return false
	}
	defer sys.ProcessRegistry.Remove(pid)
	defer close(fp.release) // runs first: a late reply must never block gossip

	sys.Root.RequestWithCustomSender(actor.NewPID(sys.Address(), gossipName),
		&cluster.GetGossipStateRequest{GossipStateKey: "membership-fence"}, pid)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	parked := false
	select {
	case <-fp.parked:
		parked = true
	case <-timer.C:
	}
	f()
	return parked
}

// fenceProcess is the reply target of a fence request.
type fenceProcess struct {
	once    sync.Once
	parked  chan struct{}
	release chan struct{}
}

func (f *fenceProcess) SendUserMessage(*actor.PID, any) {
	f.once.Do(func() { close(f.parked) })
	<-f.release
}

func (f *fenceProcess) SendSystemMessage(*actor.PID, any) {}
func (f *fenceProcess) Stop(*actor.PID)                   {}
