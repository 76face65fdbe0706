package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/actors/oidcclient"
	wjose "github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

// The client_credentials grant (RFC 6749 §4.4) is answered here rather than
// by op. It is the busiest grant of a platform whose gateways and services
// fetch tokens all day, it touches no actor, and op's generic path
// (reflection-driven form decoding, claims merged through maps, a go-jose
// signer built per token) cost as much CPU as the signature itself. The
// decisions stay in actors/oidcclient; the token has the same claims as
// op's (a differential test holds them together). Clients authenticate by
// secret or by private_key_jwt, which op's client_credentials path did not
// implement although discovery advertises it.

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
	return r.PostForm.Get("grant_type") == string(zoidc.GrantTypeClientCredentials)
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
	now := s.cfg.now()
	c, ok := s.authenticateClient(w, r, now)
	if !ok {
		return
	}
	id := c.GetId()
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
	sk, err := s.signingKey()
	if err != nil {
		s.tokenFailure(w, err)
		return
	}
	exp := now.Add(s.cfg.AccessTTL)
	scope := strings.Join(scopes, " ")
	tok, err := wjose.Sign(sk.signer.key, wjose.TypJWT, serviceClaims{
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

// authenticateClient finds the calling client by exactly one method: a
// secret (HTTP Basic, RFC 6749 §2.3.1 with form-encoded parts, or
// client_secret_post) or a signed assertion (private_key_jwt). It answers
// the request itself when it returns false.
func (s *storage) authenticateClient(w http.ResponseWriter, r *http.Request, now time.Time) (*protocol.OIDCClient, bool) {
	form := r.PostForm
	_, hasAuthz := r.Header["Authorization"]
	assertion := hasClientAssertion(form)
	methods := 0
	for _, used := range []bool{hasAuthz, form.Has("client_secret"), assertion} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		oauthError(w, "invalid_request", "more than one client authentication method")
		return nil, false
	}
	if assertion {
		if form.Get("client_assertion_type") != zoidc.ClientAssertionTypeJWTAssertion {
			oauthError(w, "invalid_request", "client_assertion_type must be "+zoidc.ClientAssertionTypeJWTAssertion)
			return nil, false
		}
		c, err := s.clientByAssertion(r.Context(), form.Get("client_assertion"), form.Get("client_id"), now)
		if err != nil {
			s.tokenFailure(w, err)
			return nil, false
		}
		return c, true
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if hasAuthz {
		u, p, basic := r.BasicAuth()
		if !basic {
			clientError(w, "unsupported authorization header")
			return nil, false
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			clientError(w, "invalid basic auth header")
			return nil, false
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			oauthError(w, "invalid_request", "client_id does not match the authenticated client")
			return nil, false
		}
	}
	c, err := s.client(id)
	if err != nil {
		s.tokenFailure(w, err)
		return nil, false
	}
	if !oidcclient.VerifySecret(c, secret, now) {
		clientError(w, "client authentication failed")
		return nil, false
	}
	return c, true
}

// hasClientAssertion reports whether form authenticates the client with a
// signed assertion (or tries to: either parameter counts).
func hasClientAssertion(form url.Values) bool {
	return form.Has("client_assertion") || form.Has("client_assertion_type")
}

// clientByAssertion authenticates a client by a JWT signed with one of its
// registered keys (RFC 7523 §2.2, §3): the signature with edge/jose's
// pinned algorithms, the claims by oidcclient.CheckAssertion, and single
// use by the client's assertion actor, on whichever node it is presented.
func (s *storage) clientByAssertion(ctx context.Context, jwt, clientID string, now time.Time) (*protocol.OIDCClient, error) {
	return s.useAssertion(ctx, jwt, clientID, now, func(why string) error {
		return zoidc.ErrInvalidClient().WithDescription("client assertion: %s", why)
	})
}

// grantByAssertion checks the assertion of a JWT bearer grant (RFC 7523
// §2.1, the JWT profile of service accounts) by the same rules as a client
// assertion, single use included, before op issues the token: op's own
// check accepts one assertion any number of times within its hour.
func (s *storage) grantByAssertion(ctx context.Context, jwt string, now time.Time) error {
	_, err := s.useAssertion(ctx, jwt, "", now, func(why string) error {
		return zoidc.ErrInvalidGrant().WithDescription("assertion: %s", why)
	})
	return err
}

// useAssertion verifies jwt as signed by a key of clientID (or, left out,
// of its unverified sub), checks its claims and records its jti as used.
// bad builds the refusal in the caller's error (invalid_client for client
// authentication, invalid_grant for a grant).
func (s *storage) useAssertion(ctx context.Context, jwt, clientID string, now time.Time, bad func(why string) error) (*protocol.OIDCClient, error) {
	if jwt == "" || len(jwt) > wjose.MaxTokenSize {
		return nil, bad("empty or oversized")
	}
	// The client (whose keys verify the signature) is client_id or, as
	// RFC 7523 allows it to be left out, the unverified sub; both are
	// checked against the verified claims below.
	if clientID == "" {
		clientID = peekSubject(jwt)
	}
	c, err := s.client(clientID)
	if err != nil {
		var oe *zoidc.Error
		if errors.As(err, &oe) && oe.ErrorType == zoidc.InvalidClient {
			return nil, bad(oe.Description)
		}
		return nil, err
	}
	keys, err := clientKeySet(c, now)
	if err != nil {
		return nil, bad(err.Error())
	}
	tok, err := wjose.Verify(jwt, keys, []wjose.Alg{wjose.RS256, wjose.ES256}, now)
	if err != nil {
		return nil, bad(err.Error())
	}
	a := oidcclient.Assertion{Expiry: tok.Expiry, IssuedAt: tok.IssuedAt}
	a.Issuer, _ = tok.Claims["iss"].(string)
	a.Subject, _ = tok.Claims["sub"].(string)
	a.JTI, _ = tok.Claims["jti"].(string)
	switch aud := tok.Claims["aud"].(type) {
	case string:
		a.Audience = []string{aud}
	case []any:
		for _, x := range aud {
			if s, ok := x.(string); ok {
				a.Audience = append(a.Audience, s)
			}
		}
	}
	issuer := strings.TrimSuffix(s.cfg.Issuer, "/")
	if err := oidcclient.CheckAssertion(c, a, []string{issuer, issuer + "/", issuer + "/oauth/token"}, now); err != nil {
		return nil, bad(err.Error())
	}
	_, err = s.request(ctx, assertion.KindName, c.GetId(), &protocol.UseAssertion{Jti: a.JTI, ExpiresUnixNano: a.Expiry.UnixNano()})
	if err == nil {
		return c, nil
	}
	var refused *actors.Error
	if errors.As(err, &refused) {
		switch refused.Code {
		case protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
			return nil, bad("used already")
		case protocol.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			return nil, bad(refused.Msg)
		}
	}
	return nil, fmt.Errorf("record client assertion: %w", err)
}

// peekSubject reads sub from a JWT's payload without verifying anything:
// only to pick whose keys to verify with.
func peekSubject(jwt string) string {
	parts := strings.SplitN(jwt, ".", 3)
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Sub
}

// clientKeySet is c's unexpired keys for edge/jose. A JWK without alg gets
// the one algorithm Ward accepts for its key type, so pinning holds.
func clientKeySet(c *protocol.OIDCClient, now time.Time) (*wjose.KeySet, error) {
	var keys []wjose.PublicKey
	for _, k := range oidcclient.CurrentKeys(c, now) {
		var j wjose.JWK
		if err := json.Unmarshal(k.GetJwkJson(), &j); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.GetKid(), err)
		}
		if j.Kid == "" {
			j.Kid = k.GetKid()
		}
		if j.Alg == "" {
			switch j.Kty {
			case "RSA":
				j.Alg = wjose.RS256
			case "EC":
				j.Alg = wjose.ES256
			}
		}
		pk, err := j.PublicKey()
		if err != nil {
			return nil, err
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, errors.New("the client has no current keys")
	}
	return wjose.NewKeySet(keys...)
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
	s.cfg.Logger.Error("token endpoint: client authentication or token issuance failed", "err", err)
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
