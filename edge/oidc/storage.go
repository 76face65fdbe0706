package oidc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/protocol"
)

// storage is op.Storage over Ward's actors and key state. It translates:
// every decision (is the code spent, is the refresh token current, may this
// client use this grant) is an actor's or the domain package's.
type storage struct {
	cfg    *Config
	crypto op.Crypto // op's code encryption: the code carries the request id

	// signers caches parsed signing keys by kid: parsing PKCS#8 (and, with
	// OpenSSL, building its key object) per token would cost more than
	// the signature.
	signersMu sync.Mutex
	signers   map[string]*signingKey
}

// signer returns the cached signer of k, dropping keys no longer in set.
func (s *storage) signer(set *protocol.KeySet, k *protocol.SigningKey) (*signingKey, error) {
	s.signersMu.Lock()
	defer s.signersMu.Unlock()
	if sk, ok := s.signers[k.GetKid()]; ok {
		return sk, nil
	}
	sk, err := newSigningKey(k)
	if err != nil {
		return nil, err
	}
	if s.signers == nil {
		s.signers = map[string]*signingKey{}
	}
	live := map[string]bool{}
	for _, x := range set.GetKeys() {
		live[x.GetKid()] = true
	}
	for kid, old := range s.signers {
		if !live[kid] {
			// In-flight signatures hold the key's read lock; Close waits.
			_ = old.signer.key.Close()
			delete(s.signers, kid)
		}
	}
	s.signers[k.GetKid()] = sk
	return sk, nil
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.ClientCredentialsStorage       = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
)

func (s *storage) request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error) {
	return s.cfg.Actors.Request(ctx, kind, id, msg)
}

// ---- clients ----

func (s *storage) client(id string) (*protocol.OIDCClient, error) {
	if id == "" || len(id) > oidcclient.MaxIDLen {
		return nil, zoidc.ErrInvalidClient().WithDescription("unknown client")
	}
	b, ok := s.cfg.Meta.MetaValue(oidcclient.Key(id))
	if !ok {
		return nil, zoidc.ErrInvalidClient().WithDescription("unknown client")
	}
	c := &protocol.OIDCClient{}
	if err := proto.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("client %s: stored registration: %w", id, err)
	}
	if c.GetDisabled() {
		return nil, zoidc.ErrInvalidClient().WithDescription("client is disabled")
	}
	return c, nil
}

func (s *storage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	return &client{c: c, loginURL: s.cfg.loginPath}, nil
}

func (s *storage) AuthorizeClientIDSecret(ctx context.Context, clientID, clientSecret string) error {
	c, err := s.client(clientID)
	if err != nil {
		return err
	}
	if !oidcclient.VerifySecret(c, clientSecret, s.cfg.now()) {
		return zoidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	return nil
}

func (s *storage) ClientCredentials(ctx context.Context, clientID, clientSecret string) (op.Client, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	if !oidcclient.VerifySecret(c, clientSecret, s.cfg.now()) {
		return nil, zoidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	if !oidcclient.AllowsGrant(c, oidcclient.GrantClientCredentials) {
		return nil, zoidc.ErrUnauthorizedClient().WithDescription("client is not allowed the client_credentials grant")
	}
	return &client{c: c, loginURL: s.cfg.loginPath}, nil
}

func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	for _, sc := range scopes {
		if !oidcclient.ServiceScope(c, sc) {
			return nil, zoidc.ErrInvalidScope().WithDescription("scope %q is not allowed for this client", sc)
		}
	}
	return &serviceRequest{subject: clientID, clientID: clientID, scopes: scopes, tenant: c.GetTenant()}, nil
}

func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, err := s.client(clientID)
	if err != nil {
		return nil, err
	}
	for _, k := range oidcclient.CurrentKeys(c, s.cfg.now()) {
		if k.GetKid() != keyID {
			continue
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k.GetJwkJson()); err != nil {
			return nil, fmt.Errorf("client %s key %s: %w", clientID, keyID, err)
		}
		if !jwk.IsPublic() {
			return nil, fmt.Errorf("client %s key %s is not a public key", clientID, keyID)
		}
		return &jwk, nil
	}
	return nil, zoidc.ErrInvalidClient().WithDescription("unknown key")
}

func (s *storage) ValidateJWTProfileScopes(ctx context.Context, userID string, scopes []string) ([]string, error) {
	c, err := s.client(userID) // a service account is a client; its id is the JWT's subject
	if err != nil {
		return nil, err
	}
	if !oidcclient.AllowsGrant(c, oidcclient.GrantJWTBearer) {
		return nil, zoidc.ErrUnauthorizedClient().WithDescription("not allowed the JWT bearer grant")
	}
	var out []string
	for _, sc := range scopes {
		if sc != "offline_access" && oidcclient.AllowsScope(c, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// ---- authorization requests ----

func (s *storage) CreateAuthRequest(ctx context.Context, req *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	c, err := s.client(req.ClientID)
	if err != nil {
		return nil, err
	}
	if err := oidcclient.CheckAuthorization(c, string(req.ResponseType), req.CodeChallenge, string(req.CodeChallengeMethod), req.Scopes); err != nil {
		switch {
		case errors.Is(err, oidcclient.ErrGrantNotAllowed):
			return nil, zoidc.ErrUnauthorizedClient().WithDescription("%s", err)
		case errors.Is(err, oidcclient.ErrScopeNotAllowed):
			return nil, zoidc.ErrInvalidScope().WithDescription("%s", err)
		}
		return nil, zoidc.ErrInvalidRequest().WithDescription("%s", err)
	}
	var maxAge int64
	if req.MaxAge != nil {
		maxAge = int64(*req.MaxAge)
	}
	data := &protocol.AuthRequestData{
		ClientId: req.ClientID, RedirectUri: req.RedirectURI, Scopes: req.Scopes, State: req.State, Nonce: req.Nonce,
		ResponseType: string(req.ResponseType), ResponseMode: string(req.ResponseMode),
		CodeChallenge: req.CodeChallenge, CodeChallengeMethod: string(req.CodeChallengeMethod),
		Prompt: req.Prompt, AcrValues: req.ACRValues, LoginHint: req.LoginHint, MaxAgeSeconds: maxAge, Tenant: c.GetTenant(),
	}
	id := uuid.NewString()
	m, err := s.request(ctx, authrequest.KindName, id, &protocol.CreateAuthRequest{Data: data, TtlNanos: int64(s.cfg.AuthRequestTTL)})
	if err != nil {
		return nil, oidcError(err, "authorization request")
	}
	return &authReq{info: m.(*protocol.AuthRequestInfo)}, nil
}

func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, zoidc.ErrInvalidRequest().WithDescription("unknown authorization request")
	}
	m, err := s.request(ctx, authrequest.KindName, id, &protocol.GetAuthRequest{})
	if err != nil {
		return nil, oidcError(err, "authorization request")
	}
	return &authReq{info: m.(*protocol.AuthRequestInfo)}, nil
}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	_, err := s.request(ctx, authrequest.KindName, id, &protocol.SaveAuthCode{CodeHash: codeHash(code)})
	return oidcError(err, "authorization code")
}

// AuthRequestByCode checks the code without spending it: op calls it
// before it authenticates the client and verifies PKCE. The code is spent
// when the tokens are made (startSession). A spent code is reuse: the
// sessions started from it are revoked (RFC 6749 §4.1.2).
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	id, err := s.crypto.Decrypt(code)
	if err != nil || uuid.Validate(id) != nil {
		return nil, zoidc.ErrInvalidGrant().WithDescription("invalid code")
	}
	info, err := s.redeem(ctx, id, code, true)
	if err != nil {
		return nil, err
	}
	return &authReq{info: info, code: code}, nil
}

// redeem checks (checkOnly) or spends the code of request id.
func (s *storage) redeem(ctx context.Context, id, code string, checkOnly bool) (*protocol.AuthRequestInfo, error) {
	m, err := s.request(ctx, authrequest.KindName, id, &protocol.RedeemAuthCode{CodeHash: codeHash(code), CheckOnly: checkOnly})
	if err != nil {
		return nil, zoidc.ErrInvalidGrant().WithDescription("invalid code").WithParent(err)
	}
	switch r := m.(type) {
	case *protocol.AuthRequestInfo:
		return r, nil
	case *protocol.AuthCodeReused:
		for _, sid := range r.GetSessionIds() {
			if _, err := s.request(ctx, session.KindName, sid, &protocol.RevokeSession{Reason: "code_reuse"}); err != nil && actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
				s.cfg.Logger.Warn("revoking a session of a reused code", "session", sid, "err", err)
			}
		}
		return nil, zoidc.ErrInvalidGrant().WithDescription("code already used; tokens issued from it are revoked")
	}
	return nil, fmt.Errorf("redeem code: unexpected answer %T", m)
}

// DeleteAuthRequest is a no-op: the authrequest actor keeps the spent
// code's record until it expires, so that reuse is recognised.
func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error { return nil }

// ---- tokens ----

// startSession opens the session (the refresh family) for a user's
// authorization request, and records it on the request so that a reused
// code revokes it.
func (s *storage) startSession(ctx context.Context, ar *authReq) (*protocol.RefreshIssued, error) {
	// Spend the code first: of two exchanges racing with one code, only
	// one gets here with it unspent.
	info, err := s.redeem(ctx, ar.info.GetId(), ar.code, false)
	if err != nil {
		return nil, err
	}
	sid := uuid.NewString()
	tenant := info.GetData().GetTenant()
	if tenant == "" {
		tenant = s.cfg.Tenant
	}
	m, err := s.request(ctx, session.KindName, sid, &protocol.CreateSession{
		Subject: info.GetSubject(), ClientId: info.GetData().GetClientId(), TtlNanos: int64(s.cfg.RefreshTTL),
		Tenant: tenant, Amr: info.GetAmr(), Acr: info.GetAcr(), Scopes: info.GetData().GetScopes(),
		GraceNanos: proto.Int64(int64(s.cfg.RefreshGrace)), MaxSessions: uint32(s.cfg.MaxSessionsPerUser),
	})
	if err != nil {
		return nil, oidcError(err, "session")
	}
	issued := m.(*protocol.RefreshIssued)
	if _, err := s.request(ctx, authrequest.KindName, info.GetId(), &protocol.RecordAuthSession{SessionId: sid}); err != nil {
		// Without the record a reused code could not revoke this session:
		// revoke it now rather than hand out an unrevocable token.
		_, _ = s.request(ctx, session.KindName, sid, &protocol.RevokeSession{Reason: "code_record_failed"})
		return nil, oidcError(err, "authorization request")
	}
	return issued, nil
}

func accessID(c *protocol.AccessClaims) string { return c.GetSid() + ":" + c.GetJti() }

func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	switch r := req.(type) {
	case *authReq:
		issued, err := s.startSession(ctx, r)
		if err != nil {
			return "", time.Time{}, err
		}
		r.claims = issued.GetAccess()
		return accessID(r.claims), time.Unix(0, r.claims.GetExpiresUnixNano()), nil
	case *refreshReq:
		return accessID(r.issued.GetAccess()), time.Unix(0, r.issued.GetAccess().GetExpiresUnixNano()), nil
	}
	// Service accounts (client credentials, JWT profile) have no session:
	// their tokens live out their 15 minutes.
	return serviceTokenID(), s.cfg.now().Add(s.cfg.AccessTTL), nil
}

func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	switch r := req.(type) {
	case *authReq:
		issued, err := s.startSession(ctx, r)
		if err != nil {
			return "", "", time.Time{}, err
		}
		r.claims = issued.GetAccess()
		tok := session.FormatRefreshToken(issued.GetSession().GetId(), issued.GetRefreshSecret())
		return accessID(r.claims), tok, time.Unix(0, r.claims.GetExpiresUnixNano()), nil
	case *refreshReq:
		// Rotated already, in TokenRequestByRefreshToken.
		c := r.issued.GetAccess()
		tok := session.FormatRefreshToken(r.issued.GetSession().GetId(), r.issued.GetRefreshSecret())
		return accessID(c), tok, time.Unix(0, c.GetExpiresUnixNano()), nil
	}
	return "", "", time.Time{}, zoidc.ErrUnsupportedGrantType().WithDescription("no refresh tokens for this grant")
}

// TokenRequestByRefreshToken rotates: one actor step decides between the
// successor (or, inside the grace window, the same successor again) and
// reuse, which revokes the family.
func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	sid, secret, err := session.ParseRefreshToken(token)
	if err != nil {
		return nil, op.ErrInvalidRefreshToken
	}
	m, err := s.request(ctx, session.KindName, sid, &protocol.RotateRefresh{PresentedSecret: secret})
	if err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_NOT_FOUND, protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED,
			protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			return nil, op.ErrInvalidRefreshToken
		}
		return nil, oidcError(err, "refresh")
	}
	switch r := m.(type) {
	case *protocol.RefreshIssued:
		return &refreshReq{issued: r}, nil
	case *protocol.RefreshReuseDetected:
		s.cfg.Logger.Warn("refresh token reuse: session revoked", "session", sid)
		return nil, op.ErrInvalidRefreshToken
	}
	return nil, fmt.Errorf("rotate refresh: unexpected answer %T", m)
}

func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	sid, _, err := session.ParseRefreshToken(token)
	if err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	m, err := s.request(ctx, session.KindName, sid, &protocol.GetSession{})
	if err != nil {
		return "", "", op.ErrInvalidRefreshToken
	}
	info := m.(*protocol.SessionInfo)
	if info.GetClientId() != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return info.GetSubject(), token, nil
}

// RevokeToken revokes the session behind a refresh token or an access
// token (whose id names its session): a JWT cannot be recalled from the
// relying parties that hold it, but its session stops userinfo,
// introspection and refresh at once.
func (s *storage) RevokeToken(ctx context.Context, tokenOrID, userID, clientID string) *zoidc.Error {
	sid := ""
	if id, _, err := session.ParseRefreshToken(tokenOrID); err == nil {
		sid = id
	} else if a, _, ok := strings.Cut(tokenOrID, ":"); ok && a != "svc" {
		sid = a
	}
	if sid == "" || uuid.Validate(sid) != nil {
		return nil // RFC 7009 §2.2: an invalid token is not an error
	}
	m, err := s.request(ctx, session.KindName, sid, &protocol.GetSession{})
	if err != nil {
		return nil
	}
	if info := m.(*protocol.SessionInfo); info.GetClientId() != clientID {
		return nil // another client's token: not ours to revoke, and not to be revealed
	}
	if _, err := s.request(ctx, session.KindName, sid, &protocol.RevokeSession{Reason: "revoked_by_client"}); err != nil &&
		actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
		return zoidc.ErrServerError().WithParent(err)
	}
	return nil
}

func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	if userID == "" {
		return nil
	}
	_, err := s.request(ctx, usersessions.KindName, usersessions.ID(s.cfg.Tenant, userID), &protocol.RevokeAllUserSessions{Reason: "logout"})
	if err != nil && actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
		return oidcError(err, "logout")
	}
	return nil
}

// ---- keys ----

func (s *storage) keySet() (*protocol.KeySet, error) {
	set, err := s.cfg.Keys.KeySet()
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return set, nil
}

func (s *storage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	k, err := s.signingKey()
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return k, nil
}

// signingKey is the key that signs now, for op and for Ward's own token
// paths.
func (s *storage) signingKey() (*signingKey, error) {
	set, err := s.keySet()
	if err != nil {
		return nil, err
	}
	k, err := keyring.Signing(set, s.cfg.signingAlg(), s.cfg.now())
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return s.signer(set, k)
}

func (s *storage) SignatureAlgorithms(ctx context.Context) ([]jose.SignatureAlgorithm, error) {
	alg, err := joseAlg(s.cfg.signingAlg())
	if err != nil {
		return nil, err
	}
	return []jose.SignatureAlgorithm{alg}, nil
}

func (s *storage) KeySet(ctx context.Context) ([]op.Key, error) {
	set, err := s.keySet()
	if err != nil {
		return nil, err
	}
	var out []op.Key
	for _, k := range keyring.Published(set, s.cfg.now()) {
		pk, err := newPublicKey(k)
		if err != nil {
			return nil, err
		}
		out = append(out, pk)
	}
	return out, nil
}

// ---- claims ----

func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest adds Ward's access-token claims, decided by
// the session actor.
func (s *storage) GetPrivateClaimsFromRequest(ctx context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	var c *protocol.AccessClaims
	switch r := req.(type) {
	case *authReq:
		c = r.claims
	case *refreshReq:
		c = r.issued.GetAccess()
	case *serviceRequest:
		// RFC 9068 §2.2.3: the granted scopes travel in the token, so a
		// resource server (our /identity API included) can check them.
		out := map[string]any{}
		if r.tenant != "" {
			out["tid"] = r.tenant
		}
		if len(r.scopes) > 0 {
			out["scope"] = strings.Join(r.scopes, " ")
		}
		return out, nil
	}
	if c == nil {
		return nil, nil
	}
	out := map[string]any{"sid": c.GetSid(), "amr": c.GetAmr()}
	if c.GetTid() != "" {
		out["tid"] = c.GetTid()
	}
	if len(c.GetTids()) > 0 {
		out["tids"] = c.GetTids()
	}
	if c.GetAcr() != "" {
		out["acr"] = c.GetAcr()
	}
	if c.GetContextNodeId() != "" {
		out["context_node_id"] = c.GetContextNodeId()
	}
	if len(c.GetScopes()) > 0 {
		out["scope"] = strings.Join(c.GetScopes(), " ")
	}
	return out, nil
}

func (s *storage) profile(ctx context.Context, userID string) (*protocol.UserProfile, error) {
	if !emailindex.ValidUUID(userID) {
		return nil, zoidc.ErrInvalidRequest().WithDescription("unknown subject")
	}
	m, err := s.request(ctx, user.KindName, user.ID(s.cfg.Tenant, userID), &protocol.GetProfile{})
	if err != nil {
		return nil, oidcError(err, "user")
	}
	return m.(*protocol.UserProfile), nil
}

func fillUserinfo(ui *zoidc.UserInfo, sub string, p *protocol.UserProfile, scopes []string) {
	ui.Subject = sub
	for _, sc := range scopes {
		switch sc {
		case zoidc.ScopeEmail:
			ui.Email = p.GetEmail()
			ui.EmailVerified = zoidc.Bool(p.GetStatus().GetEmailVerified())
		case zoidc.ScopeProfile:
			ui.GivenName, ui.FamilyName = p.GetFirstName(), p.GetLastName()
			ui.Name = strings.TrimSpace(p.GetFirstName() + " " + p.GetLastName())
		case zoidc.ScopePhone:
			ui.PhoneNumber = p.GetPhone()
			ui.PhoneNumberVerified = zoidc.Bool(p.GetStatus().GetPhoneVerified())
		}
	}
}

func (s *storage) SetUserinfoFromScopes(ctx context.Context, ui *zoidc.UserInfo, userID, clientID string, scopes []string) error {
	return nil // SetUserinfoFromRequest and SetUserinfoFromToken do the work
}

func (s *storage) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	p, err := s.profile(ctx, req.GetSubject())
	if err != nil {
		return err
	}
	fillUserinfo(ui, req.GetSubject(), p, scopes)
	return nil
}

// activeSession resolves an access token id to its live session.
func (s *storage) activeSession(ctx context.Context, tokenID string) (*protocol.SessionInfo, error) {
	sid, _, ok := strings.Cut(tokenID, ":")
	if !ok || uuid.Validate(sid) != nil {
		return nil, errors.New("token has no session")
	}
	m, err := s.request(ctx, session.KindName, sid, &protocol.GetSession{})
	if err != nil {
		return nil, err
	}
	info := m.(*protocol.SessionInfo)
	if info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		return nil, errors.New("session ended")
	}
	return info, nil
}

func (s *storage) SetUserinfoFromToken(ctx context.Context, ui *zoidc.UserInfo, tokenID, subject, origin string) error {
	info, err := s.activeSession(ctx, tokenID)
	if err != nil || info.GetSubject() != subject {
		return zoidc.ErrAccessDenied().WithDescription("token is not active")
	}
	p, err := s.profile(ctx, subject)
	if err != nil {
		return err
	}
	fillUserinfo(ui, subject, p, info.GetScopes())
	return nil
}

func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *zoidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if strings.HasPrefix(tokenID, "svc:") {
		resp.Active = true
		resp.Subject = subject
		return nil
	}
	info, err := s.activeSession(ctx, tokenID)
	if err != nil || info.GetSubject() != subject {
		return nil // inactive: the zero response
	}
	resp.Active = true
	resp.Subject = subject
	resp.ClientID = info.GetClientId()
	resp.Scope = info.GetScopes()
	return nil
}

func (s *storage) Health(ctx context.Context) error { return nil }

// oidcError turns an actor error into an OAuth error op can render; the
// cause stays as the parent (logged, never shown).
func oidcError(err error, what string) error {
	if err == nil {
		return nil
	}
	switch actors.CodeOf(err) {
	case protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return zoidc.ErrInvalidRequest().WithDescription("%s: invalid request", what).WithParent(err)
	case protocol.ErrorCode_ERROR_CODE_NOT_FOUND, protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED,
		protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
		return zoidc.ErrInvalidGrant().WithDescription("%s: not found or not valid", what).WithParent(err)
	}
	return zoidc.ErrServerError().WithParent(err)
}

// b64 is base64url without padding, JOSE's encoding.
var b64 = base64.RawURLEncoding
