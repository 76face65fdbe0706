package leaderlookup

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/wardhq/ward/cluster/placement"
)

// partitionChanged tells the placement actor that a partition's Table entry
// changed; it re-reads the entry (notifications may be out of order).
type partitionChanged struct{ partition int }

// activation is one grain this member runs.
type activation struct {
	ci        *pcluster.ClusterIdentity
	key       string
	pid       *actor.PID
	partition int
	kind      *pcluster.ActivatedKind
	// stopping is set once we told it to stop for leadership loss; it stays
	// in the maps until its Terminated arrives so that a quick regain of
	// leadership cannot start a second activation beside the dying one.
	stopping bool
}

// placementActor owns this member's activations. Being one actor, it
// serialises every activation decision on this member: an identity is
// spawned at most once here, and a leadership check and the spawn that
// follows it cannot interleave with the sweep that follows a Table change.
type placementActor struct {
	l      *Lookup
	byKey  map[string]*activation // ClusterIdentity.AsKey()
	byPID  map[string]*activation // PID.Id
	byPart map[int]map[string]*activation
}

func newPlacementActor(l *Lookup) *placementActor {
	return &placementActor{
		l:      l,
		byKey:  make(map[string]*activation),
		byPID:  make(map[string]*activation),
		byPart: make(map[int]map[string]*activation),
	}
}

func (a *placementActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ActivationRequest:
		a.onActivationRequest(ctx, msg)
	case partitionChanged:
		a.sweep(ctx, msg.partition)
	case *actor.Terminated:
		a.onTerminated(msg.GetWho())
	case *actor.Stopping:
		// protoactor stops our children (the activations) and waits for
		// them before Stopped; nothing else to release.
	}
}

func (a *placementActor) onActivationRequest(ctx actor.Context, req *pcluster.ActivationRequest) {
	ci := req.GetClusterIdentity()
	if ci == nil {
		ctx.Respond(&pcluster.ActivationResponse{Failed: true})
		return
	}
	p := placement.PartitionOf(ci.Kind, ci.Identity, a.l.table.Partitions())
	// Our own Table decides, not the caller's: the caller's may lag.
	leader, epoch, ok := a.l.table.Leader(p)
	if !ok || !a.l.isSelf(leader) {
		// The change notification may still be queued behind this
		// request; sweep now so no activation of p outlives this refusal.
		a.sweep(ctx, p)
		a.l.refusals[RefusedNotLeader].Add(1)
		ctx.Respond(&pcluster.ActivationResponse{Failed: true, TopologyHash: epoch})
		return
	}
	key := ci.AsKey()
	if act, found := a.byKey[key]; found {
		if act.stopping {
			a.l.refusals[RefusedStopping].Add(1)
			ctx.Respond(&pcluster.ActivationResponse{Failed: true, TopologyHash: epoch})
			return
		}
		ctx.Respond(&pcluster.ActivationResponse{Pid: act.pid, TopologyHash: epoch})
		return
	}
	kind, ok := a.l.cluster.TryGetClusterKind(ci.Kind)
	if !ok {
		ctx.Logger().Error("activation of unknown kind", slog.String("kind", ci.Kind), slog.String("identity", ci.Identity))
		ctx.Respond(&pcluster.ActivationResponse{Failed: true, TopologyHash: epoch})
		return
	}
	// A child of ours: its Terminated comes to us however it ends
	// (idle passivation, failure, our stop), and we forget it then.
	pid := ctx.SpawnPrefix(pcluster.WithClusterIdentity(kind.Props, ci), ci.Identity)
	kind.Inc()
	act := &activation{ci: ci, key: key, pid: pid, partition: p, kind: kind}
	a.byKey[key] = act
	a.byPID[pid.GetId()] = act
	part := a.byPart[p]
	if part == nil {
		part = make(map[string]*activation)
		a.byPart[p] = part
	}
	part[key] = act
	ctx.Respond(&pcluster.ActivationResponse{Pid: pid, TopologyHash: epoch})
}

// sweep stops every activation of partition p unless this member leads p.
//
// Stop, not Poison: Stop is a system message handled before anything queued,
// while Poison would first let a deposed leader serve the queued requests from
// state that may already be stale. Ward's grains answer whatever is still
// queued with a dead letter (cluster/passivation.go, stopGuard), which the
// request path retries at once on the new leader.
func (a *placementActor) sweep(ctx actor.Context, p int) {
	part := a.byPart[p]
	if len(part) == 0 {
		return
	}
	if leader, _, ok := a.l.table.Leader(p); ok && a.l.isSelf(leader) {
		return
	}
	n := 0
	for _, act := range part {
		if act.stopping {
			continue
		}
		act.stopping = true
		ctx.Stop(act.pid)
		n++
	}
	if n > 0 {
		ctx.Logger().Info("partition leadership lost: stopping its activations",
			slog.Int("partition", p), slog.Int("activations", n))
	}
}

func (a *placementActor) onTerminated(who *actor.PID) {
	if who == nil {
		return
	}
	act, ok := a.byPID[who.GetId()]
	if !ok {
		return
	}
	delete(a.byPID, who.GetId())
	delete(a.byKey, act.key)
	if part := a.byPart[act.partition]; part != nil {
		delete(part, act.key)
		if len(part) == 0 {
			delete(a.byPart, act.partition)
		}
	}
	act.kind.Dec()
}
