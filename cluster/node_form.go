package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/cluster/balance"
	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
)

// formAndLead forms the cluster when this node is the bootstrapper, and then,
// for as long as this node leads the meta group, keeps the meta state in
// step with gossip: members join, die, come back; the assignment follows.
func (n *Node) formAndLead() {
	if err := n.form(); err != nil {
		n.log.Warn("forming the cluster", "err", err)
	}
	if n.meta.IsLeader() {
		if err := n.lead(); err != nil && !errors.Is(err, meta.ErrNotLeader) {
			n.log.Warn("meta leader duties", "err", err)
		}
	}
}

// hostingMembers are the alive gossip members that host actors, by name
// (the newest member id of a name wins: a restarted node has a new id).
func (n *Node) hostingMembers() map[string]membership.Member {
	out := make(map[string]membership.Member)
	for _, m := range n.gossp.Members() {
		if m.MetaErr != nil || m.Meta.Client || m.Meta.NodeName == "" || m.State != membership.StateAlive {
			continue
		}
		if cur, ok := out[m.Meta.NodeName]; ok && cur.Since.After(m.Since) {
			continue
		}
		out[m.Meta.NodeName] = m
	}
	return out
}

// form bootstraps the meta group and initialises the cluster when this
// node has no meta state, was asked to bootstrap, sees the expected number
// of members, and has the lowest name among them.
func (n *Node) form() error {
	st := n.meta.State()
	if st.GetPartitions() != 0 {
		if int(st.GetPartitions()) != n.cfg.Partitions {
			n.fail(fmt.Errorf("cluster: %w: the cluster has %d partitions; this node was started with --partitions %d",
				ErrPartitionsMismatch, st.GetPartitions(), n.cfg.Partitions))
		}
		return nil
	}
	if n.cfg.BootstrapExpect < 1 {
		return nil // joining: the meta leader adds us
	}
	has, err := n.meta.HasState()
	if err != nil {
		return err
	}
	members := n.hostingMembers()
	if !has {
		if len(members) < n.cfg.BootstrapExpect {
			return nil
		}
		names := make([]string, 0, len(members))
		for name := range members {
			names = append(names, name)
		}
		sort.Strings(names)
		names = names[:n.cfg.BootstrapExpect]
		if names[0] != n.cfg.Name {
			return nil // the lowest name bootstraps; we get added
		}
		var servers []raft.Server
		for _, name := range names {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(members[name].Meta.RaftAddr)})
		}
		n.log.Info("bootstrapping the meta group", "voters", names)
		if err := n.meta.Bootstrap(servers); err != nil {
			return err
		}
	}
	if !n.meta.IsLeader() {
		return nil
	}
	// Whoever leads the uninitialised meta group writes init: its
	// configuration is still the bootstrapped voters (also after a restart
	// between bootstrap and init).
	conf, err := n.meta.Configuration()
	if err != nil {
		return err
	}
	var names []string
	for _, s := range conf.Servers {
		names = append(names, string(s.ID))
	}
	// We bootstrapped and lead: write the cluster's first configuration.
	var id [8]byte
	_, _ = rand.Read(id[:])
	init := &protocol.MetaInit{
		ClusterId:  hex.EncodeToString(id[:]),
		Partitions: uint32(n.cfg.Partitions),
		Replicas:   uint32(n.cfg.Replicas),
	}
	var nodes []balance.Node
	for _, name := range names {
		m := members[name]
		if m.ID == "" {
			return fmt.Errorf("member %s vanished before init", name)
		}
		init.Members = append(init.Members, &protocol.MetaMember{Name: name, RaftAddr: m.Meta.RaftAddr, HttpAddr: m.Meta.HTTPAddr, Incarnation: m.Meta.Incarnation})
		nodes = append(nodes, balance.Node{Name: name, State: balance.Active})
	}
	init.Assignment = toProto(balance.Plan(nil, n.cfg.Partitions, nodes, n.cfg.Replicas))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Init{Init: init}})
	if errors.Is(err, meta.ErrInitialized) {
		err = nil
	}
	if err == nil {
		n.log.Info("cluster initialised", "cluster_id", init.ClusterId, "partitions", init.Partitions, "replicas", init.Replicas, "members", names)
	}
	return err
}

// lead runs the meta leader's duties once.
func (n *Node) lead() error {
	st := n.meta.State()
	if st.GetPartitions() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	alive := n.hostingMembers()

	// Members seen in gossip and unknown to meta (or changed) are recorded.
	for name, m := range alive {
		if m.Meta.Partitions != 0 && m.Meta.Partitions != int(st.GetPartitions()) {
			continue // it refuses itself; never add it
		}
		cur := meta.FindMember(st, name)
		if cur != nil && cur.GetState() == protocol.MemberState_MEMBER_STATE_REMOVED {
			continue
		}
		want := &protocol.MetaMember{Name: name, RaftAddr: m.Meta.RaftAddr, HttpAddr: m.Meta.HTTPAddr, Incarnation: m.Meta.Incarnation}
		if cur != nil && cur.GetState() == protocol.MemberState_MEMBER_STATE_DEAD {
			want.State = protocol.MemberState_MEMBER_STATE_ACTIVE
		} else if cur != nil && cur.GetRaftAddr() == want.RaftAddr && cur.GetHttpAddr() == want.HttpAddr && cur.GetIncarnation() == want.Incarnation {
			continue
		}
		n.log.Info("recording member", "member", name, "raft", want.RaftAddr)
		if err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_UpsertMember{UpsertMember: want}}); err != nil {
			return err
		}
		st = n.meta.State()
	}

	// Members unreachable for longer than DeadAfter are declared dead.
	now := time.Now()
	n.mu.Lock()
	for _, m := range st.GetMembers() {
		if _, ok := alive[m.GetName()]; ok || m.GetState() != protocol.MemberState_MEMBER_STATE_ACTIVE && m.GetState() != protocol.MemberState_MEMBER_STATE_DRAINING {
			delete(n.missing, m.GetName())
			continue
		}
		if _, ok := n.missing[m.GetName()]; !ok {
			n.missing[m.GetName()] = now
		}
	}
	var dead []string
	for name, since := range n.missing {
		if now.Sub(since) >= n.cfg.DeadAfter {
			dead = append(dead, name)
		}
	}
	n.mu.Unlock()
	for _, name := range dead {
		n.log.Warn("member unreachable too long; its replicas will be re-created elsewhere", "member", name, "after", n.cfg.DeadAfter)
		if err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_SetState{SetState: &protocol.MetaSetState{
			Name: name, State: protocol.MemberState_MEMBER_STATE_DEAD}}}); err != nil {
			return err
		}
		n.mu.Lock()
		delete(n.missing, name)
		n.mu.Unlock()
		st = n.meta.State()
	}

	if err := n.reconcileMetaVoters(st, alive); err != nil {
		return err
	}

	// The assignment follows the members.
	plan := balance.Plan(fromProto(st.GetAssignment()), int(st.GetPartitions()), planNodes(st), int(st.GetReplicas()))
	if next := toProto(plan); !sameAssignment(next, st.GetAssignment()) {
		moves := balance.Moves(fromProto(st.GetAssignment()), plan)
		n.log.Info("rebalancing", "moves", len(moves))
		err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_SetAssignment{SetAssignment: &protocol.MetaSetAssignment{
			ExpectVersion: st.GetVersion(), Assignment: next}}})
		if err != nil && !errors.Is(err, meta.ErrStale) {
			return err
		}
	}
	return nil
}

// reconcileMetaVoters keeps the meta group at 1, 3 or 5 voters chosen among
// the active, reachable members in join order; every other member follows
// as a non-voter, and dead or removed members leave the group (a removed
// one once it leads no partition). One change per call, so each is
// committed before the next is planned.
func (n *Node) reconcileMetaVoters(st *protocol.MetaState, alive map[string]membership.Member) error {
	conf, err := n.meta.Configuration()
	if err != nil {
		return err
	}
	inConf := map[string]raft.Server{}
	for _, s := range conf.Servers {
		inConf[string(s.ID)] = s
	}
	members := slices.Clone(st.GetMembers())
	slices.SortFunc(members, func(a, b *protocol.MetaMember) int { return int(a.GetJoined()) - int(b.GetJoined()) })
	var eligible []string
	keep := map[string]bool{}
	for _, m := range members {
		switch m.GetState() {
		case protocol.MemberState_MEMBER_STATE_ACTIVE:
			keep[m.GetName()] = true
			if _, ok := alive[m.GetName()]; ok {
				eligible = append(eligible, m.GetName())
			} else if s, ok := inConf[m.GetName()]; ok && s.Suffrage == raft.Voter {
				// An unreachable voter keeps its vote until declared dead:
				// demoting it would not help a quorum that lacks it anyway.
				eligible = append(eligible, m.GetName())
			}
		case protocol.MemberState_MEMBER_STATE_DRAINING:
			keep[m.GetName()] = true
		case protocol.MemberState_MEMBER_STATE_REMOVED:
			// A removed member that is up and still leads partitions
			// stays, as a non-voter, until it has handed them off: it
			// moves them by the assignment, which it learns only through
			// the meta group. Taken out at once, it would lead on with
			// the assignment it had, which still lists it.
			if am, ok := alive[m.GetName()]; ok && n.leadsAny(am.ID) {
				keep[m.GetName()] = true
			}
		}
	}
	target := 1
	switch {
	case len(eligible) >= 5:
		target = 5
	case len(eligible) >= 3:
		target = 3
	}
	// Prefer current voters, then join order.
	var voters []string
	for _, name := range eligible {
		if s, ok := inConf[name]; ok && s.Suffrage == raft.Voter && len(voters) < target {
			voters = append(voters, name)
		}
	}
	for _, name := range eligible {
		if len(voters) >= target {
			break
		}
		if !slices.Contains(voters, name) {
			if _, ok := alive[name]; ok {
				voters = append(voters, name)
			}
		}
	}
	r := n.meta.Raft()
	for _, m := range members {
		name := m.GetName()
		s, in := inConf[name]
		addr := raft.ServerAddress(m.GetRaftAddr())
		switch {
		case !keep[name] && in:
			if name == n.cfg.Name {
				return r.LeadershipTransfer().Error()
			}
			n.log.Info("meta: removing server", "member", name)
			return r.RemoveServer(raft.ServerID(name), 0, membershipOpTimeout).Error()
		case !keep[name]:
		case slices.Contains(voters, name) && (!in || s.Suffrage != raft.Voter || s.Address != addr):
			if _, ok := alive[name]; !ok {
				continue
			}
			if !in {
				// Non-voter first: an empty voter would count in the
				// quorum before it holds the log.
				n.log.Info("meta: adding non-voter before promotion", "member", name)
				return r.AddNonvoter(raft.ServerID(name), addr, 0, membershipOpTimeout).Error()
			}
			n.log.Info("meta: adding voter", "member", name)
			return r.AddVoter(raft.ServerID(name), addr, 0, membershipOpTimeout).Error()
		case !slices.Contains(voters, name) && in && s.Suffrage == raft.Voter:
			if name == n.cfg.Name {
				return r.LeadershipTransfer().Error()
			}
			n.log.Info("meta: demoting voter", "member", name)
			return r.DemoteVoter(raft.ServerID(name), 0, membershipOpTimeout).Error()
		case !slices.Contains(voters, name) && (!in || s.Address != addr):
			if _, ok := alive[name]; !ok {
				continue
			}
			n.log.Info("meta: adding non-voter", "member", name)
			return r.AddNonvoter(raft.ServerID(name), addr, 0, membershipOpTimeout).Error()
		}
	}
	return nil
}

// leadsAny reports whether the placement table has member (a member id)
// leading some partition.
func (n *Node) leadsAny(member string) bool {
	for p := range n.Table.Partitions() {
		if id, _, ok := n.Table.Leader(p); ok && id == member {
			return true
		}
	}
	return false
}

func planNodes(st *protocol.MetaState) []balance.Node {
	var out []balance.Node
	for _, m := range st.GetMembers() {
		s := balance.Active
		switch m.GetState() {
		case protocol.MemberState_MEMBER_STATE_DRAINING:
			s = balance.Draining
		case protocol.MemberState_MEMBER_STATE_DEAD:
			s = balance.Dead
		case protocol.MemberState_MEMBER_STATE_REMOVED:
			s = balance.Removed
		}
		out = append(out, balance.Node{Name: m.GetName(), State: s})
	}
	return out
}

func toProto(a balance.Assignment) []*protocol.PartitionAssignment {
	out := make([]*protocol.PartitionAssignment, len(a))
	for i, p := range a {
		out[i] = &protocol.PartitionAssignment{Replicas: slices.Clone(p.Replicas), Leader: p.Leader}
	}
	return out
}

func fromProto(a []*protocol.PartitionAssignment) balance.Assignment {
	out := make(balance.Assignment, len(a))
	for i, p := range a {
		out[i] = balance.Partition{Replicas: slices.Clone(p.GetReplicas()), Leader: p.GetLeader()}
	}
	return out
}

func sameAssignment(a, b []*protocol.PartitionAssignment) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := slices.Clone(a[i].GetReplicas()), slices.Clone(b[i].GetReplicas())
		slices.Sort(x)
		slices.Sort(y)
		if !slices.Equal(x, y) || a[i].GetLeader() != b[i].GetLeader() {
			return false
		}
	}
	return true
}
