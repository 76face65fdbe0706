// Package ops serves the operator endpoints every node has: liveness
// (/healthz), readiness (/readyz) and Prometheus metrics (/metrics).
package ops

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one part of the node is ready; nil means ready.
type Check func() error

// Handler returns the mux for the three endpoints (without /metrics when
// gatherer is nil: the node serves it on its own listener). Readiness is
// the conjunction of checks, each named in the response so an operator
// sees which part is not up.
func Handler(checks map[string]Check, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		status, body := http.StatusOK, map[string]string{}
		for name, check := range checks {
			if err := check(); err != nil {
				status = http.StatusServiceUnavailable
				body[name] = err.Error()
			} else {
				body[name] = "ok"
			}
		}
		writeJSON(w, status, body)
	})
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
