// Package usersessions is the usersessions actor: the live sessions of one
// user in one tenant, oldest first. Its id is "<tenant>/<subject>" (see
// [ID]).
//
// It exists because a cap on concurrent sessions and "sign out everywhere"
// are facts about a set of sessions, and each session is its own actor,
// possibly on another node. Sessions tell the index when they start
// (RegisterUserSession, carrying the cap to enforce) and end
// (UnregisterUserSession); the index, single-threaded like every actor, is
// the one place where "too many" is decided, so two logins racing for the
// last slot cannot both keep it.
//
// The index only ever asks sessions to revoke themselves; it never decides
// that a token is valid. A stale entry (a registration delivered after its
// session already ended) therefore costs at most a slot until it is evicted,
// and evicting it revokes a session that is already over.
package usersessions

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the usersessions kind's stable name.
const KindName = "usersessions"

// sessionKind is session.KindName; the session package imports this one
// (to register), so the name is repeated here and a test keeps them equal.
const sessionKind = "session"

// Limits.
const (
	// DefaultMaxSessions is the cap when a registration names none.
	DefaultMaxSessions = 10
	// MaxSessions bounds both any cap and the list itself, so that state,
	// snapshots and a revoke-all stay small whatever sessions claim.
	MaxSessions = 1000
	// MaxSubjectLen bounds the subject part of an id.
	MaxSubjectLen = 255
	// MaxSessionIDLen bounds a listed session id.
	MaxSessionIDLen = 128
	// MaxReasonLen bounds a revoke-all reason.
	MaxReasonLen = 200
)

// Revocation reasons the index sends.
const (
	ReasonCap = "session_cap"
	// ReasonRevokeAll is used when RevokeAllUserSessions gives none.
	ReasonRevokeAll = "revoke_all"
)

// Kind registers the usersessions actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// ID is the index id of subject in tenant. Sessions and the edge must both
// use it, so that one user maps to one index.
func ID(tenant, subject string) string { return tenant + "/" + subject }

// ValidID checks "<tenant>/<subject>": a valid tenant id and a subject of 1
// to MaxSubjectLen bytes of UTF-8 without control characters.
func ValidID(id string) error {
	tenant, subject, ok := strings.Cut(id, "/")
	if !ok || emailindex.ValidTenant(tenant) != nil || validText(subject, MaxSubjectLen) != nil {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"usersessions id must be <tenant>/<subject> (subject 1 to %d bytes, no control characters)", MaxSubjectLen)
	}
	return nil
}

// Actor is one user's session list.
type Actor struct {
	id    string
	state *protocol.UserSessionsState
}

// New returns the empty index with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.UserSessionsState{}}
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := ValidID(a.id); err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.RegisterUserSession:
		return a.register(ctx, m)
	case *protocol.UnregisterUserSession:
		if err := a.fromSession(ctx, m.GetSessionId()); err != nil {
			return err
		}
		// Unknown ids are fine: the entry may have been evicted or revoked
		// with all the others before the session's own notice arrived.
		if a.index(m.GetSessionId()) >= 0 {
			ctx.Persist(&protocol.UserSessionsRemoved{SessionIds: []string{m.GetSessionId()}, Reason: "ended"})
		}
		ctx.Reply(a.list(m.GetSessionId()))
		return nil
	case *protocol.RevokeAllUserSessions:
		reason := m.GetReason()
		if reason == "" {
			reason = ReasonRevokeAll
		}
		if err := validText(reason, MaxReasonLen); err != nil {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "reason must be 1 to %d bytes of text", MaxReasonLen)
		}
		revoked := &protocol.UserSessionList{Sessions: cloneEntries(a.state.GetSessions())}
		if len(revoked.Sessions) > 0 {
			ids := make([]string, len(revoked.Sessions))
			for i, e := range revoked.Sessions {
				ids[i] = e.GetSessionId()
			}
			ctx.Persist(&protocol.UserSessionsRemoved{SessionIds: ids, Reason: reason})
			for _, id := range ids {
				ctx.Send(actors.Identity{Kind: sessionKind, ID: id}, &protocol.RevokeSession{Reason: reason})
			}
		}
		ctx.Reply(revoked)
		return nil
	case *protocol.ListUserSessions:
		ctx.Reply(&protocol.UserSessionList{Sessions: cloneEntries(a.state.GetSessions())})
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) register(ctx actors.Context, m *protocol.RegisterUserSession) error {
	sid := m.GetSessionId()
	if err := a.fromSession(ctx, sid); err != nil {
		return err
	}
	limit := int(m.GetMaxSessions())
	if limit == 0 {
		limit = DefaultMaxSessions
	}
	if limit > MaxSessions {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session cap %d above %d", limit, MaxSessions)
	}
	if m.GetCreatedUnixNano() <= 0 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "registration needs the session's creation time")
	}
	if a.index(sid) >= 0 {
		// A redelivered registration changes nothing.
		ctx.Reply(a.list(""))
		return nil
	}
	entry := &protocol.UserSessionEntry{SessionId: sid, CreatedUnixNano: m.GetCreatedUnixNano()}
	after := insert(cloneEntries(a.state.GetSessions()), entry)
	events := []protocol.Message{&protocol.UserSessionRegistered{Entry: entry}}
	var evicted []string
	if over := len(after) - limit; over > 0 {
		// Oldest first: the newest login is the one the user is making now.
		for _, e := range after[:over] {
			evicted = append(evicted, e.GetSessionId())
		}
		events = append(events, &protocol.UserSessionsRemoved{SessionIds: evicted, Reason: ReasonCap})
		after = after[over:]
	}
	ctx.Persist(events...)
	for _, id := range evicted {
		ctx.Send(actors.Identity{Kind: sessionKind, ID: id}, &protocol.RevokeSession{Reason: ReasonCap})
	}
	ctx.Reply(&protocol.UserSessionList{Sessions: after})
	return nil
}

// fromSession checks a session id and, when an actor sent the message, that
// it is that session: one session cannot register or drop another.
func (a *Actor) fromSession(ctx actors.Context, sid string) error {
	if err := validText(sid, MaxSessionIDLen); err != nil {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "session id must be 1 to %d bytes of text", MaxSessionIDLen)
	}
	if from, ok := ctx.Sender(); ok && from != (actors.Identity{Kind: sessionKind, ID: sid}) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "%s cannot speak for session %s", from, sid)
	}
	return nil
}

func (a *Actor) index(sid string) int {
	return slices.IndexFunc(a.state.GetSessions(), func(e *protocol.UserSessionEntry) bool { return e.GetSessionId() == sid })
}

// list is the current list without the session named drop.
func (a *Actor) list(drop string) *protocol.UserSessionList {
	out := &protocol.UserSessionList{}
	for _, e := range a.state.GetSessions() {
		if e.GetSessionId() != drop {
			out.Sessions = append(out.Sessions, protocol.Clone(e))
		}
	}
	return out
}

// insert places e in creation order; ties break on the id so that every
// replay orders (and so evicts) the same way.
func insert(list []*protocol.UserSessionEntry, e *protocol.UserSessionEntry) []*protocol.UserSessionEntry {
	i, _ := slices.BinarySearchFunc(list, e, compare)
	return slices.Insert(list, i, e)
}

func compare(x, y *protocol.UserSessionEntry) int {
	if c := x.GetCreatedUnixNano() - y.GetCreatedUnixNano(); c != 0 {
		if c < 0 {
			return -1
		}
		return 1
	}
	return strings.Compare(x.GetSessionId(), y.GetSessionId())
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error {
	switch ev := event.(type) {
	case *protocol.UserSessionRegistered:
		if a.index(ev.GetEntry().GetSessionId()) >= 0 {
			return fmt.Errorf("usersessions %s: session %s registered twice", a.id, ev.GetEntry().GetSessionId())
		}
		// The cap's eviction is a separate event in the same write, so the
		// list may pass MaxSessions by one between the two.
		if len(a.state.Sessions) > MaxSessions {
			return fmt.Errorf("usersessions %s: list above %d", a.id, MaxSessions)
		}
		a.state.Sessions = insert(a.state.Sessions, protocol.Clone(ev.GetEntry()))
	case *protocol.UserSessionsRemoved:
		drop := map[string]bool{}
		for _, id := range ev.GetSessionIds() {
			drop[id] = true
		}
		a.state.Sessions = slices.DeleteFunc(a.state.Sessions, func(e *protocol.UserSessionEntry) bool { return drop[e.GetSessionId()] })
	default:
		return fmt.Errorf("usersessions: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.UserSessionsState)
	if !ok {
		return fmt.Errorf("usersessions: snapshot is %s, want UserSessionsState", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	return nil
}

func cloneEntries(es []*protocol.UserSessionEntry) []*protocol.UserSessionEntry {
	out := make([]*protocol.UserSessionEntry, len(es))
	for i, e := range es {
		out[i] = protocol.Clone(e)
	}
	return out
}

// validText accepts 1 to max bytes of UTF-8 without control characters.
func validText(s string, max int) error {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("invalid")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("invalid")
		}
	}
	return nil
}
