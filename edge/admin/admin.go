// Package admin is the HTTP face of cluster administration: the status
// `ward cluster status` prints, drain and remove, the per-node view the
// status is assembled from, and the signing keys (`ward keys`). It translates HTTP to calls on the node and
// errors to RFC 9457 problem details; the node decides.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	AdminToken() (string, error)
	RotateAdminToken(ctx context.Context) (string, error)
	Clients() ([]cluster.ClientInfo, error)
	Client(id string) (cluster.ClientInfo, error)
	RegisterClient(ctx context.Context, spec cluster.ClientSpec) (cluster.ClientSecretAnswer, error)
	UpdateClient(ctx context.Context, id string, spec cluster.ClientSpec) (cluster.ClientInfo, error)
	DisableClient(ctx context.Context, id string) (cluster.ClientInfo, error)
	RotateClientSecret(ctx context.Context, id string, overlap time.Duration) (cluster.ClientSecretAnswer, error)
}

// maxNameLen bounds a node name in a request.
const maxNameLen = 256

// Handler serves the admin endpoints under /cluster/. Every request,
// reads included, must carry the cluster's operator token as a bearer
// token: these endpoints sit on the same listener as the public OpenID
// edge, and loopback-only trust would open them to anything relayed by a
// reverse proxy on the node.
func Handler(n Node) http.Handler {
	mux := http.NewServeMux()
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authorized(w, r, n) {
			mux.ServeHTTP(w, r)
		}
	})
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
	mux.HandleFunc("POST "+cluster.AdminTokenRotatePath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		tok, err := n.RotateAdminToken(ctx)
		var ae *cluster.AdminError
		switch {
		case err == nil:
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusOK, cluster.AdminTokenAnswer{Token: tok})
		case errors.As(err, &ae):
			problem.Write(w, ae.Status, "meta leader refused", ae.Message)
		case errors.Is(err, meta.ErrNotLeader), errors.Is(err, meta.ErrStale), errors.Is(err, cluster.ErrNoAdminToken):
			problem.Write(w, http.StatusServiceUnavailable, "rotation not committed; retry", err.Error())
		default:
			problem.Write(w, http.StatusInternalServerError, "rotation failed", err.Error())
		}
	})
	clientRoutes(mux, n)
	mux.HandleFunc("/cluster/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "not found", "no admin endpoint "+r.Method+" "+r.URL.Path)
	})
	return guarded
}

// realm names the protection space in WWW-Authenticate challenges.
const realm = `Bearer realm="ward-operator"`

// authorized checks the request's bearer token against the cluster's
// operator token and answers 401 (or 503 before the token exists) when it
// does not match.
func authorized(w http.ResponseWriter, r *http.Request, n Node) bool {
	want, err := n.AdminToken()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, http.StatusServiceUnavailable, "operator token not ready",
			"the cluster has not created its operator token yet (no meta leader since it formed); retry")
		return false
	}
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		w.Header().Set("WWW-Authenticate", realm)
		problem.Write(w, http.StatusUnauthorized, "operator token required",
			"send the cluster's operator token as Authorization: Bearer; every node keeps it in <data>/admin-token (ward cluster and ward keys: --token-file, or WARD_ADMIN_TOKEN)")
		return false
	}
	// Hashing first makes the comparison's time independent of where,
	// and whether, the lengths differ.
	g, e := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(g[:], e[:]) != 1 {
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		problem.Write(w, http.StatusUnauthorized, "wrong operator token", "the bearer token is not this cluster's operator token")
		return false
	}
	return true
}

// maxBody bounds an admin request body; the only one is {"force":true}.
const maxBody = 1 << 10

// decodeOptionalJSON reads a JSON object into v; an empty body leaves v at
// its zero value. Unknown fields are refused so a misspelt "force" is not
// silently a non-forced rotation.
func decodeOptionalJSON(r *http.Request, v any) error {
	return decodeJSON(r, v, maxBody, true)
}

func decodeJSON(r *http.Request, v any, limit int, optional bool) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(b) > limit {
		return fmt.Errorf("body larger than %d bytes", limit)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return errors.New("a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not the expected JSON object: %w", err)
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
