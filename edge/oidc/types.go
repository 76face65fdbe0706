package oidc

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/wardhq/ward/actors/oidcclient"
	wjose "github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

// client adapts a stored registration to op.Client.
type client struct {
	c        *protocol.OIDCClient
	loginURL string
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.c.GetId() }
func (c *client) RedirectURIs() []string           { return c.c.GetRedirectUris() }
func (c *client) PostLogoutRedirectURIs() []string { return c.c.GetPostLogoutRedirectUris() }

func (c *client) ApplicationType() op.ApplicationType {
	if c.c.GetPublic() {
		return op.ApplicationTypeUserAgent
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() zoidc.AuthMethod {
	switch {
	case c.c.GetPublic():
		return zoidc.AuthMethodNone
	case len(c.c.GetSecretSha256()) == 0:
		return zoidc.AuthMethodPrivateKeyJWT
	}
	return zoidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []zoidc.GrantType {
	out := make([]zoidc.GrantType, 0, len(c.c.GetGrantTypes()))
	for _, g := range c.c.GetGrantTypes() {
		out = append(out, zoidc.GrantType(g))
	}
	return out
}

func (c *client) LoginURL(id string) string            { return c.loginURL + "?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return time.Hour }
func (c *client) DevMode() bool                        { return c.c.GetDevMode() }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) IsScopeAllowed(scope string) bool { return oidcclient.AllowsScope(c.c, scope) }

// authReq adapts the authrequest actor's view to op.AuthRequest. claims
// is set once the code's session is started (for the access token).
type authReq struct {
	info   *protocol.AuthRequestInfo
	code   string // set when found by its code
	claims *protocol.AccessClaims
}

var _ op.AuthRequest = (*authReq)(nil)

func (a *authReq) GetID() string         { return a.info.GetId() }
func (a *authReq) GetACR() string        { return a.info.GetAcr() }
func (a *authReq) GetAMR() []string      { return a.info.GetAmr() }
func (a *authReq) GetAudience() []string { return []string{a.info.GetData().GetClientId()} }
func (a *authReq) GetAuthTime() time.Time {
	return time.Unix(0, a.info.GetAuthTimeUnixNano())
}
func (a *authReq) GetClientID() string { return a.info.GetData().GetClientId() }
func (a *authReq) GetCodeChallenge() *zoidc.CodeChallenge {
	d := a.info.GetData()
	if d.GetCodeChallenge() == "" {
		return nil
	}
	return &zoidc.CodeChallenge{Challenge: d.GetCodeChallenge(), Method: zoidc.CodeChallengeMethod(d.GetCodeChallengeMethod())}
}
func (a *authReq) GetNonce() string       { return a.info.GetData().GetNonce() }
func (a *authReq) GetRedirectURI() string { return a.info.GetData().GetRedirectUri() }
func (a *authReq) GetResponseType() zoidc.ResponseType {
	return zoidc.ResponseType(a.info.GetData().GetResponseType())
}
func (a *authReq) GetResponseMode() zoidc.ResponseMode {
	return zoidc.ResponseMode(a.info.GetData().GetResponseMode())
}
func (a *authReq) GetScopes() []string { return a.info.GetData().GetScopes() }
func (a *authReq) GetState() string    { return a.info.GetData().GetState() }
func (a *authReq) GetSubject() string  { return a.info.GetSubject() }
func (a *authReq) Done() bool          { return a.info.GetDone() }

// refreshReq is a rotation already decided by the session actor.
type refreshReq struct {
	issued *protocol.RefreshIssued
	scopes []string
}

var _ op.RefreshTokenRequest = (*refreshReq)(nil)

func (r *refreshReq) GetAMR() []string      { return r.issued.GetSession().GetAmr() }
func (r *refreshReq) GetAudience() []string { return []string{r.issued.GetSession().GetClientId()} }
func (r *refreshReq) GetAuthTime() time.Time {
	return time.Unix(0, r.issued.GetSession().GetCreatedUnixNano())
}
func (r *refreshReq) GetClientID() string { return r.issued.GetSession().GetClientId() }
func (r *refreshReq) GetScopes() []string {
	if r.scopes != nil {
		return r.scopes
	}
	return r.issued.GetSession().GetScopes()
}
func (r *refreshReq) GetSubject() string { return r.issued.GetSession().GetSubject() }

// SetCurrentScopes narrows the scopes of this response (RFC 6749 §6);
// op has already checked they are a subset.
func (r *refreshReq) SetCurrentScopes(scopes []string) { r.scopes = slices.Clone(scopes) }

// serviceRequest is a client acting for itself (client credentials).
type serviceRequest struct {
	subject, clientID, tenant string
	scopes                    []string
}

func (r *serviceRequest) GetSubject() string    { return r.subject }
func (r *serviceRequest) GetAudience() []string { return []string{r.clientID} }
func (r *serviceRequest) GetScopes() []string   { return r.scopes }

// signingKey is a keyring key as op signs with it: through edge/jose's
// signer (OpenSSL for RS256 when built with the openssl tag), handed to
// go-jose as an opaque signer.
type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	signer *opaqueSigner
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.signer }
func (k *signingKey) ID() string                                  { return k.kid }

type opaqueSigner struct {
	key *wjose.SigningKey
	alg jose.SignatureAlgorithm
	jwk jose.JSONWebKey
}

var _ jose.OpaqueSigner = (*opaqueSigner)(nil)

func (o *opaqueSigner) Public() *jose.JSONWebKey        { return &o.jwk }
func (o *opaqueSigner) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{o.alg} }
func (o *opaqueSigner) SignPayload(input []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != o.alg {
		return nil, fmt.Errorf("key %s signs %s, not %s", o.jwk.KeyID, o.alg, alg)
	}
	return o.key.SignInput(input)
}

func joseAlg(a protocol.KeyAlg) (jose.SignatureAlgorithm, error) {
	switch a {
	case protocol.KeyAlg_KEY_ALG_RS256:
		return jose.RS256, nil
	case protocol.KeyAlg_KEY_ALG_ES256:
		return jose.ES256, nil
	}
	return "", fmt.Errorf("unsupported key algorithm %v", a)
}

func newSigningKey(k *protocol.SigningKey) (*signingKey, error) {
	alg, err := joseAlg(k.GetAlg())
	if err != nil {
		return nil, err
	}
	sk, err := wjose.SigningKeyFromProto(k)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.GetKid(), err)
	}
	o := &opaqueSigner{key: sk, alg: alg, jwk: jose.JSONWebKey{Key: sk.Public(), KeyID: k.GetKid(), Algorithm: string(alg), Use: "sig"}}
	return &signingKey{kid: k.GetKid(), alg: alg, signer: o}, nil
}

// publicKey is a published key for JWKS.
type publicKey struct {
	kid string
	alg jose.SignatureAlgorithm
	pub any
}

func (k *publicKey) ID() string                         { return k.kid }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return k.alg }
func (k *publicKey) Use() string                        { return "sig" }
func (k *publicKey) Key() any                           { return k.pub }

func newPublicKey(k *protocol.SigningKey) (*publicKey, error) {
	alg, err := joseAlg(k.GetAlg())
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", k.GetKid(), err)
	}
	return &publicKey{kid: k.GetKid(), alg: alg, pub: pub}, nil
}
