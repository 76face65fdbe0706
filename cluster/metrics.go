package cluster

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/protocol"
)

// Why an activation ended; the reason label of ward_cluster_passivations_total.
const (
	stopIdle     = "idle"     // PassivateAfter elapsed without a message
	stopFailed   = "failed"   // load, commit or apply failed; the next request reloads
	stopShutdown = "shutdown" // Host.Stop
	stopEvicted  = "evicted"  // stopped from outside, e.g. the identity lookup moved it
)

// metrics are always collected (observing is cheap) and registered only when
// Config.Registerer is set, the way persistence does it.
type metrics struct {
	reg         prometheus.Registerer
	activations *prometheus.CounterVec
	passivation *prometheus.CounterVec
	active      *prometheus.GaugeVec
	messages    *prometheus.CounterVec
	stepLatency *prometheus.HistogramVec
	timersFired *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	retries     *prometheus.CounterVec
	relayed     *prometheus.CounterVec
}

// Why a request attempt was retried; the reason label of
// ward_cluster_request_retries_total.
const (
	retryNoActivation = "no_activation" // the identity lookup found no PID
	retryDeadLetter   = "dead_letter"   // the activation stopped first
	retryTimeout      = "timeout"       // no answer within the attempt's wait
	retryNotLeader    = "not_leader"    // answered NOT_LEADER
	retryEndpointLost = "endpoint_lost" // the connection to the activation's member broke
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_activations_total",
			Help: "Actor activations started (journal loads), by kind.",
		}, []string{"kind"}),
		passivation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_passivations_total",
			Help: "Activations stopped, by kind and reason (idle, failed, shutdown, evicted).",
		}, []string{"kind", "reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ward_cluster_active_activations",
			Help: "Activations currently live on this node, by kind.",
		}, []string{"kind"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_messages_total",
			Help: "Messages handled by actors, by kind and result (ok or the error code).",
		}, []string{"kind", "result"}),
		stepLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ward_cluster_step_seconds",
			Help:    "Time from a message reaching its activation to its response: step, durable commit and apply.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16), // 10µs .. 330ms
		}, []string{"kind"}),
		timersFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_timers_fired_total",
			Help: "Durable timers delivered to their actor, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_publications_dropped_total",
			Help: "Publications not delivered because a subscriber's buffer was full, by topic.",
		}, []string{"topic"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_request_retries_total",
			Help: "Request attempts that failed and were retried or gave up, by kind and reason (no_activation, dead_letter, timeout, not_leader, endpoint_lost).",
		}, []string{"kind", "reason"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ward_cluster_events_relayed_total",
			Help: "Domain events handed from a journal's feed to the event log, by result (ok, failed: retried next round; dropped: no tenant).",
		}, []string{"result"}),
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
	return []prometheus.Collector{m.activations, m.passivation, m.active, m.messages, m.stepLatency, m.timersFired, m.dropped, m.retries, m.relayed}
}

// unregister lets a restarted Host register its metrics on the same registry.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

// kindMetrics are one kind's children, resolved once so that the hot path
// does no label lookups.
type kindMetrics struct {
	vec         *metrics
	kind        string
	activations prometheus.Counter
	active      prometheus.Gauge
	ok          prometheus.Counter
	latency     prometheus.Observer
	timersFired prometheus.Counter

	mu      sync.Mutex
	results map[protocol.ErrorCode]prometheus.Counter
}

func (m *metrics) forKind(kind string) *kindMetrics {
	return &kindMetrics{
		vec:         m,
		kind:        kind,
		activations: m.activations.WithLabelValues(kind),
		active:      m.active.WithLabelValues(kind),
		ok:          m.messages.WithLabelValues(kind, "ok"),
		latency:     m.stepLatency.WithLabelValues(kind),
		timersFired: m.timersFired.WithLabelValues(kind),
		results:     make(map[protocol.ErrorCode]prometheus.Counter),
	}
}

// failed counts a message answered with an error code.
func (k *kindMetrics) failed(code protocol.ErrorCode) {
	k.mu.Lock()
	c, ok := k.results[code]
	if !ok {
		c = k.vec.messages.WithLabelValues(k.kind, resultLabel(code))
		k.results[code] = c
	}
	k.mu.Unlock()
	c.Inc()
}

func (k *kindMetrics) stopped(reason string) {
	k.vec.passivation.WithLabelValues(k.kind, reason).Inc()
}

// resultLabel turns ERROR_CODE_NOT_FOUND into not_found.
func resultLabel(code protocol.ErrorCode) string {
	return strings.ToLower(strings.TrimPrefix(code.String(), "ERROR_CODE_"))
}
