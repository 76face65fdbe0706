package admin

import (
	"context"
	"errors"
	"net/http"
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
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		ans, err := n.RegisterClient(ctx, spec)
		if err != nil {
			clientProblem(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store") // the secret
		writeJSON(w, http.StatusCreated, ans)
	})
	mux.HandleFunc("GET "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := clientID(w, r)
		if !ok {
			return
		}
		c, err := n.Client(id)
		if err != nil {
			clientProblem(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("PUT "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := clientID(w, r)
		if !ok {
			return
		}
		var spec cluster.ClientSpec
		if err := decodeJSON(r, &spec, maxClientBody, false); err != nil {
			problem.Write(w, http.StatusBadRequest, "bad request", err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		c, err := n.UpdateClient(ctx, id, spec)
		if err != nil {
			clientProblem(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("DELETE "+cluster.ClientsPath+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := clientID(w, r)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		c, err := n.DisableClient(ctx, id)
		if err != nil {
			clientProblem(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("POST "+cluster.ClientsPath+"/{id}/secret", func(w http.ResponseWriter, r *http.Request) {
		id, ok := clientID(w, r)
		if !ok {
			return
		}
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
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		ans, err := n.RotateClientSecret(ctx, id, overlap)
		if err != nil {
			clientProblem(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, ans)
	})
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
