package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/apikey"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// principal is who a request acts for: a user through an access token of
// a live session, a service account (a token without a session), or an API
// key.
type principal struct {
	subject string
	tenant  string // tid
	sid     string
	service bool
	// scopes are a token's granted scopes (its "scope" claim, RFC 9068
	// §2.2.3), when it carries them.
	scopes []string
	key    *protocol.APIKeyVerified
}

// authError is a refused credential, answered per RFC 6750 §3.
type authError struct {
	status int    // 400 or 401
	code   string // invalid_request, invalid_token; "" when none was sent
	detail string
}

func (e *authError) write(w http.ResponseWriter) {
	// §3.1: without any credentials the challenge carries no error code.
	chal := `Bearer realm="ward"`
	if e.code != "" {
		chal += `, error="` + e.code + `", error_description="` + strings.ReplaceAll(e.detail, `"`, "'") + `"`
	}
	w.Header().Set("WWW-Authenticate", chal)
	w.Header().Set("Cache-Control", "no-store")
	title := "unauthorized"
	if e.status == http.StatusBadRequest {
		title = "invalid request"
	}
	problem.Write(w, e.status, title, e.detail)
}

func invalidToken(detail string) *authError {
	return &authError{status: http.StatusUnauthorized, code: "invalid_token", detail: detail}
}

// credential finds the one credential of a request (RFC 6750 §2: a client
// must not use more than one method).
func credential(r *http.Request) (string, *authError) {
	authz, hasAuthz := r.Header["Authorization"]
	apiKey, hasKey := r.Header["X-Api-Key"]
	switch {
	case hasAuthz && hasKey, len(authz) > 1, len(apiKey) > 1:
		return "", &authError{status: http.StatusBadRequest, code: "invalid_request", detail: "send exactly one credential"}
	case hasKey:
		if apiKey[0] == "" {
			return "", invalidToken("X-API-Key is empty")
		}
		return apiKey[0], nil
	case hasAuthz:
		scheme, tok, ok := strings.Cut(authz[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", &authError{status: http.StatusBadRequest, code: "invalid_request", detail: "Authorization must be Bearer <token>"}
		}
		return strings.TrimSpace(tok), nil
	}
	return "", &authError{status: http.StatusUnauthorized, detail: "an access token or API key is required"}
}

// authenticate checks the request's credential; a non-nil authError is the
// answer to send.
func (h *handler) authenticate(ctx context.Context, r *http.Request) (*principal, *authError, error) {
	cred, aerr := credential(r)
	if aerr != nil {
		return nil, aerr, nil
	}
	if strings.HasPrefix(cred, apikey.Prefix) {
		return h.authenticateKey(ctx, cred)
	}
	return h.authenticateToken(ctx, cred)
}

func (h *handler) authenticateKey(ctx context.Context, cred string) (*principal, *authError, error) {
	id, secret, err := apikey.Parse(cred)
	if err != nil {
		return nil, invalidToken("malformed API key"), nil
	}
	m, err := h.cfg.Actors.Request(ctx, apikey.KindName, id, &protocol.VerifyAPIKey{SecretSha256: apikey.HashSecret(secret)})
	if err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, protocol.ErrorCode_ERROR_CODE_NOT_FOUND, protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			// The actor's message names the key id (not secret) and why.
			return nil, invalidToken(err.Error()), nil
		}
		return nil, nil, err
	}
	v, ok := m.(*protocol.APIKeyVerified)
	if !ok {
		return nil, nil, errors.New("apikey answered " + protocol.TypeName(m))
	}
	return &principal{subject: "apikey:" + v.GetId(), tenant: v.GetTenant(), key: v}, nil, nil
}

var tokenAlgs = []jose.Alg{jose.RS256, jose.ES256}

func (h *handler) authenticateToken(ctx context.Context, tok string) (*principal, *authError, error) {
	now := h.cfg.Now()
	keys, err := h.verifyKeys(now)
	if err != nil {
		// Before the meta leader has made keys no token can be checked yet.
		return nil, nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, "signing keys: %v", err)
	}
	v := jose.Verifier{Keys: keys, Algs: tokenAlgs}
	t, err := v.Verify(tok, now)
	if err != nil {
		switch {
		case errors.Is(err, jose.ErrExpired):
			return nil, invalidToken("the access token expired"), nil
		default:
			return nil, invalidToken("the access token is not valid"), nil
		}
	}
	str := func(name string) string { s, _ := t.Claims[name].(string); return s }
	if str("iss") != h.cfg.Issuer {
		return nil, invalidToken("the access token is from another issuer"), nil
	}
	// Only access tokens open the API: an ID token carries the same
	// issuer, subject and signature, but never a jti (RFC 9068 §2.2 makes it
	// mandatory for JWT access tokens; OpenID Connect ID tokens have none),
	// and it has an at_hash or nonce an access token never has.
	if str("jti") == "" || t.Claims["at_hash"] != nil || t.Claims["nonce"] != nil {
		return nil, invalidToken("not an access token"), nil
	}
	p := &principal{subject: str("sub"), tenant: str("tid"), sid: str("sid"), scopes: strings.Fields(str("scope"))}
	if p.subject == "" {
		return nil, invalidToken("the access token has no subject"), nil
	}
	if p.sid == "" {
		// Client-credentials and JWT-profile tokens have no session.
		p.service = true
		return p, nil, nil
	}
	if !emailindex.ValidUUID(p.sid) {
		return nil, invalidToken("the access token names no session"), nil
	}
	m, err := h.cfg.Actors.Request(ctx, session.KindName, p.sid, &protocol.GetSession{})
	if err != nil {
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
			return nil, invalidToken("the session ended"), nil
		}
		return nil, nil, err
	}
	info, ok := m.(*protocol.SessionInfo)
	if !ok || info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE || info.GetSubject() != p.subject {
		return nil, invalidToken("the session ended"), nil
	}
	return p, nil, nil
}

// withAuth runs next for an authenticated caller.
func (h *handler) withAuth(w http.ResponseWriter, r *http.Request, next func(ctx context.Context, p *principal)) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	p, aerr, err := h.authenticate(ctx, r)
	switch {
	case err != nil:
		h.actorError(w, r, err)
	case aerr != nil:
		aerr.write(w)
	default:
		w.Header().Set("Cache-Control", "no-store")
		next(ctx, p)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
