package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Stop shuts the host down gracefully: it refuses new requests, lets the ones
// in flight finish, stops the timer scheduler (timers stay durable), waits
// for sends already released, passivates every activation and leaves the
// cluster. If ctx ends first the remaining steps still run, without waiting,
// and ctx's error is returned. The Journal is the caller's to close after.
func (h *Host) Stop(ctx context.Context) error {
	h.stopOnce.Do(func() { h.stopErr = h.stop(ctx) })
	return h.stopErr
}

func (h *Host) stop(ctx context.Context) error {
	h.gate.Lock()
	h.stopping = true
	h.gate.Unlock()
	start := time.Now()

	var errs []error
	if err := waitCtx(ctx, &h.requests); err != nil {
		errs = append(errs, fmt.Errorf("cluster: wait for requests in flight: %w", err))
	}
	h.relay.stop()
	if err := h.timers.stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cluster: wait for timers in flight: %w", err))
	}
	if err := waitCtx(ctx, &h.sends); err != nil {
		errs = append(errs, fmt.Errorf("cluster: wait for sends in flight: %w", err))
	}
	n, err := h.passivateAll(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("cluster: passivate activations: %w", err))
	}
	h.stopPlacementWatch()
	h.leaveCluster()
	h.dispatcher.stop()
	h.topics.closeAll()
	h.metrics.unregister()
	h.log.Info("cluster host stopped", "passivated", n, "took", time.Since(start))
	return errors.Join(errs...)
}

// passivateAll stops every live activation and waits for each to finish its
// queued messages.
func (h *Host) passivateAll(ctx context.Context) (int, error) {
	pids := h.activations.all()
	futures := make([]*actor.Future, len(pids))
	for i, pid := range pids {
		futures[i] = h.system.Root.PoisonFuture(pid)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range futures {
			_ = f.Wait() // a timeout means it is gone or stuck; shutdown goes on
		}
	}()
	select {
	case <-done:
		return len(pids), nil
	case <-ctx.Done():
		return len(pids), ctx.Err()
	}
}

// leaveCluster is protoactor's Cluster.Shutdown(true), reordered and
// without its fixed two-second sleep "for ownership transfer" (every
// activation has been passivated already, nothing is left to hand over).
//
// The order matters for the race detector: upstream's MemberList writes its
// member set under a mutex in UpdateClusterTopology but reads it without one
// in BroadcastEvent, which the disthash placement actor calls for every
// activation that terminates. So the placement actor is stopped (identity
// lookup) and gossip is stopped before the provider deregisters us, the one
// step here that changes the topology.
//
// The remote is stopped with Shutdown(false): upstream's graceful path
// writes endpointReader.suspended and endpointManager.stopped without
// synchronisation while inbound streams read them (a data race the race
// detector reports when a peer is still sending). Nothing is lost by it:
// requests in flight were waited for above, and the graceful path drops the
// outbound queues too.
func (h *Host) leaveCluster() {
	c := h.cluster
	c.Gossip.SetState(pcluster.GracefullyLeftKey, &emptypb.Empty{})
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	if err := c.Config.ClusterProvider.Shutdown(true); err != nil {
		h.log.Warn("cluster provider shutdown failed", "err", err)
	}
	h.system.Shutdown()
	c.Remote.Shutdown(false)
}

// waitCtx waits for wg or ctx, whichever comes first.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
