package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/edge/problem"
)

// maxClientBody bounds a client registration: up to 64 redirect URIs of
// 2 KiB and 8 keys of 8 KiB fit.
const maxClientBody = 256 << 10

// clientRoutes serves the OAuth client registrations (`ward clients`).
func clientRoutes(mux *http.ServeMux, n Node) {
	mux.HandleFunc("GET "+cluster.ClientsPath, func(w http.ResponseWriter, r *http.Request) {
		list, err := n.Clients()
		if err != nil {
			problem.Write(w, http.StatusInternalServerError, "clients unreadable", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"clients": nonNil(list)})
	})
	mux.HandleFunc("POST "+cluster.ClientsPath, func(w http.ResponseWriter, r *http.Request) {
		var spec cluster.ClientSpec
		if err := decodeJSON(r, &spec, maxClientBody, false); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad request", err.Error())
			return
		}
		clientCall(w, r, http.StatusCreated, func(ctx context.Context, _ string) (any, error) { return n.RegisterClient(ctx, spec) })
	})
	mux.HandleFunc("GET "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		clientCall(w, r, http.StatusOK, func(_ context.Context, id string) (any, error) { return n.Client(id) })
	})
	mux.HandleFunc("PUT "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		var spec cluster.ClientSpec
		if err := decodeJSON(r, &spec, maxClientBody, false); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad request", err.Error())
			return
		}
		clientCall(w, r, http.StatusOK, func(ctx context.Context, id string) (any, error) { return n.UpdateClient(ctx, id, spec) })
	})
	mux.HandleFunc("DELETE "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		clientCall(w, r, http.StatusOK, func(ctx context.Context, id string) (any, error) { return n.DisableClient(ctx, id) })
	})
	mux.HandleFunc("POST "+cluster.ClientsPath+"/{id}/secret", func(w http.ResponseWriter, r *http.Request) {
		var req cluster.RotateSecretRequest
		if err := decodeOptionalJSON(r, &req); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad request", err.Error())
			return
		}
		overlap := cluster.DefaultSecretOverlap
		if req.OverlapSeconds != nil {
			secs := *req.OverlapSeconds
			if secs < 0 || secs > int64(oidcclient.MaxSecretOverlap/time.Second) {
				problem.Write(w, http.StatusBadRequest, "bad request", "overlap_seconds must be 0 to "+oidcclient.MaxSecretOverlap.String())
				return
			}
			overlap = time.Duration(secs) * time.Second
		}
		clientCall(w, r, http.StatusOK, func(ctx context.Context, id string) (any, error) { return n.RotateClientSecret(ctx, id, overlap) })
	})
}

// clientCall runs call with the path's client id (when the route has one)
// under a deadline and answers its result with status, or its error as a
// problem. Answers may carry a secret: no cache keeps them.
func clientCall(w http.ResponseWriter, r *http.Request, status int, call func(ctx context.Context, id string) (any, error)) {
	id := r.PathValue("id")
	if r.Pattern != "" && strings.Contains(r.Pattern, "{id}") {
		var ok bool
		if id, ok = clientID(w, r); !ok {
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ans, err := call(ctx, id)
	if err != nil {
		clientProblem(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, ans)
}

func clientID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > oidcclient.MaxIDLen {
		problem.Write(w, http.StatusBadRequest, "bad request", "client id must be 1 to 128 bytes")
		return "", false
	}
	return id, true
}

func clientProblem(w http.ResponseWriter, err error) {
	var ae *cluster.AdminError
	var inv *cluster.InvalidClientError
	switch {
	case errors.Is(err, cluster.ErrUnknownClient):
		problem.Write(w, http.StatusNotFound, "unknown client", err.Error())
	case errors.Is(err, cluster.ErrClientExists):
		problem.Write(w, http.StatusConflict, "client exists", err.Error())
	case errors.As(err, &inv):
		problem.Write(w, http.StatusBadRequest, "invalid client", err.Error())
	case errors.As(err, &ae):
		// Forwarded to the meta leader, which answered in kind.
		title := ae.Title
		if title == "" {
			title = "meta leader refused"
		}
		problem.Write(w, ae.Status, title, ae.Message)
	case errors.Is(err, meta.ErrNotLeader), errors.Is(err, meta.ErrStale):
		problem.Write(w, http.StatusServiceUnavailable, "not committed; retry", err.Error())
	default:
		problem.Write(w, http.StatusInternalServerError, "client change failed", err.Error())
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
