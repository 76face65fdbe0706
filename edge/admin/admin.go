// Package admin is the HTTP face of cluster administration: the status
// `ward cluster status` prints, drain and remove, the per-node view the
// status is assembled from, and the signing keys (`ward keys`). It translates HTTP to calls on the node and
// errors to RFC 9457 problem details; the node decides.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// Node is what the handlers need of a cluster node.
type Node interface {
	Status(ctx context.Context) (*cluster.Status, error)
	Local() cluster.LocalStatus
	Drain(ctx context.Context, name string) error
	Remove(ctx context.Context, name string) error
	KeySet() (*protocol.KeySet, error)
	RotateKeys(ctx context.Context, force bool) (*protocol.KeySet, error)
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
			case errors.Is(err, cluster.ErrMemberRemoved):
				problem.Write(w, http.StatusConflict, "member removed", err.Error())
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
	mux.HandleFunc("GET "+cluster.KeysPath, func(w http.ResponseWriter, r *http.Request) {
		set, err := n.KeySet()
		if err != nil {
			problem.Write(w, http.StatusServiceUnavailable, "signing keys unavailable", err.Error())
			return
		}
		// ListKeys carries kids and instants only: key material never
		// leaves the meta group through this endpoint.
		writeJSON(w, http.StatusOK, cluster.ListKeys(set, time.Now()))
	})
	mux.HandleFunc("POST "+cluster.KeysRotatePath, func(w http.ResponseWriter, r *http.Request) {
		var req cluster.RotateRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad request", err.Error())
			return
		}
		// Long enough for an RSA key generation on a busy leader and a
		// forwarded call to it.
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		set, err := n.RotateKeys(ctx, req.Force)
		var ae *cluster.AdminError
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, cluster.ListKeys(set, time.Now()))
		case errors.As(err, &ae):
			problem.Write(w, ae.Status, "meta leader refused", ae.Message)
		case errors.Is(err, meta.ErrNotLeader), errors.Is(err, meta.ErrStale):
			problem.Write(w, http.StatusServiceUnavailable, "rotation not committed; retry", err.Error())
		default:
			problem.Write(w, http.StatusInternalServerError, "rotation failed", err.Error())
		}
	})
	mux.HandleFunc("/cluster/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "not found", "no admin endpoint "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// maxBody bounds an admin request body; the only one is {"force":true}.
const maxBody = 1 << 10

// decodeOptionalJSON reads a JSON object into v; an empty body leaves v at
// its zero value. Unknown fields are refused so a misspelt "force" is not
// silently a non-forced rotation.
func decodeOptionalJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("body larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not a JSON object like {\"force\":true}: %w", err)
	}
	if dec.More() {
		return errors.New("body has data after the JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
