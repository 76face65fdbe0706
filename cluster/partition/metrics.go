package partition

import (
	"strconv"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are per partition, told apart by a constant "partition" label, so
// the P partitions of a node register side by side in one registry.
type metrics struct {
	reg           prometheus.Registerer
	collectors    []prometheus.Collector
	batchWrites   prometheus.Histogram
	entryBytes    prometheus.Histogram
	commitLatency prometheus.Histogram
	applyLatency  prometheus.Histogram
	appliedWrites prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, p *Partition) *metrics {
	labels := prometheus.Labels{"partition": strconv.FormatUint(uint64(p.id), 10)}
	m := &metrics{
		reg: reg,
		batchWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_partition_batch_writes", Help: "Writes per raft log entry proposed by this node.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		entryBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_partition_entry_bytes", Help: "Size of raft log entries proposed by this node.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(64, 4, 10),
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_partition_commit_seconds", Help: "Commit latency, queueing included.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ward_partition_apply_seconds", Help: "Time from proposing a log entry to its local apply.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		appliedWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_partition_applied_writes_total", Help: "Writes applied to this replica (refused ones included).",
			ConstLabels: labels,
		}),
	}
	m.collectors = []prometheus.Collector{
		m.batchWrites, m.entryBytes, m.commitLatency, m.applyLatency, m.appliedWrites,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ward_partition_leader", Help: "1 when this node is the partition's ready leader.", ConstLabels: labels,
		}, func() float64 {
			if p.IsReady() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ward_partition_commit_index", Help: "Raft commit index known to this replica.", ConstLabels: labels,
		}, func() float64 { return float64(raftOf(p).CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ward_partition_applied_index", Help: "Raft index applied by this replica.", ConstLabels: labels,
		}, func() float64 { return float64(raftOf(p).AppliedIndex()) }),
	}
	return m
}

// register publishes the metrics; the gauges read p.raft, so it runs once
// raft exists.
func (m *metrics) register() error {
	if m.reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := m.reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				m.reg.Unregister(done)
			}
			m.reg = nil // nothing left to unregister on Close
			return err
		}
	}
	return nil
}

func raftOf(p *Partition) *raft.Raft { return p.raft }

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
