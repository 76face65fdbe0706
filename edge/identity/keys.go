package identity

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/apikey"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// APIKey is a key as the API shows it: never its secret or hash.
type APIKey struct {
	ID                 string     `json:"id"`
	Tenant             string     `json:"tenant"`
	Name               string     `json:"name"`
	Scopes             []string   `json:"scopes"`
	Status             string     `json:"status"`
	CreatedAt          time.Time  `json:"created_at"`
	CreatedBy          string     `json:"created_by"`
	ExpiresAt          time.Time  `json:"expires_at"`
	RotatedAt          *time.Time `json:"rotated_at,omitempty"`
	PreviousValidUntil *time.Time `json:"previous_valid_until,omitempty"`
	RevokedAt          *time.Time `json:"revoked_at,omitempty"`
}

// IssuedKey answers create and rotate: the key itself, shown this once.
type IssuedKey struct {
	Key    string `json:"key"`
	APIKey APIKey `json:"api_key"`
}

func optTime(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func toAPIKey(k *protocol.APIKeyInfo) APIKey {
	scopes := k.GetScopes()
	if scopes == nil {
		scopes = []string{}
	}
	return APIKey{
		ID: k.GetId(), Tenant: k.GetTenant(), Name: k.GetName(), Scopes: scopes,
		Status:    enumName(k.GetStatus().String(), "API_KEY_STATUS_"),
		CreatedAt: time.Unix(0, k.GetCreatedUnixNano()).UTC(), CreatedBy: k.GetCreatedBy(),
		ExpiresAt: time.Unix(0, k.GetExpiresUnixNano()).UTC(), RotatedAt: optTime(k.GetRotatedUnixNano()),
		PreviousValidUntil: optTime(k.GetPreviousValidUntilUnixNano()), RevokedAt: optTime(k.GetRevokedUnixNano()),
	}
}

// asAdmin runs next for a user holding the admin role at the root of the
// path's tenant. API keys and service accounts manage no keys: a leaked key
// must not be able to mint more.
func (h *handler) asAdmin(w http.ResponseWriter, r *http.Request, next func(ctx context.Context, p *principal, tid string)) {
	h.withAuth(w, r, func(ctx context.Context, p *principal) {
		tid := r.PathValue("tid")
		if p.key != nil || p.service {
			problem.Write(w, http.StatusForbidden, "forbidden", "managing API keys needs a user's access token")
			return
		}
		m, err := h.cfg.Actors.Request(ctx, tenant.KindName, tid, &protocol.CheckRole{User: p.subject, NodeId: tid, Role: protocol.Role_ROLE_ADMIN})
		switch {
		case actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND:
			// Whether the tenant exists is not the caller's business.
			problem.Write(w, http.StatusForbidden, "forbidden", "the admin role in tenant "+tid+" is required")
			return
		case err != nil:
			h.actorError(w, r, err)
			return
		}
		if rc, ok := m.(*protocol.RoleCheck); !ok || !rc.GetAllowed() {
			problem.Write(w, http.StatusForbidden, "forbidden", "the admin role in tenant "+tid+" is required")
			return
		}
		next(ctx, p, tid)
	})
}

// decode reads a JSON object body strictly: bounded, no unknown fields,
// nothing after it. An empty body is allowed only when emptyOK.
func decode(w http.ResponseWriter, r *http.Request, into any, emptyOK bool) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, http.StatusRequestEntityTooLarge, "request too large", fmt.Sprintf("body exceeds %d bytes", maxBody))
			return false
		}
		problem.Write(w, http.StatusBadRequest, "invalid request", "body could not be read")
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 && emptyOK {
		return true
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		problem.Write(w, http.StatusUnsupportedMediaType, "unsupported media type", "send application/json")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		problem.Write(w, http.StatusBadRequest, "invalid request", "body is not the expected JSON object: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		problem.Write(w, http.StatusBadRequest, "invalid request", "body has data after the JSON object")
		return false
	}
	return true
}

func (h *handler) createKey(w http.ResponseWriter, r *http.Request) {
	h.asAdmin(w, r, func(ctx context.Context, p *principal, tid string) {
		var body struct {
			Name      string     `json:"name"`
			Scopes    []string   `json:"scopes"`
			ExpiresAt *time.Time `json:"expires_at"`
		}
		if !decode(w, r, &body, false) {
			return
		}
		id, err := apikey.NewID(rand.Reader)
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		create := &protocol.CreateAPIKey{Tenant: tid, Name: body.Name, Scopes: body.Scopes, CreatedBy: p.subject}
		if body.ExpiresAt != nil {
			create.ExpiresUnixNano = body.ExpiresAt.UnixNano()
		}
		// Check, reserve the id in the tenant's index, then create: a key
		// never exists unlisted, and a refused request persists nothing.
		check := protocol.Clone(create)
		check.CheckOnly = true
		if _, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, check); err != nil {
			h.actorError(w, r, err)
			return
		}
		if _, err := h.cfg.Actors.Request(ctx, apikey.IndexKindName, tid, &protocol.AddAPIKeyToIndex{KeyId: id}); err != nil {
			h.actorError(w, r, err)
			return
		}
		m, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, create)
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		h.issued(w, r, http.StatusCreated, m)
	})
}

func (h *handler) issued(w http.ResponseWriter, r *http.Request, status int, m protocol.Message) {
	is, ok := m.(*protocol.APIKeyIssued)
	if !ok {
		h.actorError(w, r, fmt.Errorf("apikey answered %s", protocol.TypeName(m)))
		return
	}
	h.cfg.Logger.Info("api key issued", "tenant", is.GetKey().GetTenant(), "key_id", is.GetKey().GetId(), "generation", is.GetKey().GetGeneration())
	writeJSON(w, status, IssuedKey{Key: apikey.Format(is.GetKey().GetId(), is.GetSecret()), APIKey: toAPIKey(is.GetKey())})
}

func (h *handler) listKeys(w http.ResponseWriter, r *http.Request) {
	h.asAdmin(w, r, func(ctx context.Context, p *principal, tid string) {
		m, err := h.cfg.Actors.Request(ctx, apikey.IndexKindName, tid, &protocol.ListAPIKeyIndex{})
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		out := struct {
			APIKeys []APIKey `json:"api_keys"`
		}{APIKeys: []APIKey{}}
		for _, id := range m.(*protocol.APIKeyIndex).GetKeyIds() {
			k, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, &protocol.GetAPIKey{Tenant: tid})
			if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
				continue // reserved, but its create failed
			}
			if err != nil {
				h.actorError(w, r, err)
				return
			}
			out.APIKeys = append(out.APIKeys, toAPIKey(k.(*protocol.APIKeyInfo)))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// keyID checks the path's key id before it names an actor.
func keyID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("kid")
	if apikey.ValidID(id) != nil {
		problem.Write(w, http.StatusNotFound, "not found", "no such API key")
		return "", false
	}
	return id, true
}

func (h *handler) rotateKey(w http.ResponseWriter, r *http.Request) {
	h.asAdmin(w, r, func(ctx context.Context, p *principal, tid string) {
		id, ok := keyID(w, r)
		if !ok {
			return
		}
		var body struct {
			OverlapSeconds *int64 `json:"overlap_seconds"`
		}
		if !decode(w, r, &body, true) {
			return
		}
		overlap := h.cfg.RotationOverlap
		if body.OverlapSeconds != nil {
			if *body.OverlapSeconds <= 0 || *body.OverlapSeconds > int64(apikey.MaxOverlap/time.Second) {
				problem.Write(w, http.StatusBadRequest, "invalid request", fmt.Sprintf("overlap_seconds must be 1 to %d", int64(apikey.MaxOverlap/time.Second)))
				return
			}
			overlap = time.Duration(*body.OverlapSeconds) * time.Second
		}
		m, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, &protocol.RotateAPIKey{Tenant: tid, OverlapNanos: int64(overlap), By: p.subject})
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		h.issued(w, r, http.StatusOK, m)
	})
}

func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	h.asAdmin(w, r, func(ctx context.Context, p *principal, tid string) {
		id, ok := keyID(w, r)
		if !ok {
			return
		}
		m, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, &protocol.RevokeAPIKey{Tenant: tid, By: p.subject})
		if err != nil {
			h.actorError(w, r, err)
			return
		}
		h.cfg.Logger.Info("api key revoked", "tenant", tid, "key_id", id)
		writeJSON(w, http.StatusOK, toAPIKey(m.(*protocol.APIKeyInfo)))
	})
}
