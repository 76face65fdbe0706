package tenant

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardhq/ward/protocol"
)

// roleSet holds roles as bits (1 << Role), so inherit-down is an OR along
// the ancestor chain.
type roleSet uint16

// bit is 0 for anything outside the closed set, so an unknown role is never
// held and a negative enum value cannot make a shift panic.
func bit(role protocol.Role) roleSet {
	if role < protocol.Role_ROLE_ADMIN || role > maxRole {
		return 0
	}
	return 1 << role
}

func (r roleSet) has(role protocol.Role) bool { return bit(role) != 0 && r&bit(role) != 0 }

func (r roleSet) with(role protocol.Role) roleSet    { return r | bit(role) }
func (r roleSet) without(role protocol.Role) roleSet { return r &^ bit(role) }

// list returns the roles ascending, the order every reply and snapshot uses.
func (r roleSet) list() []protocol.Role {
	var out []protocol.Role
	for role := protocol.Role_ROLE_ADMIN; role <= maxRole; role++ {
		if r.has(role) {
			out = append(out, role)
		}
	}
	return out
}

func (r roleSet) count() int { return len(r.list()) }

const maxRole = protocol.Role_ROLE_PATIENT

type node struct {
	id, parent string
	typ        protocol.NodeType
	name       string
	children   map[string]struct{}
	// grants counts (user, role) pairs granted here; a node with any cannot
	// be removed.
	grants int
}

// State is one tenant's state, indexed for the questions the actor answers
// on every request (who holds what where, what is above a node). It is built
// only by applying events or restoring a snapshot; Snapshot is its canonical,
// sorted form.
type State struct {
	tenant    string
	created   bool
	slug      string
	createdAt int64
	version   uint64
	nodes     map[string]*node
	// grants: user -> node -> roles granted there directly.
	grants     map[string]map[string]roleSet
	grantCount int
}

func newState(tenant string) *State {
	return &State{tenant: tenant, nodes: map[string]*node{}, grants: map[string]map[string]roleSet{}}
}

// HasRole reports whether user may act as role at nodeID: whether role is
// granted to user at nodeID or at any ancestor of it (inherit-down). An
// unknown node or user has no roles.
func HasRole(s *State, user, nodeID string, role protocol.Role) bool {
	_, ok := s.grantedAt(user, nodeID, role)
	return ok
}

// grantedAt returns the nearest node at or above nodeID where user holds
// role.
func (s *State) grantedAt(user, nodeID string, role protocol.Role) (string, bool) {
	mine := s.grants[user]
	if mine == nil {
		return "", false
	}
	for n := s.nodes[nodeID]; n != nil; n = s.nodes[n.parent] {
		if mine[n.id].has(role) {
			return n.id, true
		}
	}
	return "", false
}

// effective is the union of user's roles at nodeID and its ancestors.
func (s *State) effective(user, nodeID string) roleSet {
	var r roleSet
	mine := s.grants[user]
	for n := s.nodes[nodeID]; n != nil; n = s.nodes[n.parent] {
		r |= mine[n.id]
	}
	return r
}

// path is the node ids from the root down to nodeID.
func (s *State) path(nodeID string) []string {
	var p []string
	for n := s.nodes[nodeID]; n != nil; n = s.nodes[n.parent] {
		p = append(p, n.id)
	}
	slices.Reverse(p)
	return p
}

// comparePaths orders nodes in pre-order with siblings by id: a parent
// comes before its children, and a subtree stays together.
func comparePaths(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

func (s *State) nodeRoles(nodeID string, roles roleSet) *protocol.NodeRoles {
	n := s.nodes[nodeID]
	return &protocol.NodeRoles{NodeId: n.id, Type: n.typ, Name: n.name, Path: s.path(n.id), Roles: roles.list()}
}

func sortByPath(list []*protocol.NodeRoles) {
	slices.SortFunc(list, func(a, b *protocol.NodeRoles) int { return comparePaths(a.GetPath(), b.GetPath()) })
}

// memberships lists grants (a user's node -> roles map) in path order.
func (s *State) memberships(grants map[string]roleSet) []*protocol.NodeRoles {
	out := make([]*protocol.NodeRoles, 0, len(grants))
	for id, roles := range grants {
		out = append(out, s.nodeRoles(id, roles))
	}
	sortByPath(out)
	return out
}

// effectiveAll lists every node where user holds a role, directly or from
// above, with the union of those roles.
func (s *State) effectiveAll(user string) []*protocol.NodeRoles {
	seen := map[string]bool{}
	var out []*protocol.NodeRoles
	var walk func(id string)
	walk = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		out = append(out, s.nodeRoles(id, s.effective(user, id)))
		for c := range s.nodes[id].children {
			walk(c)
		}
	}
	for id := range s.grants[user] {
		walk(id)
	}
	sortByPath(out)
	return out
}

// tree lists every node in pre-order, siblings by id.
func (s *State) tree() []*protocol.TenantNode {
	var out []*protocol.TenantNode
	var walk func(id string)
	walk = func(id string) {
		n := s.nodes[id]
		out = append(out, nodeProto(n))
		kids := make([]string, 0, len(n.children))
		for c := range n.children {
			kids = append(kids, c)
		}
		slices.Sort(kids)
		for _, c := range kids {
			walk(c)
		}
	}
	if s.created {
		walk(s.tenant)
	}
	return out
}

func nodeProto(n *node) *protocol.TenantNode {
	return &protocol.TenantNode{NodeId: n.id, ParentId: n.parent, Type: n.typ, Name: n.name}
}

// childType is the only type a node's children may have.
func childType(t protocol.NodeType) protocol.NodeType {
	switch t {
	case protocol.NodeType_NODE_TYPE_TENANT:
		return protocol.NodeType_NODE_TYPE_FACILITY
	case protocol.NodeType_NODE_TYPE_FACILITY:
		return protocol.NodeType_NODE_TYPE_DEPARTMENT
	case protocol.NodeType_NODE_TYPE_DEPARTMENT:
		return protocol.NodeType_NODE_TYPE_WARD
	default:
		return protocol.NodeType_NODE_TYPE_UNSPECIFIED
	}
}

// apply changes the state by one event. It checks that the event can follow
// the state (the log and the code must agree) but not the input bounds,
// which are Receive's: a log written under larger bounds must still replay.
func (s *State) apply(event protocol.Message) error {
	if _, ok := event.(*protocol.TenantCreated); !ok && !s.created {
		return fmt.Errorf("tenant %s: %s before creation", s.tenant, protocol.TypeName(event))
	}
	switch ev := event.(type) {
	case *protocol.TenantCreated:
		if s.created {
			return fmt.Errorf("tenant %s: created twice", s.tenant)
		}
		s.created = true
		s.slug = ev.GetSlug()
		s.createdAt = ev.GetMeta().GetTimeUnixNano()
		s.nodes[s.tenant] = &node{id: s.tenant, typ: protocol.NodeType_NODE_TYPE_TENANT, name: ev.GetName(), children: map[string]struct{}{}}
	case *protocol.TenantNodeAdded:
		if err := s.addNode(ev.GetNodeId(), ev.GetParentId(), ev.GetType(), ev.GetName()); err != nil {
			return err
		}
	case *protocol.TenantNodeRenamed:
		n := s.nodes[ev.GetNodeId()]
		if n == nil {
			return fmt.Errorf("tenant %s: rename of unknown node %q", s.tenant, ev.GetNodeId())
		}
		n.name = ev.GetName()
	case *protocol.TenantNodeRemoved:
		n := s.nodes[ev.GetNodeId()]
		if n == nil || n.parent == "" || len(n.children) > 0 || n.grants > 0 {
			return fmt.Errorf("tenant %s: node %q cannot be removed", s.tenant, ev.GetNodeId())
		}
		delete(s.nodes[n.parent].children, n.id)
		delete(s.nodes, n.id)
	case *protocol.MembershipGranted:
		if err := s.grant(ev.GetUser(), ev.GetNodeId(), roleSet(0).with(ev.GetRole())); err != nil {
			return err
		}
	case *protocol.MembershipRevoked:
		n := s.nodes[ev.GetNodeId()]
		held := s.grants[ev.GetUser()][ev.GetNodeId()]
		if n == nil || !held.has(ev.GetRole()) {
			return fmt.Errorf("tenant %s: revoke of a role not granted", s.tenant)
		}
		if held = held.without(ev.GetRole()); held == 0 {
			delete(s.grants[ev.GetUser()], n.id)
			if len(s.grants[ev.GetUser()]) == 0 {
				delete(s.grants, ev.GetUser())
			}
		} else {
			s.grants[ev.GetUser()][n.id] = held
		}
		n.grants--
		s.grantCount--
	default:
		return fmt.Errorf("tenant: unknown event type %s", protocol.TypeName(event))
	}
	s.version++
	return nil
}

func (s *State) addNode(id, parent string, typ protocol.NodeType, name string) error {
	if _, dup := s.nodes[id]; dup {
		return fmt.Errorf("tenant %s: node %q added twice", s.tenant, id)
	}
	p := s.nodes[parent]
	if p == nil || childType(p.typ) != typ || typ == protocol.NodeType_NODE_TYPE_UNSPECIFIED {
		return fmt.Errorf("tenant %s: node %q (%s) cannot hang off %q", s.tenant, id, typ, parent)
	}
	s.nodes[id] = &node{id: id, parent: parent, typ: typ, name: name, children: map[string]struct{}{}}
	p.children[id] = struct{}{}
	return nil
}

func (s *State) grant(user, nodeID string, roles roleSet) error {
	n := s.nodes[nodeID]
	if n == nil {
		return fmt.Errorf("tenant %s: grant at unknown node %q", s.tenant, nodeID)
	}
	if roles == 0 || roles&^validRoles != 0 {
		return fmt.Errorf("tenant %s: grant of an unknown role", s.tenant)
	}
	held := s.grants[user][nodeID]
	if held&roles != 0 {
		return fmt.Errorf("tenant %s: role granted twice", s.tenant)
	}
	if s.grants[user] == nil {
		s.grants[user] = map[string]roleSet{}
	}
	s.grants[user][nodeID] = held | roles
	k := roles.count()
	n.grants += k
	s.grantCount += k
	return nil
}

// validRoles has a bit for every role of the closed set.
var validRoles = func() roleSet {
	var r roleSet
	for role := protocol.Role_ROLE_ADMIN; role <= maxRole; role++ {
		r = r.with(role)
	}
	return r
}()

// snapshot is the canonical form of the state: sorted, so equal states give
// equal snapshots whatever order the maps hold them in.
func (s *State) snapshot() *protocol.TenantSnapshot {
	snap := &protocol.TenantSnapshot{Created: s.created, Slug: s.slug, CreatedUnixNano: s.createdAt, Version: s.version}
	for _, n := range s.nodes {
		snap.Nodes = append(snap.Nodes, nodeProto(n))
	}
	slices.SortFunc(snap.Nodes, func(a, b *protocol.TenantNode) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	for user, byNode := range s.grants {
		for id, roles := range byNode {
			snap.Grants = append(snap.Grants, &protocol.TenantGrant{User: user, NodeId: id, Roles: roles.list()})
		}
	}
	slices.SortFunc(snap.Grants, func(a, b *protocol.TenantGrant) int {
		if c := strings.Compare(a.GetUser(), b.GetUser()); c != 0 {
			return c
		}
		return strings.Compare(a.GetNodeId(), b.GetNodeId())
	})
	return snap
}

// restore rebuilds a state from a snapshot, checking it as apply checks
// events: a snapshot that breaks the hierarchy rules is refused.
func restore(tenant string, snap *protocol.TenantSnapshot) (*State, error) {
	s := newState(tenant)
	if !snap.GetCreated() {
		if len(snap.GetNodes()) > 0 || len(snap.GetGrants()) > 0 || snap.GetVersion() != 0 {
			return nil, fmt.Errorf("tenant %s: snapshot of an uncreated tenant holds state", tenant)
		}
		return s, nil
	}
	s.created, s.slug, s.createdAt, s.version = true, snap.GetSlug(), snap.GetCreatedUnixNano(), snap.GetVersion()
	byID := map[string]*protocol.TenantNode{}
	for _, n := range snap.GetNodes() {
		if _, dup := byID[n.GetNodeId()]; dup {
			return nil, fmt.Errorf("tenant %s: snapshot lists node %q twice", tenant, n.GetNodeId())
		}
		byID[n.GetNodeId()] = n
	}
	root := byID[tenant]
	if root == nil || root.GetParentId() != "" || root.GetType() != protocol.NodeType_NODE_TYPE_TENANT {
		return nil, fmt.Errorf("tenant %s: snapshot has no root", tenant)
	}
	s.nodes[tenant] = &node{id: tenant, typ: root.GetType(), name: root.GetName(), children: map[string]struct{}{}}
	// Add nodes level by level so each parent exists before its children;
	// what is left after the deepest level hangs off nothing.
	for _, level := range []protocol.NodeType{protocol.NodeType_NODE_TYPE_FACILITY, protocol.NodeType_NODE_TYPE_DEPARTMENT, protocol.NodeType_NODE_TYPE_WARD} {
		for _, n := range snap.GetNodes() {
			if n.GetType() == level {
				if err := s.addNode(n.GetNodeId(), n.GetParentId(), n.GetType(), n.GetName()); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(s.nodes) != len(snap.GetNodes()) {
		return nil, fmt.Errorf("tenant %s: snapshot holds nodes of no level", tenant)
	}
	for _, g := range snap.GetGrants() {
		var roles roleSet
		for _, r := range g.GetRoles() {
			if r < protocol.Role_ROLE_ADMIN || r > maxRole || roles.has(r) {
				return nil, fmt.Errorf("tenant %s: snapshot grant with a bad role list", tenant)
			}
			roles = roles.with(r)
		}
		if err := s.grant(g.GetUser(), g.GetNodeId(), roles); err != nil {
			return nil, err
		}
	}
	return s, nil
}
