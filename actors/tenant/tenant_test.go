package tenant_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/actors/usertenants"
	"github.com/wardhq/ward/protocol"
)

// uuid turns a story's short user name "uN" into a uuid; anything else is
// used as is (to test validation).
func uuid(s string) string {
	if !strings.HasPrefix(s, "u") || strings.Contains(s, "-") {
		return s
	}
	return fmt.Sprintf("00000000-0000-4000-8000-%012s", s[1:])
}

func nodeType(s string) protocol.NodeType {
	if v, ok := protocol.NodeType_value["NODE_TYPE_"+strings.ToUpper(s)]; ok {
		return protocol.NodeType(v)
	}
	var n int32
	fmt.Sscan(s, &n)
	return protocol.NodeType(n)
}

func role(s string) protocol.Role {
	if v, ok := protocol.Role_value["ROLE_"+strings.ToUpper(s)]; ok {
		return protocol.Role(v)
	}
	var n int32
	fmt.Sscan(s, &n)
	return protocol.Role(n)
}

// TestStories runs testdata/*.txt. Every command acts on tenant "acme"
// unless tenant=T says otherwise. Commands:
//
//	create name= slug= / add id= parent= type= name= / rename id= name=
//	remove id= / tree / rebuild / send (a message the tenant does not handle)
//	grant|revoke|check user=U node= role= / list user=U / access user=U
//	fill nodes=N parent= type=   adds N nodes (prints the first error or a count)
//	fill grants=N node=          grants patient to N fresh users
//	long=N                       replaces name= with N "x"s
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(tenant.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			id := arg("tenant", "acme")
			name := arg("name", "")
			if d.HasArg("long") {
				var n int
				d.ScanArgs(t, "long", &n)
				name = strings.Repeat("x", n)
			}
			u := uuid(arg("user", ""))
			switch d.Cmd {
			case "create":
				return h.Step(id, &protocol.CreateTenant{Name: name, Slug: arg("slug", "")})
			case "add":
				return h.Step(id, &protocol.AddNode{NodeId: arg("id", ""), ParentId: arg("parent", ""), Type: nodeType(arg("type", "")), Name: name})
			case "rename":
				return h.Step(id, &protocol.RenameNode{NodeId: arg("id", ""), Name: name})
			case "remove":
				return h.Step(id, &protocol.RemoveNode{NodeId: arg("id", "")})
			case "grant":
				return h.Step(id, &protocol.GrantRole{User: u, NodeId: arg("node", ""), Role: role(arg("role", ""))})
			case "revoke":
				return h.Step(id, &protocol.RevokeRole{User: u, NodeId: arg("node", ""), Role: role(arg("role", ""))})
			case "check":
				return h.Step(id, &protocol.CheckRole{User: u, NodeId: arg("node", ""), Role: role(arg("role", ""))})
			case "list":
				return h.Step(id, &protocol.ListMemberships{User: u})
			case "access":
				return pretty(h.Step(id, &protocol.GetAccessContext{User: u}))
			case "tree":
				return pretty(h.Step(id, &protocol.GetTree{}))
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return h.Step(id, &protocol.ListTenants{})
			case "fill":
				return fill(t, d, h, id, arg)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// pretty breaks a long reply's lists onto lines so a story stays readable.
func pretty(out string) string {
	for _, sep := range []string{" memberships:", " effective:", " nodes:"} {
		out = strings.ReplaceAll(out, sep, "\n "+sep[1:])
	}
	out = strings.ReplaceAll(out, "} NodeRoles{", "}\n   NodeRoles{")
	return strings.ReplaceAll(out, "} TenantNode{", "}\n   TenantNode{")
}

func fill(t *testing.T, d *datadriven.TestData, h *actortest.Harness, id string, arg func(string, string) string) string {
	var n int
	switch {
	case d.HasArg("nodes"):
		d.ScanArgs(t, "nodes", &n)
		for i := range n {
			out := h.Step(id, &protocol.AddNode{NodeId: fmt.Sprintf("n%05d", i), ParentId: arg("parent", ""), Type: nodeType(arg("type", "")), Name: "n"})
			if strings.HasPrefix(out, "error") {
				return fmt.Sprintf("after %d: %s", i, out)
			}
		}
		return fmt.Sprintf("added %d nodes\n", n)
	case d.HasArg("grants"):
		d.ScanArgs(t, "grants", &n)
		for i := range n {
			u := fmt.Sprintf("00000000-0000-4000-9000-%012d", i)
			out := h.Step(id, &protocol.GrantRole{User: u, NodeId: arg("node", ""), Role: protocol.Role_ROLE_PATIENT})
			if strings.HasPrefix(out, "error") {
				return fmt.Sprintf("after %d: %s", i, out)
			}
		}
		return fmt.Sprintf("granted %d\n", n)
	}
	d.Fatalf(t, "fill what?")
	return ""
}

// build runs commands on a fresh tenant actor, failing on any error.
func build(t *testing.T, id string, msgs ...protocol.Message) *tenant.Actor {
	t.Helper()
	a := tenant.New(id)
	env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: tenant.KindName, ID: id}}
	for _, m := range msgs {
		fx, err := actors.Step(a, env, m)
		if err != nil {
			t.Fatalf("%s: %v", actortest.Format(m), err)
		}
		if err := actors.ApplyAll(a, fx.Events); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

const (
	alice = "00000000-0000-4000-8000-00000000000a"
	bob   = "00000000-0000-4000-8000-00000000000b"
)

// hospital is a small tenant: two facilities, departments, wards, and a few
// grants at every level.
func hospital() []protocol.Message {
	fac, dep, ward := protocol.NodeType_NODE_TYPE_FACILITY, protocol.NodeType_NODE_TYPE_DEPARTMENT, protocol.NodeType_NODE_TYPE_WARD
	return []protocol.Message{
		&protocol.CreateTenant{Name: "Acme Health", Slug: "acme"},
		&protocol.AddNode{NodeId: "north", ParentId: "acme", Type: fac, Name: "North"},
		&protocol.AddNode{NodeId: "south", ParentId: "acme", Type: fac, Name: "South"},
		&protocol.AddNode{NodeId: "cardio", ParentId: "north", Type: dep, Name: "Cardiology"},
		&protocol.AddNode{NodeId: "neuro", ParentId: "south", Type: dep, Name: "Neurology"},
		&protocol.AddNode{NodeId: "w1", ParentId: "cardio", Type: ward, Name: "W1"},
		&protocol.AddNode{NodeId: "w2", ParentId: "cardio", Type: ward, Name: "W2"},
		&protocol.AddNode{NodeId: "w3", ParentId: "neuro", Type: ward, Name: "W3"},
		&protocol.GrantRole{User: alice, NodeId: "cardio", Role: protocol.Role_ROLE_DOCTOR},
		&protocol.GrantRole{User: alice, NodeId: "w3", Role: protocol.Role_ROLE_NURSE},
		&protocol.GrantRole{User: alice, NodeId: "acme", Role: protocol.Role_ROLE_KYC_VERIFIER},
		&protocol.GrantRole{User: bob, NodeId: "w1", Role: protocol.Role_ROLE_PATIENT},
		&protocol.RenameNode{NodeId: "w2", Name: "Ward Two"},
	}
}

// TestSnapshotRestoreSameReplies: an actor restored from a snapshot (of the
// snapshot's wire bytes, as a host stores it) answers every query and
// command exactly as the original does.
func TestSnapshotRestoreSameReplies(t *testing.T) {
	orig := build(t, "acme", hospital()...)
	snap, err := orig.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	back, err := protocol.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	restored := tenant.New("acme")
	if err := restored.Restore(back); err != nil {
		t.Fatal(err)
	}
	again, _ := restored.Snapshot()
	if !protocol.Equal(snap, again) {
		t.Fatalf("snapshot changed across restore:\n%s\n%s", actortest.Format(snap), actortest.Format(again))
	}
	queries := []protocol.Message{
		&protocol.GetTree{},
		&protocol.ListMemberships{User: alice},
		&protocol.ListMemberships{User: bob},
		&protocol.GetAccessContext{User: alice},
		&protocol.GetAccessContext{User: bob},
		&protocol.CheckRole{User: alice, NodeId: "w2", Role: protocol.Role_ROLE_DOCTOR},
		&protocol.CheckRole{User: alice, NodeId: "w1", Role: protocol.Role_ROLE_NURSE},
		&protocol.GrantRole{User: bob, NodeId: "w2", Role: protocol.Role_ROLE_PATIENT},
		&protocol.RevokeRole{User: bob, NodeId: "w1", Role: protocol.Role_ROLE_PATIENT},
		&protocol.RevokeRole{User: bob, NodeId: "w2", Role: protocol.Role_ROLE_PATIENT},
		&protocol.RemoveNode{NodeId: "w2"},
		&protocol.RemoveNode{NodeId: "cardio"},
		&protocol.AddNode{NodeId: "w4", ParentId: "neuro", Type: protocol.NodeType_NODE_TYPE_WARD, Name: "W4"},
		&protocol.CreateTenant{Name: "again", Slug: "again"},
	}
	env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: tenant.KindName, ID: "acme"}}
	for _, q := range queries {
		var outs [2]string
		for i, a := range []*tenant.Actor{orig, restored} {
			fx, err := actors.Step(a, env, q)
			if err != nil {
				outs[i] = "error " + err.Error()
				continue
			}
			if err := actors.ApplyAll(a, fx.Events); err != nil {
				t.Fatal(err)
			}
			outs[i] = actortest.FormatEffects(fx)
		}
		if outs[0] != outs[1] {
			t.Fatalf("%s:\noriginal: %s\nrestored: %s", actortest.Format(q), outs[0], outs[1])
		}
	}
}

// TestHasRole: roles granted at a node hold at every node below it and
// nowhere else.
func TestHasRole(t *testing.T) {
	s := build(t, "acme", hospital()...).State()
	for _, c := range []struct {
		user, node string
		role       protocol.Role
		want       bool
	}{
		{alice, "cardio", protocol.Role_ROLE_DOCTOR, true},
		{alice, "w1", protocol.Role_ROLE_DOCTOR, true},
		{alice, "w2", protocol.Role_ROLE_DOCTOR, true},
		{alice, "north", protocol.Role_ROLE_DOCTOR, false}, // not up
		{alice, "w3", protocol.Role_ROLE_DOCTOR, false},    // not sideways
		{alice, "w3", protocol.Role_ROLE_NURSE, true},
		{alice, "neuro", protocol.Role_ROLE_NURSE, false},
		{alice, "w1", protocol.Role_ROLE_KYC_VERIFIER, true}, // from the root
		{alice, "acme", protocol.Role_ROLE_KYC_VERIFIER, true},
		{bob, "w1", protocol.Role_ROLE_PATIENT, true},
		{bob, "w2", protocol.Role_ROLE_PATIENT, false},
		{bob, "w1", protocol.Role_ROLE_DOCTOR, false},
		{alice, "nowhere", protocol.Role_ROLE_DOCTOR, false},
		{"nobody", "w1", protocol.Role_ROLE_DOCTOR, false},
		{alice, "w1", protocol.Role(-1), false},
		{alice, "w1", protocol.Role(99), false},
	} {
		if got := tenant.HasRole(s, c.user, c.node, c.role); got != c.want {
			t.Errorf("HasRole(%s, %s, %s) = %v, want %v", c.user[len(c.user)-1:], c.node, c.role, got, c.want)
		}
	}
}

// TestIndexFollowsGrants: the tenant's sends, delivered to usertenants
// actors as a host would (with the tenant as sender), keep each user's
// tenant list equal to the tenants where the user holds a role.
func TestIndexFollowsGrants(t *testing.T) {
	idx := map[string]*usertenants.Actor{}
	steps := []struct {
		tenant string
		msg    protocol.Message
	}{
		{"acme", &protocol.CreateTenant{Name: "Acme", Slug: "acme"}},
		{"globex", &protocol.CreateTenant{Name: "Globex", Slug: "globex"}},
		{"acme", &protocol.GrantRole{User: alice, NodeId: "acme", Role: protocol.Role_ROLE_ADMIN}},
		{"acme", &protocol.GrantRole{User: alice, NodeId: "acme", Role: protocol.Role_ROLE_DOCTOR}}, // not the first: no send
		{"globex", &protocol.GrantRole{User: alice, NodeId: "globex", Role: protocol.Role_ROLE_NURSE}},
		{"acme", &protocol.RevokeRole{User: alice, NodeId: "acme", Role: protocol.Role_ROLE_ADMIN}}, // not the last: no send
		{"acme", &protocol.RevokeRole{User: alice, NodeId: "acme", Role: protocol.Role_ROLE_DOCTOR}},
	}
	tenants := map[string]*tenant.Actor{"acme": tenant.New("acme"), "globex": tenant.New("globex")}
	var sends int
	var held []actors.Send
	for _, s := range steps {
		self := actors.Identity{Kind: tenant.KindName, ID: s.tenant}
		fx, err := actors.Step(tenants[s.tenant], actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: self}, s.msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := actors.ApplyAll(tenants[s.tenant], fx.Events); err != nil {
			t.Fatal(err)
		}
		for _, send := range fx.Sends {
			sends++
			held = append(held, send)
			deliver(t, idx, self, send)
		}
	}
	if sends != 3 {
		t.Fatalf("%d sends, want 3 (first grant in acme, in globex, last revoke in acme)", sends)
	}
	if got := list(t, idx[alice]); got != "[globex]" {
		t.Fatalf("alice's tenants = %s, want [globex]", got)
	}
	// Re-delivering the old "joined acme" changes nothing: it is older than
	// the "left acme" already applied.
	deliver(t, idx, actors.Identity{Kind: tenant.KindName, ID: "acme"}, held[0])
	if got := list(t, idx[alice]); got != "[globex]" {
		t.Fatalf("after a stale re-delivery alice's tenants = %s, want [globex]", got)
	}
}

func deliver(t *testing.T, idx map[string]*usertenants.Actor, from actors.Identity, s actors.Send) {
	t.Helper()
	if s.To.Kind != usertenants.KindName {
		t.Fatalf("send to %s", s.To)
	}
	a := idx[s.To.ID]
	if a == nil {
		a = usertenants.New(s.To.ID)
		idx[s.To.ID] = a
	}
	fx, err := actors.Step(a, actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: s.To, Sender: &from}, s.Msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := actors.ApplyAll(a, fx.Events); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, a *usertenants.Actor) string {
	t.Helper()
	fx, err := actors.Step(a, actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}}, &protocol.ListTenants{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(fx.Replies[0].(*protocol.UserTenantList).GetTenantIds())
}

// TestRestoreRejectsBadSnapshots: a snapshot that breaks the hierarchy or
// role rules, or is another kind's, is refused rather than trusted.
func TestRestoreRejectsBadSnapshots(t *testing.T) {
	good, _ := build(t, "acme", hospital()...).Snapshot()
	mutate := func(f func(s *protocol.TenantSnapshot)) *protocol.TenantSnapshot {
		s := protocol.Clone(good.(*protocol.TenantSnapshot))
		f(s)
		return s
	}
	for name, snap := range map[string]protocol.Message{
		"other kind":        &protocol.UserSnapshot{},
		"no root":           mutate(func(s *protocol.TenantSnapshot) { s.Nodes = s.Nodes[1:] }),
		"ward off facility": mutate(func(s *protocol.TenantSnapshot) { s.Nodes[len(s.Nodes)-1].ParentId = "north" }),
		"orphan":            mutate(func(s *protocol.TenantSnapshot) { s.Nodes[len(s.Nodes)-1].ParentId = "gone" }),
		"duplicate node":    mutate(func(s *protocol.TenantSnapshot) { s.Nodes = append(s.Nodes, s.Nodes[1]) }),
		"grant at no node":  mutate(func(s *protocol.TenantSnapshot) { s.Grants[0].NodeId = "gone" }),
		"unknown role":      mutate(func(s *protocol.TenantSnapshot) { s.Grants[0].Roles = []protocol.Role{42} }),
		"no roles":          mutate(func(s *protocol.TenantSnapshot) { s.Grants[0].Roles = nil }),
		"uncreated w/ data": mutate(func(s *protocol.TenantSnapshot) { s.Created = false }),
	} {
		a := tenant.New("acme")
		if err := a.Restore(snap); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	if err := tenant.New("acme").Apply(&protocol.SessionTouched{}); err == nil {
		t.Error("Apply(SessionTouched) succeeded")
	}
}
