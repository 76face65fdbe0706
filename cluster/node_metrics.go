package cluster

import (
	"strconv"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/placement/leaderlookup"
)

// nodeCollector reports membership, the meta group and placement at scrape
// time (reading the live values is cheaper and never stale, unlike gauges
// updated on events that can be missed). The partitions' own raft metrics
// are ward_partition_*.
type nodeCollector struct {
	n *Node

	members, metaLeader, metaCommit, metaApplied, metaLag, metaVersion,
	knownLeaders, localLeaders, localReplicas, partitionLag,
	lookupMisses, refusals *prometheus.Desc
}

func newNodeCollector(n *Node) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		n:             n,
		members:       d("ward_membership_members", "Gossip members by state, as this node sees them.", "state"),
		metaLeader:    d("ward_meta_leader", "1 when this node leads the meta group."),
		metaCommit:    d("ward_meta_commit_index", "Meta group raft commit index known to this node."),
		metaApplied:   d("ward_meta_applied_index", "Meta group raft index applied on this node."),
		metaLag:       d("ward_meta_apply_lag", "Meta group entries committed but not yet applied here."),
		metaVersion:   d("ward_meta_version", "Version of the applied meta state."),
		knownLeaders:  d("ward_placement_known_leaders", "Partitions whose leader this node's placement table knows."),
		localLeaders:  d("ward_placement_local_leaders", "Partitions this node leads and serves."),
		localReplicas: d("ward_placement_local_replicas", "Partition replicas open on this node."),
		partitionLag:  d("ward_partition_apply_lag", "Entries committed but not yet applied by this replica.", "partition"),
		lookupMisses: d("ward_placement_lookup_misses_total",
			"Identity lookups on this node that found no activation, by cause (the request path retries them).", "cause"),
		refusals: d("ward_placement_activation_refusals_total",
			"Activation requests this node's placement actor refused, by reason.", "reason"),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.metaLeader, c.metaCommit, c.metaApplied, c.metaLag, c.metaVersion,
		c.knownLeaders, c.localLeaders, c.localReplicas, c.partitionLag, c.lookupMisses, c.refusals} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counts := map[string]int{}
	for _, s := range []membership.State{membership.StateAlive, membership.StateSuspect, membership.StateDead, membership.StateLeft} {
		counts[s.String()] = 0
	}
	for _, m := range n.gossp.Members() {
		counts[m.State.String()]++
	}
	for s, v := range counts {
		gauge(c.members, float64(v), s)
	}
	r := n.meta.Raft()
	leader := 0.0
	if r.State() == raft.Leader {
		leader = 1
	}
	gauge(c.metaLeader, leader)
	commit, applied := r.CommitIndex(), r.AppliedIndex()
	gauge(c.metaCommit, float64(commit))
	gauge(c.metaApplied, float64(applied))
	gauge(c.metaLag, float64(commit-min(commit, applied)))
	gauge(c.metaVersion, float64(n.meta.Version()))

	known, led, open := 0, 0, 0
	for p, s := range n.slots {
		if _, _, ok := n.Table.Leader(p); ok {
			known++
		}
		pt := s.get()
		if pt == nil {
			continue
		}
		open++
		if pt.IsReady() {
			led++
		}
		pr := pt.Raft()
		pc, pa := pr.CommitIndex(), pr.AppliedIndex()
		gauge(c.partitionLag, float64(pc-min(pc, pa)), strconv.Itoa(p))
	}
	gauge(c.knownLeaders, float64(known))
	gauge(c.localLeaders, float64(led))
	gauge(c.localReplicas, float64(open))

	for i, v := range n.lookup.Misses() {
		ch <- prometheus.MustNewConstMetric(c.lookupMisses, prometheus.CounterValue, float64(v), leaderlookup.MissCauseNames[i])
	}
	for i, v := range n.lookup.Refusals() {
		ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(v), leaderlookup.RefusalReasonNames[i])
	}
}
