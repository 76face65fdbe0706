// Package session is the session actor: one login of one subject at one
// client, and that login's refresh-token family. The session IS the family:
// it holds the hash of the current refresh secret (never the secret),
// rotates it on every use, and ends by revocation or by its durable expiry
// timer.
//
// Access tokens. The edge signs access JWTs; this actor decides their claims
// (sub tid tids jti amr acr context_node_id aud scopes sid iat exp) and
// returns them with every refresh secret it issues. Access tokens live
// AccessTTL, never past the session.
//
// Rotation and reuse. Each rotation draws a new secret (generation n+1) and
// keeps the hash of the old one. Presenting a rotated-away secret is reuse:
// the old secret leaked or the client is confused, and either way the family
// can no longer be trusted, so the session is revoked ("refresh_reuse") and
// the current secret stops working too. The one exception is the grace
// window: a client that lost the answer to its rotation may present the same
// old secret again within GraceDefault (configurable per session, 0
// disables) and gets the same successor and the same access claims, as long
// as the successor has not itself been used. The actor handles one message
// at a time, so of two concurrent rotations of one secret the second always
// sees the first's result.
//
// Caps. A session with a tenant registers with its user's usersessions index
// when created and unregisters when it ends; the index revokes the oldest
// sessions beyond the cap.
package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/protocol"
)

// KindName is the session kind's stable name.
const KindName = "session"

// SecretLen is the refresh secret length in bytes (256 bits).
const SecretLen = 32

// Lifetimes.
const (
	// DefaultTTL is a session's lifetime when CreateSession names none.
	DefaultTTL = 8 * time.Hour
	// MaxTTL bounds a session's lifetime; longer requests are invalid.
	MaxTTL = 30 * 24 * time.Hour
	// AccessTTL is an access token's lifetime.
	AccessTTL = 15 * time.Minute
	// GraceDefault is the refresh retry window when CreateSession names none.
	GraceDefault = 10 * time.Second
	// MaxGrace bounds the retry window: it is a window for lost answers,
	// not a second way to share a token.
	MaxGrace = 5 * time.Minute
)

// Bounds on what a session stores, so a caller cannot grow state at will.
const (
	MaxSubjectLen  = usersessions.MaxSubjectLen
	MaxClientIDLen = 255
	MaxTenantIDs   = 100
	MaxAMR         = 10
	MaxAMRLen      = 32
	MaxACRLen      = 64
	MaxNodeIDLen   = 128
	MaxScopes      = 64
	MaxScopeLen    = 128
	MaxReasonLen   = 200
	JTILen         = 16
	// MaxSpentHashes is how many rotated-away secrets are remembered for
	// reuse detection. A secret older than that is merely refused; at one
	// rotation per access token that is 16 hours of history, more than
	// DefaultTTL.
	MaxSpentHashes = 64
)

// Revocation reasons the session itself uses.
const ReasonReuse = "refresh_reuse"

const (
	expiryTimer = "expiry"
	graceTimer  = "grace"
)

// Kind registers the session actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one session's state.
type Actor struct {
	id    string
	state *protocol.SessionState
}

// New returns the empty (not yet created) session with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.SessionState{}}
}

// Info returns a copy of the session's public view.
func (a *Actor) Info() *protocol.SessionInfo {
	if !a.state.GetExists() {
		return nil
	}
	return cloneInfo(a.state.Info)
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	switch m := msg.(type) {
	case *protocol.CreateSession:
		return a.create(ctx, m)
	case *protocol.TouchSession:
		if err := a.mustBeActive(ctx); err != nil {
			return err
		}
		ctx.Persist(&protocol.SessionTouched{AtUnixNano: ctx.Now().UnixNano()})
		info := a.Info()
		info.LastSeenUnixNano = ctx.Now().UnixNano()
		ctx.Reply(info)
		return nil
	case *protocol.RotateRefresh:
		return a.rotate(ctx, m)
	case *protocol.RevokeSession:
		return a.revoke(ctx, m)
	case *protocol.GetSession:
		if !a.state.GetExists() {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "session %s not found", a.id)
		}
		ctx.Reply(a.Info())
		return nil
	case *protocol.TimerFired:
		return a.timer(ctx, m)
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

func (a *Actor) create(ctx actors.Context, m *protocol.CreateSession) error {
	if a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "session %s already exists", a.id)
	}
	if m.GetSubject() == "" || m.GetClientId() == "" {
		return invalid("session needs a subject and a client")
	}
	if err := validate(m); err != nil {
		return err
	}
	ttl := time.Duration(m.GetTtlNanos())
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 || ttl > MaxTTL {
		return invalid("session ttl %s outside (0, %s]", ttl, MaxTTL)
	}
	grace := GraceDefault
	if m.GraceNanos != nil {
		grace = time.Duration(m.GetGraceNanos())
	}
	if grace < 0 || grace > MaxGrace {
		return invalid("refresh grace %s outside [0, %s]", grace, MaxGrace)
	}
	limit := m.GetMaxSessions()
	if limit == 0 {
		limit = usersessions.DefaultMaxSessions
	}
	if limit > usersessions.MaxSessions {
		return invalid("session cap %d above %d", limit, usersessions.MaxSessions)
	}
	secret, err := draw(ctx.Entropy(), SecretLen, "refresh secret")
	if err != nil {
		return err
	}
	now := ctx.Now()
	expires := now.Add(ttl)
	ev := &protocol.SessionCreated{
		Subject:         m.GetSubject(),
		ClientId:        m.GetClientId(),
		CreatedUnixNano: now.UnixNano(),
		ExpiresUnixNano: expires.UnixNano(),
		RefreshHash:     hashSecret(secret),
		Meta:            a.meta(ctx, m.GetTenant(), "identity.session.created.v1"),
		Tenant:          m.GetTenant(),
		TenantIds:       m.GetTenantIds(),
		Amr:             m.GetAmr(),
		Acr:             m.GetAcr(),
		ContextNodeId:   m.GetContextNodeId(),
		Scopes:          m.GetScopes(),
		GraceNanos:      int64(grace),
	}
	info := infoAfter(a.id, ev)
	access, err := a.claims(ctx, info)
	if err != nil {
		return err
	}
	ctx.Persist(ev)
	if err := a.emit(ctx, info, "identity.session.created.v1", ""); err != nil {
		return err
	}
	ctx.SetTimer(expiryTimer, expires, &protocol.ExpireSession{})
	if ev.Tenant != "" {
		ctx.Send(a.index(info), &protocol.RegisterUserSession{SessionId: a.id, CreatedUnixNano: ev.CreatedUnixNano, MaxSessions: limit})
	}
	ctx.Reply(&protocol.RefreshIssued{Session: info, RefreshSecret: secret, Access: access})
	return nil
}

func (a *Actor) rotate(ctx actors.Context, m *protocol.RotateRefresh) error {
	if err := a.mustBeActive(ctx); err != nil {
		return err
	}
	presented := m.GetPresentedSecret()
	if len(presented) != SecretLen {
		return invalid("refresh secret must be %d bytes", SecretLen)
	}
	h := hashSecret(presented)
	now := ctx.Now().UnixNano()
	// Constant time: the presented secret is attacker-controlled.
	if subtle.ConstantTimeCompare(h, a.state.GetRefreshHash()) == 1 {
		return a.rotateCurrent(ctx, presented, h)
	}
	if g := a.state.GetGrace(); g != nil && subtle.ConstantTimeCompare(h, g.GetPresentedHash()) == 1 && now < g.GetUntilUnixNano() {
		successor, err := openSuccessor(presented, g.GetSealedSuccessor(), a.id, a.state.GetInfo().GetGeneration())
		if err != nil {
			// Only a corrupted store gets here: the hash matched, so the
			// key is right.
			return fmt.Errorf("session %s: %w", a.id, err)
		}
		// A retry writes nothing: the answer is the one already decided.
		ctx.Reply(&protocol.RefreshIssued{Session: a.Info(), RefreshSecret: successor, Access: protocol.Clone(g.GetAccess())})
		return nil
	}
	for _, spent := range a.state.GetSpentHashes() {
		if subtle.ConstantTimeCompare(h, spent) == 1 {
			info, err := a.end(ctx, &protocol.SessionRevoked{
				AtUnixNano: now, Reason: ReasonReuse, Meta: a.meta(ctx, a.state.GetInfo().GetTenant(), "identity.session.revoked.v1"),
			})
			if err != nil {
				return err
			}
			ctx.Reply(&protocol.RefreshReuseDetected{Session: info})
			return nil
		}
	}
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "refresh secret does not match")
}

func (a *Actor) rotateCurrent(ctx actors.Context, presented, presentedHash []byte) error {
	secret, err := draw(ctx.Entropy(), SecretLen, "refresh secret")
	if err != nil {
		return err
	}
	now := ctx.Now()
	ev := &protocol.RefreshRotated{
		AtUnixNano:  now.UnixNano(),
		RefreshHash: hashSecret(secret),
		Generation:  a.state.GetInfo().GetGeneration() + 1,
	}
	info := a.Info()
	info.Generation = ev.Generation
	info.LastSeenUnixNano = ev.AtUnixNano
	access, err := a.claims(ctx, info)
	if err != nil {
		return err
	}
	if grace := time.Duration(info.GetGraceNanos()); grace > 0 {
		sealed, err := sealSuccessor(presented, secret, ctx.Entropy(), a.id, ev.Generation)
		if err != nil {
			return err
		}
		until := now.Add(grace)
		ev.Grace = &protocol.RefreshGrace{
			PresentedHash: presentedHash, SealedSuccessor: sealed, UntilUnixNano: until.UnixNano(), Access: access,
		}
		ctx.SetTimer(graceTimer, until, &protocol.CloseGrace{})
	} else if a.state.GetGrace() != nil {
		ctx.CancelTimer(graceTimer)
	}
	ctx.Persist(ev)
	ctx.Reply(&protocol.RefreshIssued{Session: info, RefreshSecret: secret, Access: access})
	return nil
}

// claims decides one access token for the session as info describes it.
func (a *Actor) claims(ctx actors.Context, info *protocol.SessionInfo) (*protocol.AccessClaims, error) {
	jti, err := draw(ctx.Entropy(), JTILen, "jti")
	if err != nil {
		return nil, err
	}
	now := ctx.Now().UnixNano()
	return &protocol.AccessClaims{
		Sub:              info.GetSubject(),
		Tid:              info.GetTenant(),
		Tids:             info.GetTenantIds(),
		Jti:              base64.RawURLEncoding.EncodeToString(jti),
		Amr:              info.GetAmr(),
		Acr:              info.GetAcr(),
		ContextNodeId:    info.GetContextNodeId(),
		Aud:              info.GetClientId(),
		Scopes:           info.GetScopes(),
		Sid:              a.id,
		IssuedAtUnixNano: now,
		ExpiresUnixNano:  min(now+int64(AccessTTL), info.GetExpiresUnixNano()),
	}, nil
}

func (a *Actor) revoke(ctx actors.Context, m *protocol.RevokeSession) error {
	if !a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "session %s not found", a.id)
	}
	if len(m.GetReason()) > MaxReasonLen || !utf8.ValidString(m.GetReason()) {
		return invalid("revoke reason must be at most %d bytes of UTF-8", MaxReasonLen)
	}
	// Revoking an ended session is a no-op, so a retried revoke succeeds.
	if a.state.GetInfo().GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		ctx.Reply(a.Info())
		return nil
	}
	info, err := a.end(ctx, &protocol.SessionRevoked{
		AtUnixNano: ctx.Now().UnixNano(), Reason: m.GetReason(),
		Meta: a.meta(ctx, a.state.GetInfo().GetTenant(), "identity.session.revoked.v1"),
	})
	if err != nil {
		return err
	}
	ctx.Reply(info)
	return nil
}

// end persists the event that ends the session (revoked or expired), drops
// its timers and leaves its user's index, and returns the info after it.
func (a *Actor) end(ctx actors.Context, ev protocol.Message) (*protocol.SessionInfo, error) {
	scratch := &Actor{id: a.id, state: cloneState(a.state)}
	if err := scratch.Apply(ev); err != nil {
		return nil, err
	}
	ctx.Persist(ev)
	reason := EventReasonExpired
	if r, ok := ev.(*protocol.SessionRevoked); ok {
		reason = EventReason(r.GetReason())
	}
	if err := a.emit(ctx, a.state.GetInfo(), "identity.session.revoked.v1", reason); err != nil {
		return nil, err
	}
	if _, expired := ev.(*protocol.SessionExpired); !expired {
		ctx.CancelTimer(expiryTimer)
	}
	if a.state.GetGrace() != nil {
		ctx.CancelTimer(graceTimer)
	}
	if info := a.state.GetInfo(); info.GetTenant() != "" {
		ctx.Send(a.index(info), &protocol.UnregisterUserSession{SessionId: a.id})
	}
	return scratch.Info(), nil
}

func (a *Actor) timer(ctx actors.Context, m *protocol.TimerFired) error {
	switch m.GetName() {
	case expiryTimer, graceTimer:
	default:
		return invalid("session has no timer %q", m.GetName())
	}
	// A stale timer (session already ended) changes nothing.
	if !a.state.GetExists() || a.state.GetInfo().GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		return nil
	}
	now := ctx.Now().UnixNano()
	if m.GetName() == graceTimer {
		// A window already replaced by a later rotation, or not yet over,
		// is left alone; its own timer closes it.
		if g := a.state.GetGrace(); g != nil && now >= g.GetUntilUnixNano() {
			ctx.Persist(&protocol.RefreshGraceClosed{AtUnixNano: now})
		}
		return nil
	}
	if now < a.state.GetInfo().GetExpiresUnixNano() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "expiry timer fired early")
	}
	if _, err := a.end(ctx, &protocol.SessionExpired{
		AtUnixNano: now, Meta: a.meta(ctx, a.state.GetInfo().GetTenant(), "identity.session.expired.v1"),
	}); err != nil {
		return err
	}
	ctx.Publish("identity.session.expired", &protocol.SessionInfo{Id: a.id, Subject: a.state.GetInfo().GetSubject()})
	return nil
}

// mustBeActive also checks the clock: between the expiry instant and its
// timer's delivery the session is already over.
func (a *Actor) mustBeActive(ctx actors.Context) error {
	if !a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "session %s not found", a.id)
	}
	st := a.state.GetInfo().GetStatus()
	if st == protocol.SessionStatus_SESSION_STATUS_ACTIVE && ctx.Now().UnixNano() >= a.state.GetInfo().GetExpiresUnixNano() {
		st = protocol.SessionStatus_SESSION_STATUS_EXPIRED
	}
	if st != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "session %s is %s", a.id, statusName(st))
	}
	return nil
}

// Reasons of identity.session.revoked.v1 (SessionEventData.reason): why a
// session ended, from a fixed vocabulary so consumers can switch on it.
const (
	EventReasonLogout         = "logout"
	EventReasonRevoked        = "revoked"
	EventReasonEvicted        = "evicted"
	EventReasonRefreshReuse   = "refresh_reuse"
	EventReasonCodeReuse      = "code_reuse"
	EventReasonUserRevokedAll = "user_revoked_all"
	EventReasonExpired        = "expired"
)

// EventReason maps the free-form reason a RevokeSession carries to the
// event's vocabulary. A reason it does not know is "revoked": the revoke
// reason is caller text, and only the fixed words reach the feed.
func EventReason(revokeReason string) string {
	switch revokeReason {
	case EventReasonLogout, EventReasonRefreshReuse, EventReasonCodeReuse:
		return revokeReason
	case usersessions.ReasonCap:
		return EventReasonEvicted
	case usersessions.ReasonRevokeAll:
		return EventReasonUserRevokedAll
	default:
		return EventReasonRevoked
	}
}

// emit records a domain event about this session for its tenant's feed:
// identifiers and a reason only. A session created without a tenant (only
// tests and the simulation's workload create those) has no feed to go to
// and emits nothing.
func (a *Actor) emit(ctx actors.Context, info *protocol.SessionInfo, typ, reason string) error {
	if info.GetTenant() == "" {
		return nil
	}
	return actors.EmitEvent(ctx, typ, info.GetTenant(), a.id, &protocol.SessionEventData{
		SessionId: a.id, UserId: info.GetSubject(), ClientId: info.GetClientId(), Reason: reason,
	})
}

// meta is the envelope data of a published event. Its subject is the
// session: the user is in the event's data.
func (a *Actor) meta(ctx actors.Context, tenant, typ string) *protocol.EventMeta {
	return &protocol.EventMeta{Type: typ, Tenant: tenant, Subject: a.id, TimeUnixNano: ctx.Now().UnixNano()}
}

func (a *Actor) index(info *protocol.SessionInfo) actors.Identity {
	return actors.Identity{Kind: usersessions.KindName, ID: usersessions.ID(info.GetTenant(), info.GetSubject())}
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error {
	s := a.state
	switch ev := event.(type) {
	case *protocol.SessionCreated:
		if s.GetExists() {
			return fmt.Errorf("session %s created twice", a.id)
		}
		s.Exists = true
		s.Info = infoAfter(a.id, ev)
		s.RefreshHash = ev.GetRefreshHash()
	case *protocol.SessionTouched:
		if !s.GetExists() {
			return fmt.Errorf("touch before create")
		}
		s.Info.LastSeenUnixNano = ev.GetAtUnixNano()
	case *protocol.RefreshRotated:
		if !s.GetExists() {
			return fmt.Errorf("rotate before create")
		}
		if ev.GetGeneration() != s.Info.GetGeneration()+1 {
			return fmt.Errorf("rotation to generation %d after %d", ev.GetGeneration(), s.Info.GetGeneration())
		}
		s.Info.Generation = ev.GetGeneration()
		s.Info.LastSeenUnixNano = ev.GetAtUnixNano()
		s.SpentHashes = append(s.SpentHashes, s.RefreshHash)
		if n := len(s.SpentHashes) - MaxSpentHashes; n > 0 {
			s.SpentHashes = append([][]byte(nil), s.SpentHashes[n:]...)
		}
		s.RefreshHash = ev.GetRefreshHash()
		// A new window replaces the old one: the secret it served is now
		// two generations old.
		s.Grace = protocol.Clone(ev.GetGrace())
		if ev.GetGrace() == nil {
			s.Grace = nil
		}
	case *protocol.RefreshGraceClosed:
		if !s.GetExists() {
			return fmt.Errorf("grace closed before create")
		}
		s.Grace = nil
	case *protocol.SessionRevoked:
		if !s.GetExists() {
			return fmt.Errorf("revoke before create")
		}
		s.Info.Status = protocol.SessionStatus_SESSION_STATUS_REVOKED
		s.Info.RevokeReason = ev.GetReason()
		forget(s)
	case *protocol.SessionExpired:
		if !s.GetExists() {
			return fmt.Errorf("expire before create")
		}
		s.Info.Status = protocol.SessionStatus_SESSION_STATUS_EXPIRED
		forget(s)
	default:
		return fmt.Errorf("session: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

// forget drops every verifier of an ended session: nothing it held can be
// accepted again, so nothing needs checking.
func forget(s *protocol.SessionState) {
	s.RefreshHash = nil
	s.SpentHashes = nil
	s.Grace = nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) {
	return cloneState(a.state), nil
}

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.SessionState)
	if !ok {
		return fmt.Errorf("session: snapshot is %s, want SessionState", protocol.TypeName(snapshot))
	}
	a.state = cloneState(s)
	return nil
}

func infoAfter(id string, ev *protocol.SessionCreated) *protocol.SessionInfo {
	return &protocol.SessionInfo{
		Id:               id,
		Subject:          ev.GetSubject(),
		ClientId:         ev.GetClientId(),
		Status:           protocol.SessionStatus_SESSION_STATUS_ACTIVE,
		CreatedUnixNano:  ev.GetCreatedUnixNano(),
		ExpiresUnixNano:  ev.GetExpiresUnixNano(),
		LastSeenUnixNano: ev.GetCreatedUnixNano(),
		Tenant:           ev.GetTenant(),
		TenantIds:        append([]string(nil), ev.GetTenantIds()...),
		Amr:              append([]string(nil), ev.GetAmr()...),
		Acr:              ev.GetAcr(),
		ContextNodeId:    ev.GetContextNodeId(),
		Scopes:           append([]string(nil), ev.GetScopes()...),
		GraceNanos:       ev.GetGraceNanos(),
	}
}

// validate bounds every field a session stores and copies into tokens.
func validate(m *protocol.CreateSession) error {
	if err := text("subject", m.GetSubject(), MaxSubjectLen); err != nil {
		return err
	}
	if err := text("client_id", m.GetClientId(), MaxClientIDLen); err != nil {
		return err
	}
	if t := m.GetTenant(); t != "" {
		if err := emailindex.ValidTenant(t); err != nil {
			return err
		}
	}
	if len(m.GetTenantIds()) > MaxTenantIDs {
		return invalid("tenant_ids has %d entries, limit %d", len(m.GetTenantIds()), MaxTenantIDs)
	}
	for _, t := range m.GetTenantIds() {
		if err := emailindex.ValidTenant(t); err != nil {
			return err
		}
	}
	if err := list("amr", m.GetAmr(), MaxAMR, MaxAMRLen); err != nil {
		return err
	}
	if err := list("scopes", m.GetScopes(), MaxScopes, MaxScopeLen); err != nil {
		return err
	}
	if a := m.GetAcr(); a != "" {
		if err := text("acr", a, MaxACRLen); err != nil {
			return err
		}
	}
	if n := m.GetContextNodeId(); n != "" {
		if err := text("context_node_id", n, MaxNodeIDLen); err != nil {
			return err
		}
	}
	return nil
}

func list(field string, vs []string, maxItems, maxLen int) error {
	if len(vs) > maxItems {
		return invalid("%s has %d entries, limit %d", field, len(vs), maxItems)
	}
	for _, v := range vs {
		if err := text(field, v, maxLen); err != nil {
			return err
		}
	}
	return nil
}

// text accepts 1 to max bytes of UTF-8 without control characters: every
// one of these values ends up in a JWT or a log line.
func text(field, v string, max int) error {
	ok := v != "" && len(v) <= max && utf8.ValidString(v)
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			ok = false
		}
	}
	if !ok {
		return invalid("%s must be 1 to %d bytes of text", field, max)
	}
	return nil
}

func draw(entropy io.Reader, n int, what string) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(entropy, b); err != nil {
		return nil, fmt.Errorf("draw %s: %w", what, err)
	}
	return b, nil
}

// hashSecret is SHA-256: the secret is 256 random bits, so a fast hash is
// enough and a slow password hash would only cost latency.
func hashSecret(secret []byte) []byte {
	h := sha256.Sum256(secret)
	return h[:]
}

func statusName(s protocol.SessionStatus) string {
	switch s {
	case protocol.SessionStatus_SESSION_STATUS_REVOKED:
		return "revoked"
	case protocol.SessionStatus_SESSION_STATUS_EXPIRED:
		return "expired"
	default:
		return s.String()
	}
}

func cloneInfo(i *protocol.SessionInfo) *protocol.SessionInfo    { return protocol.Clone(i) }
func cloneState(s *protocol.SessionState) *protocol.SessionState { return protocol.Clone(s) }
