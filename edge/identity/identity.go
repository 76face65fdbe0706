// Package identity is the REST face of identity for signed-in callers and
// API keys:
//
//	GET    /identity/me/access-context                  the caller's tenants, roles (or key scopes)
//	GET    /identity/tenants/{tid}/api-keys             list the tenant's keys (never secrets)
//	POST   /identity/tenants/{tid}/api-keys             create; the answer shows the key once
//	POST   /identity/tenants/{tid}/api-keys/{kid}/rotate new secret, the old one works for an overlap
//	DELETE /identity/tenants/{tid}/api-keys/{kid}       revoke
//	GET    /identity/events?after=N&limit=M             the caller's tenant's domain events, a page
//	GET    /identity/events/stream                      the same as Server-Sent Events (Last-Event-ID resumes)
//
// Callers authenticate with "Authorization: Bearer <access token>" (a JWT
// of this node's issuer, verified locally against the published signing
// keys, whose session must still be active) or with an API key, as
// "Authorization: Bearer ward_..." or "X-API-Key: ward_...". Failures are
// RFC 6750 (401 with WWW-Authenticate) with RFC 9457 problem bodies.
// Managing keys needs the admin role at the tenant's root and a user token.
// Reading events (events.go) needs the scope events:read on an API key or a
// service account's token, or a user token with the admin role at the root
// of the token's tenant; only the credential's own tenant can be read.
//
// What is allowed is decided by the actors (session, tenant, usertenants,
// apikey); this package verifies signatures and translates.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// PathPrefix is where the handler is mounted.
const PathPrefix = "/identity/"

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// KeySource is the signing-key state (the cluster node's replica).
type KeySource interface {
	KeySet() (*protocol.KeySet, error)
}

// Config configures the handler.
type Config struct {
	// Issuer is the iss every accepted access token must carry: the OIDC
	// provider's issuer URL.
	Issuer string
	Actors Requester
	Keys   KeySource
	// RotationOverlap is how long a rotated-away API key secret keeps
	// working when the request names none; 0 takes the actor's default
	// (24 h).
	RotationOverlap time.Duration
	// MaxTenants bounds the tenants one access-context answer lists (each
	// costs a tenant actor request); default 100.
	MaxTenants int
	// EventStreamMax is how long one event stream stays open before it
	// ends by itself (clients reconnect with Last-Event-ID); default 5 min.
	EventStreamMax time.Duration
	// EventPoll is how often an idle event stream asks the tenant's log
	// for news; default 500 ms. EventHeartbeat is how long a stream may
	// stay silent before a ": ping" comment; default 15 s.
	EventPoll      time.Duration
	EventHeartbeat time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

const (
	maxBody = 16 << 10
	timeout = 10 * time.Second
)

type handler struct {
	cfg  Config
	mu   sync.Mutex
	keys keyCache
}

// keyCache holds the verification keys built from one key set at one set
// of published kids: parsing keys on every request would be wasted work.
type keyCache struct {
	set  *protocol.KeySet
	kids string
	ks   *jose.KeySet
}

// New returns the handler for PathPrefix.
func New(cfg Config) (http.Handler, error) {
	if cfg.Issuer == "" || cfg.Actors == nil || cfg.Keys == nil {
		return nil, errors.New("identity: Issuer, Actors and Keys are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxTenants <= 0 {
		cfg.MaxTenants = 100
	}
	if cfg.EventStreamMax <= 0 {
		cfg.EventStreamMax = 5 * time.Minute
	}
	if cfg.EventPoll <= 0 {
		cfg.EventPoll = 500 * time.Millisecond
	}
	if cfg.EventHeartbeat <= 0 {
		cfg.EventHeartbeat = 15 * time.Second
	}
	h := &handler{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /identity/me/access-context", h.accessContext)
	mux.HandleFunc("GET /identity/tenants/{tid}/api-keys", h.listKeys)
	mux.HandleFunc("POST /identity/tenants/{tid}/api-keys", h.createKey)
	mux.HandleFunc("POST /identity/tenants/{tid}/api-keys/{kid}/rotate", h.rotateKey)
	mux.HandleFunc("DELETE /identity/tenants/{tid}/api-keys/{kid}", h.revokeKey)
	mux.HandleFunc("GET /identity/events", h.events)
	mux.HandleFunc("GET /identity/events/stream", h.eventsStream)
	mux.HandleFunc("/identity/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, http.StatusNotFound, "not found", "no such identity endpoint")
	})
	return mux, nil
}

// verifyKeys returns the keys a token may be signed with now.
func (h *handler) verifyKeys(now time.Time) (*jose.KeySet, error) {
	set, err := h.cfg.Keys.KeySet()
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	pub := keyring.Published(set, now)
	var kids strings.Builder
	for _, k := range pub {
		kids.WriteString(k.GetKid())
		kids.WriteByte(0)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys.set == set && h.keys.kids == kids.String() {
		return h.keys.ks, nil
	}
	keys := make([]jose.PublicKey, 0, len(pub))
	for _, k := range pub {
		pk, err := jose.PublicKeyFromProto(k)
		if err != nil {
			return nil, err
		}
		keys = append(keys, pk)
	}
	ks, err := jose.NewKeySet(keys...)
	if err != nil {
		return nil, err
	}
	h.keys = keyCache{set: set, kids: kids.String(), ks: ks}
	return ks, nil
}

// actorStatus maps an actor's error code to an HTTP status.
func actorStatus(err error) int {
	switch actors.CodeOf(err) {
	case protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return http.StatusBadRequest
	case protocol.ErrorCode_ERROR_CODE_NOT_FOUND:
		return http.StatusNotFound
	case protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
		return http.StatusConflict
	case protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		return http.StatusForbidden
	case protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, protocol.ErrorCode_ERROR_CODE_NOT_LEADER:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// actorError answers for a failed actor request. Internal errors are
// logged, not shown.
func (h *handler) actorError(w http.ResponseWriter, r *http.Request, err error) {
	status := actorStatus(err)
	detail := err.Error()
	switch status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	case http.StatusInternalServerError:
		h.cfg.Logger.Error("identity request failed", "path", r.URL.Path, "err", err)
		detail = "internal error"
	}
	problem.Write(w, status, http.StatusText(status), detail)
}
