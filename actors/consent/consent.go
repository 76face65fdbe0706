// Package consent is the consent actor: the scopes one user allowed one
// client (id "<tenant>/<user>/<client>"), so that the consent page is shown
// again only for scopes not yet allowed.
package consent

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// KindName is the consent kind's stable name.
const KindName = "consent"

// MaxScopes bounds what one consent holds; MaxScopeLen one scope.
const (
	MaxScopes   = 64
	MaxScopeLen = 128
)

// Kind registers the consent actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// ID is the actor id of user's consent to client in tenant.
func ID(tenant, user, client string) string { return tenant + "/" + user + "/" + client }

// Actor is one user's consent to one client.
type Actor struct {
	id    string
	state *protocol.ConsentState
}

// New returns an empty consent.
func New(id string) *Actor { return &Actor{id: id, state: &protocol.ConsentState{}} }

// Covers reports whether granted includes every scope in requested that
// needs consent (openid only identifies the request; it grants nothing).
func Covers(granted, requested []string) bool {
	for _, s := range requested {
		if s != "openid" && !slices.Contains(granted, s) {
			return false
		}
	}
	return true
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if strings.Count(a.id, "/") != 2 || strings.Contains(a.id, "//") || strings.HasPrefix(a.id, "/") || strings.HasSuffix(a.id, "/") {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "consent id must be <tenant>/<user>/<client>")
	}
	switch m := msg.(type) {
	case *protocol.GetConsent:
		ctx.Reply(protocol.Clone(a.state))
		return nil
	case *protocol.GrantConsent:
		add := []string{}
		for _, s := range m.GetScopes() {
			if s == "" || len(s) > MaxScopeLen || !utf8.ValidString(s) || strings.ContainsAny(s, " \t\r\n") {
				return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "scope must be 1 to %d bytes without spaces", MaxScopeLen)
			}
			if !slices.Contains(a.state.GetScopes(), s) && !slices.Contains(add, s) {
				add = append(add, s)
			}
		}
		if len(add) == 0 {
			ctx.Reply(protocol.Clone(a.state)) // nothing new: nothing written
			return nil
		}
		if len(a.state.GetScopes())+len(add) > MaxScopes {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "consent holds at most %d scopes", MaxScopes)
		}
		ev := &protocol.ConsentGranted{Scopes: add, AtUnixNano: ctx.Now().UnixNano()}
		ctx.Persist(ev)
		out := protocol.Clone(a.state)
		out.Scopes = sortedUnion(out.Scopes, add)
		out.GrantedUnixNano = ev.AtUnixNano
		ctx.Reply(out)
		return nil
	case *protocol.RevokeConsent:
		if len(a.state.GetScopes()) > 0 {
			ctx.Persist(&protocol.ConsentRevoked{AtUnixNano: ctx.Now().UnixNano()})
		}
		ctx.Reply(&protocol.ConsentState{})
		return nil
	}
	return actors.ErrUnknownMessage(KindName, msg)
}

func sortedUnion(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Apply implements actors.Actor.
func (a *Actor) Apply(event protocol.Message) error {
	switch e := event.(type) {
	case *protocol.ConsentGranted:
		a.state.Scopes = sortedUnion(a.state.Scopes, e.GetScopes())
		a.state.GrantedUnixNano = e.GetAtUnixNano()
	case *protocol.ConsentRevoked:
		a.state = &protocol.ConsentState{}
	default:
		return fmt.Errorf("consent: unknown event %T", event)
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.ConsentState)
	if !ok {
		return fmt.Errorf("consent: snapshot is %T, want ConsentState", snapshot)
	}
	a.state = protocol.Clone(s)
	return nil
}
