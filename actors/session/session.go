// Package session is the session actor: one login of one subject at one
// client. It holds the hash of the current refresh secret (never the secret),
// rotates it on use, and ends by revocation or by its durable expiry timer.
//
// The identity issue grows this actor (refresh families, grace windows,
// per-user caps); the rules here are the core those build on.
package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// KindName is the session kind's stable name.
const KindName = "session"

// SecretLen is the refresh secret length in bytes (256 bits).
const SecretLen = 32

// MaxTTL bounds a session's lifetime; longer requests are invalid.
const MaxTTL = 30 * 24 * time.Hour

const expiryTimer = "expiry"

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
		if err := a.mustBeActive(); err != nil {
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

func (a *Actor) create(ctx actors.Context, m *protocol.CreateSession) error {
	if a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "session %s already exists", a.id)
	}
	if m.GetSubject() == "" || m.GetClientId() == "" {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session needs a subject and a client")
	}
	ttl := time.Duration(m.GetTtlNanos())
	if ttl <= 0 || ttl > MaxTTL {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session ttl %s outside (0, %s]", ttl, MaxTTL)
	}
	secret, err := newSecret(ctx.Entropy())
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
	}
	ctx.Persist(ev)
	ctx.SetTimer(expiryTimer, expires, &protocol.ExpireSession{})
	ctx.Reply(&protocol.RefreshIssued{Session: infoAfter(a.id, ev), RefreshSecret: secret})
	return nil
}

func (a *Actor) rotate(ctx actors.Context, m *protocol.RotateRefresh) error {
	if err := a.mustBeActive(); err != nil {
		return err
	}
	// Constant time: the presented secret is attacker-controlled.
	if subtle.ConstantTimeCompare(hashSecret(m.GetPresentedSecret()), a.state.GetRefreshHash()) != 1 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "refresh secret does not match")
	}
	secret, err := newSecret(ctx.Entropy())
	if err != nil {
		return err
	}
	ev := &protocol.RefreshRotated{
		AtUnixNano:  ctx.Now().UnixNano(),
		RefreshHash: hashSecret(secret),
		Generation:  a.state.GetInfo().GetGeneration() + 1,
	}
	ctx.Persist(ev)
	info := a.Info()
	info.Generation = ev.Generation
	info.LastSeenUnixNano = ev.AtUnixNano
	ctx.Reply(&protocol.RefreshIssued{Session: info, RefreshSecret: secret})
	return nil
}

func (a *Actor) revoke(ctx actors.Context, m *protocol.RevokeSession) error {
	if !a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "session %s not found", a.id)
	}
	// Revoking an ended session is a no-op, so a retried revoke succeeds.
	if a.state.GetInfo().GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		ctx.Reply(a.Info())
		return nil
	}
	ev := &protocol.SessionRevoked{AtUnixNano: ctx.Now().UnixNano(), Reason: m.GetReason()}
	ctx.Persist(ev)
	ctx.CancelTimer(expiryTimer)
	info := a.Info()
	info.Status = protocol.SessionStatus_SESSION_STATUS_REVOKED
	info.RevokeReason = ev.Reason
	ctx.Reply(info)
	return nil
}

func (a *Actor) timer(ctx actors.Context, m *protocol.TimerFired) error {
	if m.GetName() != expiryTimer {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session has no timer %q", m.GetName())
	}
	// A stale expiry (session already ended) changes nothing.
	if !a.state.GetExists() || a.state.GetInfo().GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		return nil
	}
	if ctx.Now().UnixNano() < a.state.GetInfo().GetExpiresUnixNano() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "expiry timer fired early")
	}
	ctx.Persist(&protocol.SessionExpired{AtUnixNano: ctx.Now().UnixNano()})
	ctx.Publish("identity.session.expired", &protocol.SessionInfo{Id: a.id, Subject: a.state.GetInfo().GetSubject()})
	return nil
}

func (a *Actor) mustBeActive() error {
	if !a.state.GetExists() {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "session %s not found", a.id)
	}
	switch st := a.state.GetInfo().GetStatus(); st {
	case protocol.SessionStatus_SESSION_STATUS_ACTIVE:
		return nil
	default:
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "session %s is %s", a.id, statusName(st))
	}
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
		s.RefreshHash = ev.GetRefreshHash()
	case *protocol.SessionRevoked:
		if !s.GetExists() {
			return fmt.Errorf("revoke before create")
		}
		s.Info.Status = protocol.SessionStatus_SESSION_STATUS_REVOKED
		s.Info.RevokeReason = ev.GetReason()
		s.RefreshHash = nil
	case *protocol.SessionExpired:
		if !s.GetExists() {
			return fmt.Errorf("expire before create")
		}
		s.Info.Status = protocol.SessionStatus_SESSION_STATUS_EXPIRED
		s.RefreshHash = nil
	default:
		return fmt.Errorf("session: unknown event type %s", protocol.TypeName(event))
	}
	return nil
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
	}
}

func newSecret(entropy io.Reader) ([]byte, error) {
	b := make([]byte, SecretLen)
	if _, err := io.ReadFull(entropy, b); err != nil {
		return nil, fmt.Errorf("draw refresh secret: %w", err)
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
