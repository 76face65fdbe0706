package oidc

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/wardhq/ward/actors/oidcclient"
	wjose "github.com/wardhq/ward/edge/jose"
)

// The client_credentials grant (RFC 6749 §4.4) is answered here rather than
// by op. It is the busiest grant of a platform whose gateways and services
// fetch tokens all day, it touches no actor, and op's generic path
// (reflection-driven form decoding, claims merged through maps, a go-jose
// signer built per token) cost as much CPU as the signature itself. The
// decisions stay in actors/oidcclient; the token has the same claims as
// op's (a differential test holds them together). Requests that
// authenticate with a client assertion still go to op.

// serviceClaims are a client_credentials access token's claims: op's
// access-token claims plus Ward's tid and scope (RFC 9068 §2.2.3).
type serviceClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	NotBfore int64    `json:"nbf"`
	ClientID string   `json:"client_id"`
	JWTID    string   `json:"jti"`
	Tenant   string   `json:"tid,omitempty"`
	Scope    string   `json:"scope,omitempty"`
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// serviceTokenID names a service token: service accounts have no session,
// their tokens live out their lifetime.
func serviceTokenID() string { return "svc:" + uuid.NewString() }

// isClientCredentials reports whether tokenGuard hands r (its form parsed)
// to clientCredentials.
func isClientCredentials(r *http.Request) bool {
	f := r.PostForm
	return f.Get("grant_type") == string(zoidc.GrantTypeClientCredentials) &&
		!f.Has("client_assertion") && !f.Has("client_assertion_type")
}

func (s *storage) clientCredentials(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	for k, v := range form {
		// RFC 6749 §3.2: parameters must not repeat.
		if len(v) > 1 {
			oauthError(w, "invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	id, secret, ok := s.clientAuth(w, r)
	if !ok {
		return
	}
	c, err := s.client(id)
	if err != nil {
		s.tokenFailure(w, err)
		return
	}
	now := s.cfg.now()
	if !oidcclient.VerifySecret(c, secret, now) {
		clientError(w, "client authentication failed")
		return
	}
	if !oidcclient.AllowsGrant(c, oidcclient.GrantClientCredentials) {
		oauthErrorStatus(w, http.StatusBadRequest, "unauthorized_client", "client is not allowed the client_credentials grant")
		return
	}
	var scopes []string
	for _, sc := range strings.Fields(form.Get("scope")) {
		if !oidcclient.ServiceScope(c, sc) {
			oauthError(w, "invalid_scope", "scope "+quoteShort(sc)+" is not allowed for this client")
			return
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	sk, err := s.SigningKey(r.Context())
	if err != nil {
		s.tokenFailure(w, err)
		return
	}
	exp := now.Add(s.cfg.AccessTTL)
	scope := strings.Join(scopes, " ")
	tok, err := wjose.Sign(sk.(*signingKey).signer.key, wjose.TypJWT, serviceClaims{
		Issuer: s.cfg.Issuer, Subject: id, Audience: []string{id},
		Expiry: exp.Unix(), IssuedAt: now.Unix(), NotBfore: now.Unix(),
		ClientID: id, JWTID: serviceTokenID(), Tenant: c.GetTenant(), Scope: scope,
	})
	if err != nil {
		s.tokenFailure(w, err)
		return
	}
	b, err := json.Marshal(tokenAnswer{AccessToken: tok, TokenType: zoidc.BearerToken, ExpiresIn: int64(s.cfg.AccessTTL.Seconds()), Scope: scope})
	if err != nil {
		s.tokenFailure(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// clientAuth reads the client's id and secret from HTTP Basic (RFC 6749
// §2.3.1, form-encoded parts) or from the body, never both. It answers the
// request itself when it returns false.
func (s *storage) clientAuth(w http.ResponseWriter, r *http.Request) (id, secret string, ok bool) {
	form := r.PostForm
	if _, has := r.Header["Authorization"]; !has {
		return form.Get("client_id"), form.Get("client_secret"), true
	}
	u, p, basic := r.BasicAuth()
	if !basic {
		clientError(w, "unsupported authorization header")
		return "", "", false
	}
	var err1, err2 error
	id, err1 = url.QueryUnescape(u)
	secret, err2 = url.QueryUnescape(p)
	if err1 != nil || err2 != nil {
		clientError(w, "invalid basic auth header")
		return "", "", false
	}
	if form.Has("client_secret") {
		oauthError(w, "invalid_request", "more than one client authentication method")
		return "", "", false
	}
	if form.Has("client_id") && form.Get("client_id") != id {
		oauthError(w, "invalid_request", "client_id does not match the authenticated client")
		return "", "", false
	}
	return id, secret, true
}

// tokenFailure answers err: an OAuth error from the storage as it is, any
// other error as server_error without its text (logged instead).
func (s *storage) tokenFailure(w http.ResponseWriter, err error) {
	var oe *zoidc.Error
	if errors.As(err, &oe) && oe.ErrorType != zoidc.ServerError {
		if oe.ErrorType == zoidc.InvalidClient {
			clientError(w, oe.Description)
			return
		}
		oauthErrorStatus(w, http.StatusBadRequest, string(oe.ErrorType), oe.Description)
		return
	}
	s.cfg.Logger.Error("client_credentials", "err", err)
	oauthErrorStatus(w, http.StatusInternalServerError, "server_error", "the token could not be issued")
}

// clientError is invalid_client: 401 with the scheme the client may use
// (RFC 6749 §5.2, RFC 9110 §15.5.2).
func clientError(w http.ResponseWriter, description string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="ward", charset="UTF-8"`)
	oauthErrorStatus(w, http.StatusUnauthorized, "invalid_client", description)
}

// quoteShort quotes a caller's value for an error description, cut to a
// length worth reading.
func quoteShort(v string) string {
	const max = 64
	if len(v) > max {
		v = v[:max] + "..."
	}
	b, _ := json.Marshal(v)
	return string(b)
}
