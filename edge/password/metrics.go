package password

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	hashSeconds prometheus.Histogram
	inFlight    prometheus.Gauge
	queued      prometheus.Gauge
	busy        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		hashSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ward_password_hash_seconds",
			Help:    "Time to compute one argon2id hash (hash or verify), excluding queueing.",
			Buckets: []float64{.005, .01, .025, .05, .075, .1, .15, .2, .3, .5, .75, 1, 2, 5},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ward_password_in_flight",
			Help: "Password hashes being computed now.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ward_password_queued",
			Help: "Callers waiting for a password-hashing slot.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ward_password_busy_rejections_total",
			Help: "Password hashes refused by admission control (queue full or queue timeout).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.hashSeconds, m.inFlight, m.queued, m.busy} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(errors.New("password: registering metrics"), err)
	}
	return m, nil
}
