package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/persistence/raftstore"
	"github.com/wardhq/ward/protocol"
)

// reconcileLoop keeps this node's partition replicas in step with the
// meta assignment: it opens the replicas assigned here, closes those moved
// away, and, for the partitions it leads, changes the raft configuration
// towards the assignment and hands leadership to the preferred leader.
func (n *Node) reconcileLoop() {
	changes, cancel := n.meta.Changes()
	defer cancel()
	n.every(reconcileEvery, changes, n.reconcile)
}

// reconcile runs one round over every partition, with one view of gossip.
func (n *Node) reconcile() {
	st := n.meta.State()
	if st.GetPartitions() == 0 || int(st.GetPartitions()) != n.cfg.Partitions {
		return
	}
	alive := n.hostingMembers()
	for p := range n.cfg.Partitions {
		n.reconcilePartition(st, p, alive)
	}
	n.observeLeaders(st, alive)
}

func (n *Node) reconcilePartition(st *protocol.MetaState, p int, alive map[string]membership.Member) {
	a := st.GetAssignment()[p]
	want := slices.Contains(a.GetReplicas(), n.cfg.Name)
	s := n.slots[p]
	pt := s.get()
	switch {
	case want && pt == nil:
		if err := n.openPartition(st, p); err != nil {
			if isCorrupt(err) {
				// Damaged local state is not retried: serving around it
				// would hide it, and a replica that silently never opens
				// leaves the partition one copy short. The operator
				// replaces the disk (or removes the node) and the others
				// re-replicate.
				n.fail(fmt.Errorf("partition %d replica: %w", p, err))
				return
			}
			n.log.Error("cannot open partition replica", "partition", p, "err", err)
		}
	case !want && pt != nil:
		if pt.Raft().State() == raft.Leader {
			n.reconcileLeader(st, p, pt, alive) // hands leadership away first
			return
		}
		f := pt.Raft().GetConfiguration()
		if f.Error() != nil {
			return
		}
		member := false
		for _, srv := range f.Configuration().Servers {
			member = member || string(srv.ID) == n.cfg.Name
		}
		if member && !removedUnawares(pt.Raft(), n.claimedRecently(p, removedClaimWindow)) {
			return // still a member: the leader removes us first
		}
		n.log.Info("closing partition replica moved away", "partition", p, "unaware_of_removal", member)
		s.take()
		if err := pt.Close(); err != nil {
			n.log.Warn("closing partition replica", "partition", p, "err", err)
		}
	case want && pt.Raft().State() == raft.Leader:
		n.reconcileLeader(st, p, pt, alive)
	}
}

// openPartition starts the local replica of p. The initial members
// bootstrap it with the initial assignment (raft ignores a bootstrap when
// the group has state); every other replica waits to be added by the
// partition's leader.
func (n *Node) openPartition(st *protocol.MetaState, p int) error {
	var boot []raft.Server
	if init := st.GetInitialAssignment(); p < len(init) && slices.Contains(init[p].GetReplicas(), n.cfg.Name) {
		if me := meta.FindInitial(st, n.cfg.Name); me != nil && me.GetIncarnation() == n.incarnation {
			for _, name := range init[p].GetReplicas() {
				m := meta.FindInitial(st, name)
				boot = append(boot, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(m.GetRaftAddr())})
			}
		}
	}
	trans, err := n.mux.Transport(uint32(p) + 1)
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	rc := *n.cfg.Raft
	pt, err := partition.Open(partition.Config{
		ID:        uint32(p),
		Store:     n.cfg.Store,
		Transport: trans,
		LocalID:   raft.ServerID(n.cfg.Name),
		Bootstrap: boot,
		Raft:      &rc,
		OnLeadership: func(leader bool) {
			n.onLeadership(p, leader)
		},
		OnCorrupt: func(err error) {
			n.fail(fmt.Errorf("partition %d replica: %w", p, err))
		},
		Registerer: n.cfg.Host.Registerer,
		Logger:     n.cfg.Host.Logger,
	})
	if err != nil {
		_ = trans.Close()
		return err
	}
	n.slots[p].set(pt)
	n.log.Info("partition replica open", "partition", p, "bootstrap", len(boot) > 0)
	return nil
}

// removedClaimWindow: a claim of leadership this recent means the claimant
// led the partition with a quorum just now (a raft leader that loses
// contact with its quorum steps down within its lease, 250 ms).
const removedClaimWindow = time.Second

// removedUnawares reports whether a replica that still lists itself in its
// raft configuration was in fact removed without hearing of it: the leader
// stops replicating to a removed member once the removal commits, so the
// entry that removes it may never reach it. Such a replica hears from no
// leader and runs elections forever, while another member announces that
// it leads the partition, i.e. holds a quorum that does not include us.
// Closing it then cannot cost the group its quorum; closing a replica that
// merely lost its leader (no claim anywhere) could, so that one stays.
func removedUnawares(r *raft.Raft, otherLeaderClaims bool) bool {
	if !otherLeaderClaims || r.State() == raft.Leader {
		return false
	}
	_, leader := r.LeaderWithID()
	return leader == "" || r.State() == raft.Candidate
}

// catchUpSlack is how far (in log entries) behind the leader's commit
// index a non-voter may be and still be promoted, or a voter and still be
// handed leadership.
const catchUpSlack = 64

// caughtUp reports whether member's replica of p had applied all but at
// most catchUpSlack of this node's committed entries when it last said.
func (n *Node) caughtUp(member string, p int) bool {
	lag, known := n.lag(member, p)
	return known && lag <= catchUpSlack
}

// reconcileLeader moves p's raft configuration one step towards the
// assignment: add (or re-address) a missing replica, then remove one that
// is no longer wanted, then hand leadership to the preferred leader. Each
// step runs in the background; the next tick plans the next step.
func (n *Node) reconcileLeader(st *protocol.MetaState, p int, pt *partition.Partition, alive map[string]membership.Member) {
	n.mu.Lock()
	if n.busy[p] {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	f := pt.Raft().GetConfiguration()
	if f.Error() != nil {
		return
	}
	conf := f.Configuration()
	a := st.GetAssignment()[p]
	want := a.GetReplicas()
	inConf := map[string]raft.Server{}
	for _, s := range conf.Servers {
		inConf[string(s.ID)] = s
	}
	var op func() error
	var what string
	for _, name := range want {
		m := meta.FindMember(st, name)
		if m == nil {
			continue
		}
		addr := raft.ServerAddress(m.GetRaftAddr())
		s, ok := inConf[name]
		if ok && s.Suffrage == raft.Voter && s.Address == addr {
			continue
		}
		if _, up := alive[name]; !up {
			continue // adding an unreachable replica would only shrink the quorum margin
		}
		if !ok || s.Address != addr {
			// A new replica follows as a non-voter until it has caught up:
			// counted in the quorum while still empty, it would stall
			// commits (and the leader's lease) for as long as it copies.
			what = "add non-voter " + name
			op = func() error { return pt.AddNonvoter(raft.ServerID(name), addr, membershipOpTimeout) }
			break
		}
		if !n.caughtUp(alive[name].ID, p) {
			continue
		}
		what = "promote caught-up " + name + " to voter"
		op = func() error { return pt.AddVoter(raft.ServerID(name), addr, membershipOpTimeout) }
		break
	}
	if op == nil {
		complete := true
		for _, name := range want {
			if s, ok := inConf[name]; !ok || s.Suffrage != raft.Voter {
				complete = false
			}
		}
		for _, s := range conf.Servers {
			if slices.Contains(want, string(s.ID)) || !complete {
				continue
			}
			name := string(s.ID)
			if name == n.cfg.Name {
				to := a.GetLeader()
				if !slices.Contains(want, to) {
					to = want[0]
				}
				what = "hand leadership to " + to + " before leaving"
				target := inConf[to]
				op = func() error { return pt.LeadershipTransferToServer(target.ID, target.Address) }
			} else {
				what = "remove " + name
				op = func() error { return pt.RemoveServer(raft.ServerID(name), membershipOpTimeout) }
			}
			break
		}
	}
	if op == nil && a.GetLeader() != "" && a.GetLeader() != n.cfg.Name {
		target, ok := inConf[a.GetLeader()]
		_, up := alive[a.GetLeader()]
		n.mu.Lock()
		recent := time.Since(n.transfers[p]) < transferPause
		n.mu.Unlock()
		// Only to a replica that has applied nearly everything: raft hands
		// over once the target's log matches, but the new leader serves
		// only after its barrier, i.e. after applying its whole backlog. A
		// node just back from a crash would leave the partition without a
		// serving leader for as long as that takes (seconds under load).
		if ok && up && target.Suffrage == raft.Voter && !recent && n.caughtUp(alive[a.GetLeader()].ID, p) {
			n.mu.Lock()
			n.transfers[p] = time.Now()
			n.mu.Unlock()
			what = "hand leadership to preferred " + a.GetLeader()
			op = func() error { return pt.LeadershipTransferToServer(target.ID, target.Address) }
		}
	}
	if op == nil {
		return
	}
	n.mu.Lock()
	n.busy[p] = true
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.busy, p)
			n.mu.Unlock()
		}()
		n.log.Info("partition membership change", "partition", p, "op", what)
		if err := op(); err != nil {
			n.log.Warn("partition membership change failed", "partition", p, "op", what, "err", err)
		}
	}()
}

// onLeadership publishes this node's own leadership of p: into the local
// table at once, and to the other members with the next announcement.
func (n *Node) onLeadership(p int, leader bool) {
	n.mu.Lock()
	member := n.member
	n.mu.Unlock()
	pt := n.slots[p].get()
	if pt == nil || member == "" {
		return
	}
	// The term is read before the state: a leader that steps down sets its
	// state before it adopts the newer term, so leader-then-term could
	// claim a term this node never led.
	term := pt.Raft().CurrentTerm()
	if leader && pt.Raft().State() == raft.Leader {
		n.Table.Claim(p, member, term)
	} else if !leader {
		n.Table.Set(p, "", term)
	}
	n.announce()
}

// observeLeaders feeds the table with what the local replicas know of their
// leaders: a follower learns a new leader (or an election) from raft
// before that leader's announcement arrives. Only replicas the assignment
// keeps here count: one moved away may have been removed from its group
// without hearing of it, and its endless elections would stamp "no leader"
// over the real leader's claims with ever higher terms.
func (n *Node) observeLeaders(st *protocol.MetaState, alive map[string]membership.Member) {
	for p, s := range n.slots {
		pt := s.get()
		if pt == nil || !slices.Contains(st.GetAssignment()[p].GetReplicas(), n.cfg.Name) {
			continue
		}
		r := pt.Raft()
		term := r.CurrentTerm()
		_, leader := r.LeaderWithID()
		switch {
		case r.State() == raft.Leader:
			if pt.IsReady() {
				n.mu.Lock()
				member := n.member
				n.mu.Unlock()
				n.Table.Claim(p, member, term) // term was read before the state
			}
		case leader == "":
			n.Table.Set(p, "", term)
		default:
			if m, ok := alive[string(leader)]; ok {
				n.Table.Set(p, m.ID, term)
			}
		}
	}
}

// isCorrupt reports whether err comes from stored bytes failing their
// checksum or decode, in the raft stores or the actor store.
func isCorrupt(err error) bool {
	return errors.Is(err, raftstore.ErrCorrupt) || errors.Is(err, persistence.ErrCorrupt)
}

// handOffTimeout bounds how long a stopping node waits for its leaderships
// to move.
const handOffTimeout = 5 * time.Second

// handOff moves every leadership this node holds (partitions and the meta
// group) to the most caught-up other voter before the node stops. Without
// it a graceful stop is a crash to the rest of the cluster: the followers
// notice only when their election timeout runs out, and every request to
// the node's partitions waits that long. Raft's transfer is immediate (the
// target starts its election at once), so the partitions are led again
// within a round trip or two.
func (n *Node) handOff(ctx context.Context) {
	if n.Host == nil {
		return
	}
	n.announceLeaving()
	ctx, cancel := context.WithTimeout(ctx, handOffTimeout)
	defer cancel()
	type transfer struct {
		what string
		fn   func() error
	}
	var todo []transfer
	for p, s := range n.slots {
		if pt := s.get(); pt != nil && leadsWithPeers(pt.Raft()) {
			todo = append(todo, transfer{fmt.Sprintf("partition %d", p), pt.LeadershipTransfer})
		}
	}
	if r := n.meta.Raft(); leadsWithPeers(r) {
		todo = append(todo, transfer{"meta", func() error { return r.LeadershipTransfer().Error() }})
	}
	if len(todo) == 0 {
		return
	}
	done := make(chan struct{}, len(todo))
	for _, t := range todo {
		go func() {
			if err := t.fn(); err != nil {
				n.log.Warn("leadership not handed off before stopping", "group", t.what, "err", err)
			}
			done <- struct{}{}
		}()
	}
	for range todo {
		select {
		case <-done:
		case <-ctx.Done():
			n.log.Warn("stopping before every leadership was handed off", "err", ctx.Err())
			return
		}
	}
	n.log.Info("leaderships handed off before stopping", "groups", len(todo))
}

// leadsWithPeers reports whether r leads a configuration with another voter
// to hand leadership to.
func leadsWithPeers(r *raft.Raft) bool {
	if r.State() != raft.Leader {
		return false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	return voters > 1
}
