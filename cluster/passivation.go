package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Passivation
//
// protoactor grains passivate with ctx.SetReceiveTimeout and a Poison on
// ReceiveTimeout; the cluster middleware then drops the PID from the PID
// cache and the identity lookup forgets it when its Terminated arrives, so
// the next request activates afresh. We keep that shape with two changes:
//
//   - Idle detection is our own timer, not SetReceiveTimeout. protoactor's
//     receive-timeout timer callback reads and writes the actor context
//     from the timer goroutine (upstream #1139: a data race the race
//     detector reports), and it is reset on every message. Ours is one
//     time.AfterFunc per activation that only posts an idleCheck message;
//     the activation compares its last-activity time on its own goroutine
//     and re-arms for the remainder, so a busy activation touches the timer
//     once per PassivateAfter, not once per message.
//   - stopGuard answers messages that reach a stopped activation. protoactor
//     silently drops user messages still in (or racing into) the mailbox of
//     an actor that has stopped, so their callers would wait out a whole
//     timeout. The guard replies with a DeadLetterResponse instead, which
//     our request path retries at once on a fresh activation.

// idleCheck is posted by an activation's idle timer.
type idleCheck struct{}

var idleTick = &idleCheck{}

func (g *grain) armIdle(ctx actor.Context) {
	self, root := ctx.Self(), g.h.system.Root
	g.idle = time.AfterFunc(g.h.cfg.PassivateAfter, func() { root.Send(self, idleTick) })
}

func (g *grain) disarmIdle() {
	if g.idle != nil {
		g.idle.Stop()
	}
}

func (g *grain) checkIdle(ctx actor.Context) {
	if g.stopReason != "" || g.idle == nil {
		return
	}
	idle := time.Since(g.lastActive)
	if idle >= g.h.cfg.PassivateAfter {
		g.stop(ctx, stopIdle, true)
		return
	}
	g.idle.Reset(g.h.cfg.PassivateAfter - idle)
}

// stop ends the activation. graceful lets the messages already queued be
// handled first (Poison is a user message); otherwise it stops at once
// (Stop is a system message) and stopGuard dead-letters the queue.
func (g *grain) stop(ctx actor.Context, reason string, graceful bool) {
	if g.stopReason != "" {
		return
	}
	g.stopReason = reason
	g.disarmIdle()
	if graceful {
		ctx.Poison(ctx.Self())
	} else {
		ctx.Stop(ctx.Self())
	}
}

// stopGuard is a per-mailbox middleware. The mailbox reports every message
// after invoking it; once the Stop system message has been handled the actor
// is gone (grains have no children to wait for), and any request still
// coming through gets a DeadLetterResponse, as if it had been sent after the
// PID was unregistered.
type stopGuard struct {
	system  *actor.ActorSystem
	stopped bool // only touched by the mailbox's run loop, which is serial
}

func (s *stopGuard) MailboxStarted()   {}
func (s *stopGuard) MessagePosted(any) {}
func (s *stopGuard) MailboxEmpty()     {}
func (s *stopGuard) MessageReceived(m any) {
	if _, ok := m.(*actor.Stop); ok {
		s.stopped = true
		return
	}
	if !s.stopped {
		return
	}
	if env, ok := m.(*actor.MessageEnvelope); ok && env.Sender != nil {
		s.system.Root.Send(env.Sender, &actor.DeadLetterResponse{})
	}
}
