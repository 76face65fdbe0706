// Package oidcclient holds the rules for OAuth 2.0 / OpenID Connect clients:
// what a valid registration is, how a secret is checked, and which grants
// and scopes a client may use. Clients live in the meta group's key state
// (KeyPrefix + id); the edge reads them and asks these functions, so that
// the decisions stay in the domain.
package oidcclient

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/protocol"
)

// KeyPrefix is where clients live in the meta key state.
const KeyPrefix = "oidc/clients/"

// Key is the meta key of client id.
func Key(id string) string { return KeyPrefix + id }

// Grant types a client may be registered for.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// SecretLen is the length of a generated secret in bytes (256 bits).
const SecretLen = 32

// Bounds.
const (
	MaxIDLen        = 128
	MaxRedirectURIs = 32
	MaxURILen       = 2048
	MaxScopes       = 64
	MaxKeys         = 8
	MaxKeyLen       = 8 << 10 // bytes of one JWK's JSON
)

// NewSecret draws a client secret from entropy and returns it (base64url,
// shown to the operator once) with the hash to store.
func NewSecret(entropy io.Reader) (secret string, hash []byte, err error) {
	b := make([]byte, SecretLen)
	if _, err := io.ReadFull(entropy, b); err != nil {
		return "", nil, fmt.Errorf("client secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return secret, h[:], nil
}

// HashSecret is the stored form of secret.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// VerifySecret reports whether secret is c's at now, in constant time: its
// current secret, or the one it replaced while that one's overlap lasts.
// Public and disabled clients never verify.
func VerifySecret(c *protocol.OIDCClient, secret string, now time.Time) bool {
	if c.GetPublic() || c.GetDisabled() || secret == "" {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	cur := len(c.GetSecretSha256()) == sha256.Size && subtle.ConstantTimeCompare(h[:], c.GetSecretSha256()) == 1
	prev := len(c.GetPreviousSecretSha256()) == sha256.Size &&
		now.UnixNano() < c.GetPreviousSecretExpiresUnixNano() &&
		subtle.ConstantTimeCompare(h[:], c.GetPreviousSecretSha256()) == 1
	return cur || prev
}

// MaxSecretOverlap bounds how long a replaced secret stays valid.
const MaxSecretOverlap = 30 * 24 * time.Hour

// RotateSecret gives confidential client c a new secret drawn from entropy
// and returns it (shown once). The old secret stays valid for overlap
// (0: not at all, e.g. when it leaked); a secret replaced earlier and still
// in its overlap is dropped, so at most two are ever valid.
func RotateSecret(c *protocol.OIDCClient, entropy io.Reader, now time.Time, overlap time.Duration) (string, error) {
	if c.GetPublic() {
		return "", fmt.Errorf("client %s: a public client has no secret", c.GetId())
	}
	if overlap < 0 || overlap > MaxSecretOverlap {
		return "", fmt.Errorf("client %s: overlap must be 0 to %s", c.GetId(), MaxSecretOverlap)
	}
	secret, hash, err := NewSecret(entropy)
	if err != nil {
		return "", err
	}
	c.PreviousSecretSha256, c.PreviousSecretExpiresUnixNano = nil, 0
	if overlap > 0 && len(c.GetSecretSha256()) == sha256.Size {
		c.PreviousSecretSha256 = c.GetSecretSha256()
		c.PreviousSecretExpiresUnixNano = now.Add(overlap).UnixNano()
	}
	c.SecretSha256 = hash
	return secret, nil
}

// Register prepares a new registration from an operator's spec (which
// carries no secret): a confidential client without keys gets a secret,
// returned once. The result is validated.
func Register(spec *protocol.OIDCClient, entropy io.Reader, now time.Time) (*protocol.OIDCClient, string, error) {
	c := protocol.CloneOIDCClient(spec)
	if len(c.GetSecretSha256()) != 0 || len(c.GetPreviousSecretSha256()) != 0 {
		return nil, "", fmt.Errorf("client %s: secrets are generated, not supplied", c.GetId())
	}
	c.CreatedUnixNano = now.UnixNano()
	var secret string
	if !c.GetPublic() && len(c.GetKeys()) == 0 {
		s, hash, err := NewSecret(entropy)
		if err != nil {
			return nil, "", err
		}
		secret, c.SecretSha256 = s, hash
	}
	if err := Validate(c); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// Update applies an operator's new settings to registration cur: the
// secrets and the creation time stay; whether the client is public cannot
// change (a secret would appear or vanish). The result is validated.
func Update(cur, spec *protocol.OIDCClient) (*protocol.OIDCClient, error) {
	if spec.GetPublic() != cur.GetPublic() {
		return nil, fmt.Errorf("client %s: public cannot change; delete the client and register it again", cur.GetId())
	}
	if len(spec.GetSecretSha256()) != 0 || len(spec.GetPreviousSecretSha256()) != 0 {
		return nil, fmt.Errorf("client %s: secrets are rotated, not supplied", cur.GetId())
	}
	c := protocol.CloneOIDCClient(spec)
	c.SecretSha256, c.PreviousSecretSha256 = cur.GetSecretSha256(), cur.GetPreviousSecretSha256()
	c.PreviousSecretExpiresUnixNano = cur.GetPreviousSecretExpiresUnixNano()
	c.CreatedUnixNano = cur.GetCreatedUnixNano()
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

// AllowsGrant reports whether c is registered for grant.
func AllowsGrant(c *protocol.OIDCClient, grant string) bool {
	return slices.Contains(c.GetGrantTypes(), grant)
}

// AllowsScope reports whether c may ask for scope. openid is every
// client's; offline_access needs the refresh_token grant.
func AllowsScope(c *protocol.OIDCClient, scope string) bool {
	switch scope {
	case "openid":
		return true
	case "offline_access":
		return AllowsGrant(c, GrantRefreshToken)
	}
	return slices.Contains(c.GetScopes(), scope)
}

// ServiceScope reports whether a client acting for itself (the
// client_credentials grant) may ask for scope: one of its registered API
// scopes. openid and offline_access need a user and a session, which a
// service token has neither of.
func ServiceScope(c *protocol.OIDCClient, scope string) bool {
	return scope != "openid" && scope != "offline_access" && AllowsScope(c, scope)
}

// CurrentKeys are c's registered keys that have not expired at now: the
// only ones its assertions may be signed with.
func CurrentKeys(c *protocol.OIDCClient, now time.Time) []*protocol.OIDCClientKey {
	var out []*protocol.OIDCClientKey
	for _, k := range c.GetKeys() {
		if k.GetExpiresUnixNano() == 0 || now.UnixNano() < k.GetExpiresUnixNano() {
			out = append(out, k)
		}
	}
	return out
}

// Assertion is what a client's signed assertion (private_key_jwt, RFC 7523
// §2.2) says, once its signature has been checked against one of the
// client's keys. Absent times are zero.
type Assertion struct {
	Issuer, Subject, JTI string
	Audience             []string
	Expiry, IssuedAt     time.Time
}

// MaxAssertionLife bounds how long an assertion may live, from its iat (or
// from now, without one): it is remembered as used until it expires, so a
// long-lived one would be a long-lived credential and a long-kept entry.
const MaxAssertionLife = 10 * time.Minute

// ErrBadAssertion: a verified assertion that does not authenticate the
// client (the edge answers invalid_client).
var ErrBadAssertion = errors.New("client assertion refused")

// CheckAssertion decides whether a, verified with one of c's keys, lets c
// authenticate at an endpoint known by audiences (the issuer, the token
// endpoint): issued by c about itself (RFC 7523 §3: iss and sub are the
// client id), for this provider, naming a jti (so it can be used once),
// short-lived. Expiry itself is checked with the signature.
func CheckAssertion(c *protocol.OIDCClient, a Assertion, audiences []string, now time.Time) error {
	switch {
	case c.GetPublic() || c.GetDisabled() || len(c.GetKeys()) == 0:
		return fmt.Errorf("%w: client %s does not authenticate with keys", ErrBadAssertion, c.GetId())
	case a.Issuer != c.GetId() || a.Subject != c.GetId():
		return fmt.Errorf("%w: iss and sub must both be the client id", ErrBadAssertion)
	case !slices.ContainsFunc(a.Audience, func(aud string) bool { return slices.Contains(audiences, aud) }):
		return fmt.Errorf("%w: aud must name this provider", ErrBadAssertion)
	case a.JTI == "":
		return fmt.Errorf("%w: jti is required", ErrBadAssertion)
	case a.Expiry.IsZero():
		return fmt.Errorf("%w: exp is required", ErrBadAssertion)
	}
	from := now
	if !a.IssuedAt.IsZero() && a.IssuedAt.Before(now) {
		from = a.IssuedAt
	}
	if a.Expiry.Sub(from) > MaxAssertionLife {
		return fmt.Errorf("%w: lives longer than %s", ErrBadAssertion, MaxAssertionLife)
	}
	return nil
}

// Why an authorization request is refused; the edge maps each to its
// OAuth error (unauthorized_client, invalid_request, invalid_scope).
var (
	ErrGrantNotAllowed = errors.New("grant not allowed for this client")
	ErrBadRequest      = errors.New("invalid authorization request")
	ErrScopeNotAllowed = errors.New("scope not allowed for this client")
)

// CheckAuthorization decides whether c may start an authorization code
// request: the code flow only, PKCE with S256 (required for public
// clients, which cannot keep a secret), and only scopes c may ask for.
func CheckAuthorization(c *protocol.OIDCClient, responseType, codeChallenge, challengeMethod string, scopes []string) error {
	switch {
	case !AllowsGrant(c, GrantAuthorizationCode):
		return fmt.Errorf("%w: authorization_code", ErrGrantNotAllowed)
	case responseType != "code":
		return fmt.Errorf("%w: only response_type=code is supported", ErrBadRequest)
	case codeChallenge == "" && c.GetPublic():
		return fmt.Errorf("%w: PKCE (code_challenge with S256) is required for public clients", ErrBadRequest)
	case codeChallenge != "" && challengeMethod != "S256":
		return fmt.Errorf("%w: code_challenge_method must be S256", ErrBadRequest)
	}
	for _, sc := range scopes {
		if !AllowsScope(c, sc) {
			return fmt.Errorf("%w: %q", ErrScopeNotAllowed, sc)
		}
	}
	return nil
}

// NeedsConsent reports whether the user must approve c's request for
// requested, having allowed granted before. First-party clients never ask.
func NeedsConsent(c *protocol.OIDCClient, granted, requested []string) bool {
	return !c.GetFirstParty() && !consent.Covers(granted, requested)
}

// Validate checks a registration before it is stored.
func Validate(c *protocol.OIDCClient) error {
	if c == nil {
		return fmt.Errorf("client: nil")
	}
	if c.GetId() == "" || len(c.GetId()) > MaxIDLen || strings.ContainsAny(c.GetId(), "/ \t\r\n") {
		return fmt.Errorf("client id must be 1 to %d bytes without '/' or spaces", MaxIDLen)
	}
	if c.GetPublic() == (len(c.GetSecretSha256()) != 0) {
		if c.GetPublic() {
			return fmt.Errorf("client %s: a public client has no secret", c.GetId())
		}
		if len(c.GetKeys()) == 0 {
			return fmt.Errorf("client %s: a confidential client needs a secret or a key", c.GetId())
		}
	}
	if len(c.GetSecretSha256()) != 0 && len(c.GetSecretSha256()) != sha256.Size {
		return fmt.Errorf("client %s: secret hash is %d bytes, want %d", c.GetId(), len(c.GetSecretSha256()), sha256.Size)
	}
	if len(c.GetPreviousSecretSha256()) != 0 && (c.GetPublic() || len(c.GetPreviousSecretSha256()) != sha256.Size) {
		return fmt.Errorf("client %s: malformed previous secret", c.GetId())
	}
	if len(c.GetGrantTypes()) == 0 {
		return fmt.Errorf("client %s: no grant types", c.GetId())
	}
	for _, g := range c.GetGrantTypes() {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantJWTBearer:
		case GrantClientCredentials:
			if c.GetPublic() {
				return fmt.Errorf("client %s: a public client cannot use client_credentials", c.GetId())
			}
		default:
			return fmt.Errorf("client %s: unknown grant type %q", c.GetId(), g)
		}
	}
	if AllowsGrant(c, GrantAuthorizationCode) && len(c.GetRedirectUris()) == 0 {
		return fmt.Errorf("client %s: authorization_code needs a redirect URI", c.GetId())
	}
	if len(c.GetRedirectUris()) > MaxRedirectURIs || len(c.GetPostLogoutRedirectUris()) > MaxRedirectURIs {
		return fmt.Errorf("client %s: at most %d redirect URIs", c.GetId(), MaxRedirectURIs)
	}
	for _, u := range append(slices.Clone(c.GetRedirectUris()), c.GetPostLogoutRedirectUris()...) {
		if err := validRedirect(u, c.GetDevMode()); err != nil {
			return fmt.Errorf("client %s: %w", c.GetId(), err)
		}
	}
	if len(c.GetScopes()) > MaxScopes {
		return fmt.Errorf("client %s: at most %d scopes", c.GetId(), MaxScopes)
	}
	if len(c.GetKeys()) > MaxKeys {
		return fmt.Errorf("client %s: at most %d keys", c.GetId(), MaxKeys)
	}
	seen := map[string]bool{}
	for _, k := range c.GetKeys() {
		if k.GetKid() == "" || seen[k.GetKid()] {
			return fmt.Errorf("client %s: every key needs its own kid", c.GetId())
		}
		seen[k.GetKid()] = true
		if err := publicJWK(k); err != nil {
			return fmt.Errorf("client %s: key %q: %w", c.GetId(), k.GetKid(), err)
		}
	}
	return nil
}

// publicJWK checks the shape of a client key: a JSON object of a known key
// type whose kid is k's, and no private member. private_key_jwt and the JWT
// profile verify with these keys, so a private key here would put a secret
// into the replicated state. The edge parses the key fully when it uses it.
func publicJWK(k *protocol.OIDCClientKey) error {
	if len(k.GetJwkJson()) > MaxKeyLen {
		return fmt.Errorf("JWK larger than %d bytes", MaxKeyLen)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(k.GetJwkJson(), &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	var kty, kid string
	_ = json.Unmarshal(m["kty"], &kty)
	_ = json.Unmarshal(m["kid"], &kid)
	switch kty {
	case "RSA", "EC", "OKP":
	default:
		return fmt.Errorf("kty %q: want RSA, EC or OKP", kty)
	}
	if kid != k.GetKid() {
		return fmt.Errorf("the JWK's kid is %q", kid)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := m[private]; ok {
			return fmt.Errorf("a private key (member %q): register the public key only", private)
		}
	}
	return nil
}

// validRedirect: absolute, no fragment (RFC 6749 §3.1.2), https unless
// loopback (RFC 8252 §7.3) or dev mode. Matching is exact elsewhere; this
// only refuses what could never be safe.
func validRedirect(raw string, dev bool) error {
	if raw == "" || len(raw) > MaxURILen {
		return fmt.Errorf("redirect URI must be 1 to %d bytes", MaxURILen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || (u.Scheme == "http" || u.Scheme == "https") && u.Host == "" {
		return fmt.Errorf("redirect URI %q is not absolute", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect URI %q has a fragment", raw)
	}
	if u.Scheme == "http" && !dev {
		h := u.Hostname()
		if h != "localhost" && h != "::1" && !strings.HasPrefix(h, "127.") {
			return fmt.Errorf("redirect URI %q: http only for loopback", raw)
		}
	}
	return nil
}
