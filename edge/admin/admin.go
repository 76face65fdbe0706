// Package admin is the HTTP face of cluster administration: the status
// `ward cluster status` prints, drain and remove, and the per-node view the
// status is assembled from. It translates HTTP to calls on the node and
// errors to RFC 9457 problem details; the node decides.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/edge/problem"
)

// Node is what the handlers need of a cluster node.
type Node interface {
	Status(ctx context.Context) (*cluster.Status, error)
	Local() cluster.LocalStatus
	Drain(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
}

// maxNameLen bounds a node name in a request.
const maxNameLen = 256

// Handler serves the admin endpoints under /cluster/.
func Handler(n Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+cluster.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := n.Status(ctx)
		if err != nil {
			problem.Write(w, http.StatusServiceUnavailable, "cluster status unavailable", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+cluster.LocalStatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Local())
	})
	member := func(op func(context.Context, string) error, verb string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := r.URL.Query().Get("name")
			if name == "" || len(name) > maxNameLen {
				problem.Write(w, http.StatusBadRequest, "bad request", "query parameter name (1-256 bytes) is required")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			err := op(ctx, name)
			var ae *cluster.AdminError
			switch {
			case err == nil:
				writeJSON(w, http.StatusAccepted, map[string]string{"name": name, "status": verb})
			case errors.Is(err, cluster.ErrUnknownMember):
				problem.Write(w, http.StatusNotFound, "unknown member", err.Error())
			case errors.As(err, &ae):
				problem.Write(w, ae.Status, "meta leader refused", ae.Message)
			case errors.Is(err, meta.ErrNotLeader):
				problem.Write(w, http.StatusServiceUnavailable, "meta leader unavailable", err.Error())
			default:
				problem.Write(w, http.StatusInternalServerError, verb+" failed", err.Error())
			}
		}
	}
	mux.HandleFunc("POST "+cluster.DrainPath, member(n.Drain, "draining"))
	mux.HandleFunc("POST "+cluster.RemovePath, member(n.Remove, "removed"))
	mux.HandleFunc("/cluster/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "not found", "no admin endpoint "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
