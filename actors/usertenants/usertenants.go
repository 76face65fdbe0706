// Package usertenants is the usertenants actor: the tenants one user belongs
// to (actor id = the user's subject, a lowercase uuid), for the `tids` claim
// of access tokens.
//
// Memberships live in the tenant actors, one per tenant; finding a user's
// tenants by asking each would touch every tenant. Instead each tenant actor
// tells this index when the user gets a first role there or loses the last
// one. Those messages carry the tenant's version, and the index ignores a
// message not newer than what it has for that tenant, so a late or
// re-delivered message cannot undo a newer one. That is why a tenant the
// user left is remembered (as not member) rather than forgotten; the oldest
// such entries are dropped past MaxLeft to keep the state bounded.
package usertenants

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the usertenants kind's stable name.
const KindName = "usertenants"

// TenantKind is the kind whose actors may change the index. It is spelled
// out rather than imported: the tenant package imports this one.
const TenantKind = "tenant"

const (
	// MaxTenants bounds the tenants one user belongs to; it also bounds the
	// `tids` claim.
	MaxTenants = 1000
	// MaxLeft bounds the remembered tenants the user has left.
	MaxLeft = 1000
)

// Kind registers the usertenants actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one user's tenant index.
type Actor struct {
	id      string
	entries map[string]*protocol.UserTenantEntry
	members int
}

// New returns the empty index of the given user.
func New(id string) *Actor { return &Actor{id: id, entries: map[string]*protocol.UserTenantEntry{}} }

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if !emailindex.ValidUUID(a.id) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "usertenants id must be a lowercase uuid")
	}
	switch m := msg.(type) {
	case *protocol.TenantMembershipChanged:
		return a.change(ctx, m)
	case *protocol.ListTenants:
		ctx.Reply(a.list())
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) change(ctx actors.Context, m *protocol.TenantMembershipChanged) error {
	tenant := m.GetTenantId()
	if err := emailindex.ValidTenant(tenant); err != nil {
		return err
	}
	if m.GetVersion() == 0 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "version must be positive")
	}
	// Only the tenant itself may say who belongs to it. Messages from the
	// edge or host (no sender) are trusted: they are our own code.
	if from, ok := ctx.Sender(); ok && from != (actors.Identity{Kind: TenantKind, ID: tenant}) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "%s may not change memberships of tenant %s", from, tenant)
	}
	cur := a.entries[tenant]
	if cur != nil && cur.GetVersion() >= m.GetVersion() {
		// Stale or re-delivered: what we hold is at least as new.
		ctx.Reply(a.list())
		return nil
	}
	if m.GetMember() && !cur.GetMember() && a.members >= MaxTenants {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "user %s already belongs to %d tenants, the most one may", a.id, MaxTenants)
	}
	ev := &protocol.UserTenantChanged{TenantId: tenant, Member: m.GetMember(), Version: m.GetVersion(), AtUnixNano: ctx.Now().UnixNano()}
	ctx.Persist(ev)
	after := a.clone()
	if err := after.Apply(ev); err != nil {
		return err
	}
	ctx.Reply(after.list())
	return nil
}

func (a *Actor) clone() *Actor {
	c := New(a.id)
	for k, e := range a.entries {
		c.entries[k] = protocol.Clone(e)
	}
	c.members = a.members
	return c
}

func (a *Actor) list() *protocol.UserTenantList {
	out := &protocol.UserTenantList{User: a.id, TenantIds: []string{}}
	for id, e := range a.entries {
		if e.GetMember() {
			out.TenantIds = append(out.TenantIds, id)
		}
	}
	slices.Sort(out.TenantIds)
	return out
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error {
	ev, ok := event.(*protocol.UserTenantChanged)
	if !ok {
		return fmt.Errorf("usertenants: unknown event type %s", protocol.TypeName(event))
	}
	cur := a.entries[ev.GetTenantId()]
	if cur != nil && cur.GetVersion() >= ev.GetVersion() {
		return fmt.Errorf("usertenants %s: tenant %s version %d after %d", a.id, ev.GetTenantId(), ev.GetVersion(), cur.GetVersion())
	}
	if cur.GetMember() {
		a.members--
	}
	if ev.GetMember() {
		a.members++
	}
	a.entries[ev.GetTenantId()] = &protocol.UserTenantEntry{
		TenantId: ev.GetTenantId(), Member: ev.GetMember(), Version: ev.GetVersion(), AtUnixNano: ev.GetAtUnixNano(),
	}
	a.trimLeft()
	return nil
}

// trimLeft forgets the oldest left tenants beyond MaxLeft (ties by id, so
// every replay forgets the same ones). A message older than a forgotten
// entry could then be taken; by that time it is long delivered.
func (a *Actor) trimLeft() {
	left := len(a.entries) - a.members
	if left <= MaxLeft {
		return
	}
	var gone []*protocol.UserTenantEntry
	for _, e := range a.entries {
		if !e.GetMember() {
			gone = append(gone, e)
		}
	}
	slices.SortFunc(gone, func(x, y *protocol.UserTenantEntry) int {
		if x.GetAtUnixNano() != y.GetAtUnixNano() {
			if x.GetAtUnixNano() < y.GetAtUnixNano() {
				return -1
			}
			return 1
		}
		return strings.Compare(x.GetTenantId(), y.GetTenantId())
	})
	for _, e := range gone[:left-MaxLeft] {
		delete(a.entries, e.GetTenantId())
	}
}

// Snapshot implements actors.Actor: entries sorted by tenant id.
func (a *Actor) Snapshot() (protocol.Message, error) {
	s := &protocol.UserTenantsSnapshot{}
	for _, e := range a.entries {
		s.Entries = append(s.Entries, protocol.Clone(e))
	}
	slices.SortFunc(s.Entries, func(x, y *protocol.UserTenantEntry) int { return strings.Compare(x.GetTenantId(), y.GetTenantId()) })
	return s, nil
}

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.UserTenantsSnapshot)
	if !ok {
		return fmt.Errorf("usertenants: snapshot is %s, want UserTenantsSnapshot", protocol.TypeName(snapshot))
	}
	fresh := New(a.id)
	for _, e := range s.GetEntries() {
		if _, dup := fresh.entries[e.GetTenantId()]; dup || e.GetTenantId() == "" {
			return fmt.Errorf("usertenants %s: snapshot lists tenant %q twice or empty", a.id, e.GetTenantId())
		}
		fresh.entries[e.GetTenantId()] = protocol.Clone(e)
		if e.GetMember() {
			fresh.members++
		}
	}
	a.entries, a.members = fresh.entries, fresh.members
	return nil
}
