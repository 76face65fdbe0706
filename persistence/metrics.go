package persistence

import "github.com/prometheus/client_golang/prometheus"

// metrics are always collected (observing is cheap) and registered only when
// Options.Registerer is set.
type metrics struct {
	reg          prometheus.Registerer
	batchWrites  prometheus.Histogram
	batchEvents  prometheus.Histogram
	commitLat    prometheus.Histogram
	syncLat      prometheus.Histogram
	eventsTotal  prometheus.Counter
	rejectsTotal prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sizes := prometheus.ExponentialBuckets(1, 2, 12) // 1 .. 2048
	latency := prometheus.ExponentialBuckets(50e-6, 2, 14)
	m := &metrics{
		reg: reg,
		batchWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ward_persist_batch_writes",
			Help:    "Actor writes per group-commit batch (one fsync each).",
			Buckets: sizes,
		}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ward_persist_batch_events",
			Help:    "Events per group-commit batch.",
			Buckets: sizes,
		}),
		commitLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ward_persist_commit_seconds",
			Help:    "Commit latency seen by callers, from call to durable outcome.",
			Buckets: latency,
		}),
		syncLat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ward_persist_sync_seconds",
			Help:    "Time to commit one batch to pebble with a synced WAL write.",
			Buckets: latency,
		}),
		eventsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_persist_events_total",
			Help: "Events made durable.",
		}),
		rejectsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_persist_rejected_writes_total",
			Help: "Writes refused by validation (sequence conflicts, unreadable timer records).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var registered []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, r := range registered {
				reg.Unregister(r)
			}
			return nil, err
		}
		registered = append(registered, c)
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchWrites, m.batchEvents, m.commitLat, m.syncLat, m.eventsTotal, m.rejectsTotal}
}

// unregister lets a reopened store register its metrics again on the same
// registry.
func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
