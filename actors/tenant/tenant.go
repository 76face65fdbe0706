// Package tenant is the tenant actor: one tenant (actor id = tenant id), its
// hierarchy of nodes and its memberships, each a set of roles one user holds
// at one node.
//
// The hierarchy is strict (tenant > facility > department > ward) so that a
// node's type alone says where it may hang and what may hang off it; the
// license resolver and the edge rely on a ward always sitting three levels
// below the root. The root node's id is the tenant id.
//
// Roles apply down the tree: a nurse granted at a department is a nurse at
// every ward of it. [HasRole] answers that question from the state, and the
// CheckRole message asks it of a live actor.
//
// The tenant actor keeps the per-user index (actors/usertenants) current by
// sending it TenantMembershipChanged when a user gets a first role in the
// tenant or loses the last one, stamped with the tenant's version so that a
// late message cannot undo a newer one.
package tenant

import (
	"fmt"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/usertenants"
	"github.com/wardhq/ward/protocol"
)

// KindName is the tenant kind's stable name.
const KindName = "tenant"

// Bounds. Every tenant's log is replayed on activation and its snapshot read
// whole, so both are kept to a size one step can handle.
const (
	MaxNameLen   = 200 // bytes
	MaxNodeIDLen = 128 // bytes
	MaxSlugLen   = 63  // a DNS label
	MaxNodes     = 10_000
	MaxGrants    = 100_000 // (user, node, role) triples
)

// Kind registers the tenant actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one tenant.
type Actor struct {
	id    string
	state *State
}

// New returns the not yet created tenant with the given id.
func New(id string) *Actor { return &Actor{id: id, state: newState(id)} }

// State is the actor's current state, for [HasRole]. The caller must not
// keep it across steps.
func (a *Actor) State() *State { return a.state }

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := emailindex.ValidTenant(a.id); err != nil {
		return err
	}
	if _, ok := msg.(*protocol.CreateTenant); !ok && !a.state.created {
		switch msg.(type) {
		case *protocol.AddNode, *protocol.RenameNode, *protocol.RemoveNode, *protocol.GrantRole, *protocol.RevokeRole,
			*protocol.ListMemberships, *protocol.GetAccessContext, *protocol.CheckRole, *protocol.GetTree:
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "tenant %s does not exist", a.id)
		}
	}
	switch m := msg.(type) {
	case *protocol.CreateTenant:
		return a.create(ctx, m)
	case *protocol.AddNode:
		return a.addNode(ctx, m)
	case *protocol.RenameNode:
		return a.renameNode(ctx, m)
	case *protocol.RemoveNode:
		return a.removeNode(ctx, m)
	case *protocol.GrantRole:
		return a.grant(ctx, m)
	case *protocol.RevokeRole:
		return a.revoke(ctx, m)
	case *protocol.ListMemberships:
		return a.listMemberships(ctx, m)
	case *protocol.GetAccessContext:
		return a.accessContext(ctx, m)
	case *protocol.CheckRole:
		return a.checkRole(ctx, m)
	case *protocol.GetTree:
		ctx.Reply(&protocol.TenantTree{TenantId: a.id, Slug: a.state.slug, Nodes: a.state.tree()})
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

func (a *Actor) meta(ctx actors.Context, typ, subject string) *protocol.EventMeta {
	return &protocol.EventMeta{Type: typ, Tenant: a.id, Subject: subject, TimeUnixNano: ctx.Now().UnixNano()}
}

// emit records a domain event of this tenant for its feed. Tenant and node
// events carry no payload: the subject (the tenant or node id) is the
// identifier, and names stay in the tenant's own state.
func (a *Actor) emit(ctx actors.Context, typ, subject string, data protocol.Message) error {
	return actors.EmitEvent(ctx, typ, a.id, subject, data)
}

// emitMembership records a role granted or revoked: the subject is the
// user, the data says which role at which node.
func (a *Actor) emitMembership(ctx actors.Context, typ, user, nodeID string, role protocol.Role) error {
	return a.emit(ctx, typ, user, &protocol.MembershipEventData{UserId: user, NodeId: nodeID, Roles: []string{RoleName(role)}})
}

// RoleName is a role's name in events and messages: "doctor" for
// ROLE_DOCTOR.
func RoleName(r protocol.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func (a *Actor) create(ctx actors.Context, m *protocol.CreateTenant) error {
	if a.state.created {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "tenant %s already exists", a.id)
	}
	name, err := validName("name", m.GetName())
	if err != nil {
		return err
	}
	slug, err := validSlug(m.GetSlug())
	if err != nil {
		return err
	}
	ev := &protocol.TenantCreated{Meta: a.meta(ctx, "identity.tenant.created.v1", a.id), Name: name, Slug: slug}
	ctx.Persist(ev)
	if err := a.emit(ctx, "identity.tenant.created.v1", a.id, nil); err != nil {
		return err
	}
	ctx.Reply(&protocol.TenantInfo{TenantId: a.id, Name: name, Slug: slug, CreatedUnixNano: ev.Meta.TimeUnixNano, Nodes: 1})
	return nil
}

// existing returns the node called id, checking the id's shape first so the
// caller learns whether it asked for a bad id or a missing one.
func (a *Actor) existing(field, id string) (*node, error) {
	if err := validNodeID(field, id); err != nil {
		return nil, err
	}
	n := a.state.nodes[id]
	if n == nil {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "tenant %s has no node %q", a.id, id)
	}
	return n, nil
}

func (a *Actor) addNode(ctx actors.Context, m *protocol.AddNode) error {
	if err := validNodeID("node_id", m.GetNodeId()); err != nil {
		return err
	}
	typ := m.GetType()
	switch typ {
	case protocol.NodeType_NODE_TYPE_FACILITY, protocol.NodeType_NODE_TYPE_DEPARTMENT, protocol.NodeType_NODE_TYPE_WARD:
	case protocol.NodeType_NODE_TYPE_TENANT:
		return invalid("type: only the root, created with the tenant, is of type tenant")
	default:
		return invalid("type must be facility, department or ward")
	}
	name, err := validName("name", m.GetName())
	if err != nil {
		return err
	}
	parent, err := a.existing("parent_id", m.GetParentId())
	if err != nil {
		return err
	}
	want := &protocol.TenantNode{NodeId: m.GetNodeId(), ParentId: parent.id, Type: typ, Name: name}
	if n := a.state.nodes[m.GetNodeId()]; n != nil {
		if protocol.Equal(nodeProto(n), want) {
			// A retried add succeeds without a write.
			ctx.Reply(want)
			return nil
		}
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "tenant %s already has a node %q", a.id, m.GetNodeId())
	}
	if childType(parent.typ) != typ {
		return precondition("a %s's parent must be %s; %q is %s", typeName(typ), parentRule(typ), parent.id, article(parent.typ))
	}
	if len(a.state.nodes) >= MaxNodes {
		return precondition("tenant %s has %d nodes, the most it may have", a.id, MaxNodes)
	}
	ctx.Persist(&protocol.TenantNodeAdded{
		Meta:   a.meta(ctx, "identity.tenant.node_added.v1", want.NodeId),
		NodeId: want.NodeId, ParentId: want.ParentId, Type: typ, Name: name,
	})
	if err := a.emit(ctx, "identity.tenant.node_added.v1", want.NodeId, nil); err != nil {
		return err
	}
	ctx.Reply(want)
	return nil
}

func (a *Actor) renameNode(ctx actors.Context, m *protocol.RenameNode) error {
	n, err := a.existing("node_id", m.GetNodeId())
	if err != nil {
		return err
	}
	name, err := validName("name", m.GetName())
	if err != nil {
		return err
	}
	out := nodeProto(n)
	out.Name = name
	if n.name != name {
		ctx.Persist(&protocol.TenantNodeRenamed{Meta: a.meta(ctx, "identity.tenant.node_renamed.v1", n.id), NodeId: n.id, Name: name})
		if err := a.emit(ctx, "identity.tenant.node_renamed.v1", n.id, nil); err != nil {
			return err
		}
	}
	ctx.Reply(out)
	return nil
}

func (a *Actor) removeNode(ctx actors.Context, m *protocol.RemoveNode) error {
	n, err := a.existing("node_id", m.GetNodeId())
	if err != nil {
		return err
	}
	switch {
	case n.parent == "":
		return precondition("the tenant root %q cannot be removed", n.id)
	case len(n.children) > 0:
		return precondition("node %q has %d child node(s); remove them first", n.id, len(n.children))
	case n.grants > 0:
		return precondition("node %q has %d role grant(s); revoke them first", n.id, n.grants)
	}
	ctx.Persist(&protocol.TenantNodeRemoved{Meta: a.meta(ctx, "identity.tenant.node_removed.v1", n.id), NodeId: n.id})
	if err := a.emit(ctx, "identity.tenant.node_removed.v1", n.id, nil); err != nil {
		return err
	}
	ctx.Reply(nodeProto(n))
	return nil
}

// membershipArgs checks the (user, node, role) of a grant, revoke or check.
func (a *Actor) membershipArgs(user, nodeID string, role protocol.Role) (*node, error) {
	if err := validUser(user); err != nil {
		return nil, err
	}
	if bit(role) == 0 {
		return nil, invalid("role must be one of admin, doctor, nurse, supervisor, pharmacist, kyc_verifier, patient")
	}
	return a.existing("node_id", nodeID)
}

func (a *Actor) grant(ctx actors.Context, m *protocol.GrantRole) error {
	n, err := a.membershipArgs(m.GetUser(), m.GetNodeId(), m.GetRole())
	if err != nil {
		return err
	}
	user := m.GetUser()
	mine := a.state.grants[user]
	if mine[n.id].has(m.GetRole()) {
		// A retried grant succeeds without a write.
		ctx.Reply(a.userMemberships(user, mine))
		return nil
	}
	if a.state.grantCount >= MaxGrants {
		return precondition("tenant %s has %d role grants, the most it may have", a.id, MaxGrants)
	}
	ctx.Persist(&protocol.MembershipGranted{
		Meta: a.meta(ctx, "identity.membership.granted.v1", user),
		User: user, NodeId: n.id, NodeType: n.typ, Role: m.GetRole(),
	})
	if err := a.emitMembership(ctx, "identity.membership.granted.v1", user, n.id, m.GetRole()); err != nil {
		return err
	}
	if len(mine) == 0 {
		a.sendIndex(ctx, user, true)
	}
	after := copyGrants(mine)
	after[n.id] = after[n.id].with(m.GetRole())
	ctx.Reply(a.userMemberships(user, after))
	return nil
}

func (a *Actor) revoke(ctx actors.Context, m *protocol.RevokeRole) error {
	n, err := a.membershipArgs(m.GetUser(), m.GetNodeId(), m.GetRole())
	if err != nil {
		return err
	}
	user := m.GetUser()
	mine := a.state.grants[user]
	if !mine[n.id].has(m.GetRole()) {
		// Nothing to take back (a retry, or inherited from above): no write.
		ctx.Reply(a.userMemberships(user, mine))
		return nil
	}
	ctx.Persist(&protocol.MembershipRevoked{
		Meta: a.meta(ctx, "identity.membership.revoked.v1", user),
		User: user, NodeId: n.id, NodeType: n.typ, Role: m.GetRole(),
	})
	if err := a.emitMembership(ctx, "identity.membership.revoked.v1", user, n.id, m.GetRole()); err != nil {
		return err
	}
	after := copyGrants(mine)
	if after[n.id] = after[n.id].without(m.GetRole()); after[n.id] == 0 {
		delete(after, n.id)
	}
	if len(after) == 0 {
		a.sendIndex(ctx, user, false)
	}
	ctx.Reply(a.userMemberships(user, after))
	return nil
}

// sendIndex tells the user's usertenants actor about a first grant or a
// last revoke. Each step persists exactly one event before it, so the
// version the tenant will be at is one more than now.
func (a *Actor) sendIndex(ctx actors.Context, user string, member bool) {
	ctx.Send(actors.Identity{Kind: usertenants.KindName, ID: user},
		&protocol.TenantMembershipChanged{TenantId: a.id, Member: member, Version: a.state.version + 1})
}

func copyGrants(g map[string]roleSet) map[string]roleSet {
	out := make(map[string]roleSet, len(g)+1)
	for k, v := range g {
		out[k] = v
	}
	return out
}

func (a *Actor) userMemberships(user string, grants map[string]roleSet) *protocol.UserMemberships {
	return &protocol.UserMemberships{TenantId: a.id, User: user, Memberships: a.state.memberships(grants)}
}

func (a *Actor) listMemberships(ctx actors.Context, m *protocol.ListMemberships) error {
	if err := validUser(m.GetUser()); err != nil {
		return err
	}
	ctx.Reply(a.userMemberships(m.GetUser(), a.state.grants[m.GetUser()]))
	return nil
}

func (a *Actor) accessContext(ctx actors.Context, m *protocol.GetAccessContext) error {
	user := m.GetUser()
	if err := validUser(user); err != nil {
		return err
	}
	ctx.Reply(&protocol.AccessContext{
		TenantId:    a.id,
		TenantName:  a.state.nodes[a.id].name,
		TenantSlug:  a.state.slug,
		User:        user,
		Memberships: a.state.memberships(a.state.grants[user]),
		Effective:   a.state.effectiveAll(user),
	})
	return nil
}

func (a *Actor) checkRole(ctx actors.Context, m *protocol.CheckRole) error {
	n, err := a.membershipArgs(m.GetUser(), m.GetNodeId(), m.GetRole())
	if err != nil {
		return err
	}
	at, ok := a.state.grantedAt(m.GetUser(), n.id, m.GetRole())
	ctx.Reply(&protocol.RoleCheck{Allowed: ok, GrantedAt: at})
	return nil
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error { return a.state.apply(event) }

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return a.state.snapshot(), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	snap, ok := snapshot.(*protocol.TenantSnapshot)
	if !ok {
		return fmt.Errorf("tenant: snapshot is %s, want TenantSnapshot", protocol.TypeName(snapshot))
	}
	s, err := restore(a.id, snap)
	if err != nil {
		return err
	}
	a.state = s
	return nil
}
