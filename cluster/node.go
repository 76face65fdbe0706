package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/cluster/partition"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/cluster/placement/leaderlookup"
	"github.com/wardhq/ward/persistence"
)

// DefaultPartitions is the number of Raft partitions of a node.
const DefaultPartitions = 16

// NodeConfig configures StartNode: a Host whose actors live in Raft
// partitions on the node's Store, placed on each partition's leader.
type NodeConfig struct {
	// Host is the host configuration; Journal, Journals, Partitions,
	// IdentityLookup and ReadyCheck are set by StartNode.
	Host Config
	// Store is the node's store; the node does not close it.
	Store *persistence.Store
	// Partitions is P; 0 means DefaultPartitions.
	Partitions int
	// LocalID is this node's raft server id; default "node-1".
	LocalID string
	// Raft is the base raft configuration of every partition; nil means a
	// configuration tuned for a lone node.
	Raft *raft.Config
}

// Node is a Host on the partition path with its partitions.
type Node struct {
	*Host
	Partitions []*partition.Partition
	Table      *placement.Table

	mu      sync.Mutex
	member  string // the host's member id once started
	leading []bool
}

// StartNode opens P partitions on cfg.Store, each bootstrapped as a single
// voter (R=1), feeds their leadership into a placement table and starts a
// Host that places identities with leaderlookup on that table.
//
// TODO(multi-node): the lone node's raft traffic uses an in-memory
// transport; `ward node` will use raftmux group transports, bootstrap from
// the meta group and replicate each partition R ways.
func StartNode(cfg NodeConfig) (n *Node, err error) {
	if cfg.Store == nil {
		return nil, errors.New("cluster: NodeConfig.Store is required")
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.LocalID == "" {
		cfg.LocalID = "node-1"
	}
	if cfg.Raft == nil {
		rc := raft.DefaultConfig()
		// A lone voter elects itself after one heartbeat timeout.
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.Raft = rc
	}
	n = &Node{
		Table:   placement.NewTable(cfg.Partitions),
		leading: make([]bool, cfg.Partitions),
	}
	defer func() {
		if err != nil {
			n.closePartitions()
		}
	}()
	for p := 0; p < cfg.Partitions; p++ {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("%s/p%d", cfg.LocalID, p)))
		rc := *cfg.Raft
		pt, err := partition.Open(partition.Config{
			ID:        uint32(p),
			Store:     cfg.Store,
			Transport: trans,
			LocalID:   raft.ServerID(cfg.LocalID),
			Bootstrap: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.LocalID), Address: addr}},
			Raft:      &rc,
			OnLeadership: func(leader bool) {
				n.onLeadership(p, leader)
			},
			Registerer: cfg.Host.Registerer,
			Logger:     cfg.Host.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: open partition %d: %w", p, err)
		}
		n.Partitions = append(n.Partitions, pt)
	}

	hc := cfg.Host
	hc.Journal = nil
	hc.Partitions = cfg.Partitions
	hc.Journals = func(p int) Journal { return n.Partitions[p] }
	hc.IdentityLookup = leaderlookup.New(n.Table)
	hc.ReadyCheck = n.allLed
	h, err := Start(hc)
	if err != nil {
		return nil, err
	}
	n.Host = h
	n.mu.Lock()
	n.member = h.MemberID()
	n.mu.Unlock()
	for p := range n.leading {
		n.publish(p)
	}
	return n, nil
}

func (n *Node) onLeadership(p int, leader bool) {
	n.mu.Lock()
	n.leading[p] = leader
	n.mu.Unlock()
	n.publish(p)
}

// publish writes partition p's leadership, as this node sees it, into the
// table. With R=1 this node is the only possible leader.
func (n *Node) publish(p int) {
	n.mu.Lock()
	member, leading := n.member, n.leading[p]
	n.mu.Unlock()
	if member == "" {
		// The host is not started yet (and n.Partitions may still be
		// growing); StartNode publishes every partition after.
		return
	}
	var term uint64
	if st, err := n.Partitions[p].Stats(); err == nil {
		term = st.Term
	}
	if leading {
		n.Table.Set(p, member, term)
	} else {
		n.Table.Set(p, "", term)
	}
}

// allLed reports whether every partition has a known leader.
func (n *Node) allLed() bool {
	for p := 0; p < n.Table.Partitions(); p++ {
		if _, _, ok := n.Table.Leader(p); !ok {
			return false
		}
	}
	return true
}

// Stop stops the host, then closes the partitions (the store is the
// caller's to close after).
func (n *Node) Stop(ctx context.Context) error {
	err := n.Host.Stop(ctx)
	return errors.Join(err, n.closePartitions())
}

func (n *Node) closePartitions() error {
	var errs []error
	for _, p := range n.Partitions {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
