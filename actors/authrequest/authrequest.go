// Package authrequest is the authorization-request actor: one OpenID
// Connect authorization request from /authorize to its code exchange.
//
// It holds what the client asked for, who authenticated, the hash of the
// code issued for it (never the code), whether the code was spent, and the
// sessions its tokens started. A code is spent once: the second redemption
// is answered AuthCodeReused with those sessions, which the caller revokes
// (RFC 6749 §4.1.2: "the authorization server MUST deny the request and
// SHOULD revoke all tokens previously issued based on that authorization
// code"). The state outlives the request's expiry for that reason: an
// expired request still recognises its spent code.
package authrequest

import (
	"crypto/subtle"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// KindName is the authrequest kind's stable name.
const KindName = "authrequest"

// Bounds on what a client may put in a request; all of it is stored.
const (
	MaxTTL         = time.Hour
	MaxIDLen       = 128
	MaxURILen      = 2048
	MaxScopes      = 50
	MaxScopeLen    = 128
	MaxStateLen    = 1024
	MaxNonceLen    = 512
	MaxHintLen     = 256
	MaxListLen     = 16 // prompt, acr_values, amr
	MaxSessions    = 16
	CodeHashLen    = 32 // SHA-256
	maxChallenge   = 128
	expiryTimer    = "expiry"
	maxSubjectLen  = 128
	maxShortValLen = 64
)

// Kind registers the authrequest actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one authorization request.
type Actor struct {
	id    string
	state *protocol.AuthRequestState
}

// New returns the not yet created request with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.AuthRequestState{}}
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	switch m := msg.(type) {
	case *protocol.CreateAuthRequest:
		return a.create(ctx, m)
	case *protocol.GetAuthRequest:
		if err := a.mustBeLive(); err != nil {
			return err
		}
		ctx.Reply(a.info())
		return nil
	case *protocol.CompleteAuthRequest:
		return a.complete(ctx, m)
	case *protocol.ApproveAuthRequest:
		return a.approve(ctx)
	case *protocol.SaveAuthCode:
		return a.saveCode(ctx, m)
	case *protocol.RedeemAuthCode:
		return a.redeem(ctx, m)
	case *protocol.RecordAuthSession:
		return a.recordSession(ctx, m)
	case *protocol.TimerFired:
		if m.GetName() != expiryTimer || !a.state.GetExists() || a.state.GetExpired() {
			return nil // a stale or foreign timer changes nothing
		}
		ctx.Persist(&protocol.AuthRequestExpired{AtUnixNano: ctx.Now().UnixNano()})
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) create(ctx actors.Context, m *protocol.CreateAuthRequest) error {
	if a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "authorization request %s exists", a.id)
	}
	if err := validData(m.GetData()); err != nil {
		return err
	}
	ttl := time.Duration(m.GetTtlNanos())
	if ttl <= 0 || ttl > MaxTTL {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "authorization request ttl %s outside (0, %s]", ttl, MaxTTL)
	}
	now := ctx.Now()
	ev := &protocol.AuthRequestCreated{Data: m.GetData(), CreatedUnixNano: now.UnixNano(), ExpiresUnixNano: now.Add(ttl).UnixNano()}
	ctx.Persist(ev)
	ctx.SetTimer(expiryTimer, now.Add(ttl), &protocol.GetAuthRequest{})
	ctx.Reply(&protocol.AuthRequestInfo{Id: a.id, Data: ev.Data, CreatedUnixNano: ev.CreatedUnixNano, ExpiresUnixNano: ev.ExpiresUnixNano})
	return nil
}

func (a *Actor) complete(ctx actors.Context, m *protocol.CompleteAuthRequest) error {
	if err := a.mustBeLive(); err != nil {
		return err
	}
	sub := m.GetSubject()
	if sub == "" || len(sub) > maxSubjectLen || !utf8.ValidString(sub) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "subject must be 1 to %d bytes of UTF-8", maxSubjectLen)
	}
	if err := validList("amr", m.GetAmr(), maxShortValLen); err != nil {
		return err
	}
	if len(m.GetAcr()) > maxShortValLen {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "acr longer than %d bytes", maxShortValLen)
	}
	info := a.state.GetInfo()
	if info.GetAuthenticated() {
		if info.GetSubject() == sub {
			ctx.Reply(a.info()) // a retried login: nothing new
			return nil
		}
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s was completed by another subject", a.id)
	}
	ev := &protocol.AuthRequestCompleted{Subject: sub, Amr: m.GetAmr(), Acr: m.GetAcr(), AtUnixNano: ctx.Now().UnixNano(), ConsentRequired: m.GetConsentRequired()}
	ctx.Persist(ev)
	out := a.info()
	out.Authenticated, out.Subject, out.Amr, out.Acr, out.AuthTimeUnixNano = true, sub, ev.Amr, ev.Acr, ev.AtUnixNano
	out.ConsentRequired, out.Done = ev.ConsentRequired, !ev.ConsentRequired
	ctx.Reply(out)
	return nil
}

// approve records consent: the request is done once its user approved.
func (a *Actor) approve(ctx actors.Context) error {
	if err := a.mustBeLive(); err != nil {
		return err
	}
	info := a.state.GetInfo()
	switch {
	case !info.GetAuthenticated():
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s is not authenticated yet", a.id)
	case info.GetDone():
		ctx.Reply(a.info()) // approved already, or no consent needed
		return nil
	}
	ctx.Persist(&protocol.AuthRequestApproved{AtUnixNano: ctx.Now().UnixNano()})
	out := a.info()
	out.Done = true
	ctx.Reply(out)
	return nil
}

func (a *Actor) saveCode(ctx actors.Context, m *protocol.SaveAuthCode) error {
	if err := a.mustBeLive(); err != nil {
		return err
	}
	if len(m.GetCodeHash()) != CodeHashLen {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "code hash is %d bytes, want %d", len(m.GetCodeHash()), CodeHashLen)
	}
	if !a.state.GetInfo().GetDone() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s is not authenticated and approved yet", a.id)
	}
	if a.state.GetInfo().GetCodeIssued() {
		if subtle.ConstantTimeCompare(a.state.GetCodeHash(), m.GetCodeHash()) == 1 {
			ctx.Reply(a.info())
			return nil
		}
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s already has a code", a.id)
	}
	ctx.Persist(&protocol.AuthCodeSaved{CodeHash: m.GetCodeHash()})
	out := a.info()
	out.CodeIssued = true
	ctx.Reply(out)
	return nil
}

func (a *Actor) redeem(ctx actors.Context, m *protocol.RedeemAuthCode) error {
	if !a.state.GetExists() || !a.state.GetInfo().GetCodeIssued() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "no code issued for authorization request %s", a.id)
	}
	if subtle.ConstantTimeCompare(a.state.GetCodeHash(), m.GetCodeHash()) != 1 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "code does not match authorization request %s", a.id)
	}
	if a.state.GetInfo().GetRedeemed() {
		ctx.Persist(&protocol.AuthCodeReuseSeen{AtUnixNano: ctx.Now().UnixNano()})
		ctx.Reply(&protocol.AuthCodeReused{SessionIds: append([]string(nil), a.state.GetInfo().GetSessionIds()...)})
		return nil
	}
	if a.state.GetExpired() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "authorization request %s expired", a.id)
	}
	if m.GetCheckOnly() {
		ctx.Reply(a.info())
		return nil
	}
	ctx.Persist(&protocol.AuthCodeRedeemed{AtUnixNano: ctx.Now().UnixNano()})
	out := a.info()
	out.Redeemed = true
	ctx.Reply(out)
	return nil
}

func (a *Actor) recordSession(ctx actors.Context, m *protocol.RecordAuthSession) error {
	if !a.state.GetInfo().GetRedeemed() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s: code not redeemed", a.id)
	}
	sid := m.GetSessionId()
	if sid == "" || len(sid) > MaxIDLen {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session id must be 1 to %d bytes", MaxIDLen)
	}
	for _, s := range a.state.GetInfo().GetSessionIds() {
		if s == sid {
			ctx.Reply(a.info())
			return nil
		}
	}
	if len(a.state.GetInfo().GetSessionIds()) >= MaxSessions {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "authorization request %s already started %d sessions", a.id, MaxSessions)
	}
	ctx.Persist(&protocol.AuthSessionRecorded{SessionId: sid})
	out := a.info()
	out.SessionIds = append(out.SessionIds, sid)
	ctx.Reply(out)
	return nil
}

func (a *Actor) mustBeLive() error {
	switch {
	case !a.state.GetExists():
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "authorization request %s not found", a.id)
	case a.state.GetExpired():
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "authorization request %s expired", a.id)
	case a.state.GetInfo().GetRedeemed():
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "authorization request %s was used", a.id)
	}
	return nil
}

func (a *Actor) info() *protocol.AuthRequestInfo {
	return protocol.Clone(a.state.GetInfo())
}

// Apply implements actors.Actor.
func (a *Actor) Apply(event protocol.Message) error {
	s := a.state
	switch e := event.(type) {
	case *protocol.AuthRequestCreated:
		s.Exists = true
		s.Info = &protocol.AuthRequestInfo{Id: a.id, Data: e.GetData(), CreatedUnixNano: e.GetCreatedUnixNano(), ExpiresUnixNano: e.GetExpiresUnixNano()}
	case *protocol.AuthRequestCompleted:
		s.Info.Authenticated, s.Info.Subject, s.Info.Amr, s.Info.Acr, s.Info.AuthTimeUnixNano = true, e.GetSubject(), e.GetAmr(), e.GetAcr(), e.GetAtUnixNano()
		s.Info.ConsentRequired, s.Info.Done = e.GetConsentRequired(), !e.GetConsentRequired()
	case *protocol.AuthRequestApproved:
		s.Info.Done = true
	case *protocol.AuthCodeSaved:
		s.CodeHash = e.GetCodeHash()
		s.Info.CodeIssued = true
	case *protocol.AuthCodeRedeemed:
		s.Info.Redeemed = true
	case *protocol.AuthCodeReuseSeen:
		s.ReuseCount++
	case *protocol.AuthSessionRecorded:
		s.Info.SessionIds = append(s.Info.SessionIds, e.GetSessionId())
	case *protocol.AuthRequestExpired:
		s.Expired = true
	default:
		return fmt.Errorf("authrequest: unknown event %T", event)
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.AuthRequestState)
	if !ok {
		return fmt.Errorf("authrequest: snapshot is %T, want AuthRequestState", snapshot)
	}
	a.state = protocol.Clone(s)
	return nil
}

func validData(d *protocol.AuthRequestData) error {
	bad := func(format string, args ...any) error {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
	}
	if d == nil {
		return bad("authorization request has no data")
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
		need bool
	}{
		{"client_id", d.GetClientId(), MaxIDLen, true},
		{"redirect_uri", d.GetRedirectUri(), MaxURILen, true},
		{"state", d.GetState(), MaxStateLen, false},
		{"nonce", d.GetNonce(), MaxNonceLen, false},
		{"response_type", d.GetResponseType(), maxShortValLen, true},
		{"response_mode", d.GetResponseMode(), maxShortValLen, false},
		{"code_challenge", d.GetCodeChallenge(), maxChallenge, false},
		{"login_hint", d.GetLoginHint(), MaxHintLen, false},
		{"tenant", d.GetTenant(), MaxIDLen, false},
	} {
		if f.need && f.v == "" {
			return bad("%s is required", f.name)
		}
		if len(f.v) > f.max || !utf8.ValidString(f.v) {
			return bad("%s must be at most %d bytes of UTF-8", f.name, f.max)
		}
	}
	switch d.GetCodeChallengeMethod() {
	case "", "S256", "plain":
	default:
		return bad("code_challenge_method %q is not S256 or plain", d.GetCodeChallengeMethod())
	}
	if (d.GetCodeChallenge() == "") != (d.GetCodeChallengeMethod() == "") {
		return bad("code_challenge and code_challenge_method go together")
	}
	if len(d.GetScopes()) > MaxScopes {
		return bad("%d scopes, at most %d", len(d.GetScopes()), MaxScopes)
	}
	if err := validList("scope", d.GetScopes(), MaxScopeLen); err != nil {
		return err
	}
	if err := validList("prompt", d.GetPrompt(), maxShortValLen); err != nil {
		return err
	}
	if err := validList("acr_values", d.GetAcrValues(), maxShortValLen); err != nil {
		return err
	}
	if d.GetMaxAgeSeconds() < 0 {
		return bad("max_age is negative")
	}
	return nil
}

func validList(name string, vs []string, maxLen int) error {
	if name != "scope" && len(vs) > MaxListLen {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "%d %s values, at most %d", len(vs), name, MaxListLen)
	}
	for _, v := range vs {
		if v == "" || len(v) > maxLen || !utf8.ValidString(v) {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "each %s value must be 1 to %d bytes of UTF-8", name, maxLen)
		}
	}
	return nil
}
