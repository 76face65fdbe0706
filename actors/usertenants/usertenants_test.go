package usertenants_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
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

// TestStories runs testdata/*.txt. Commands (user=u1 unless given):
//
//	join|leave tenant=T version=V   TenantMembershipChanged as a tenant sends it
//	list / rebuild / send (a message the index does not handle)
//	fill joins=N [leave]            N tenants t0000.. joined (and left)
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(usertenants.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			id := uuid(arg("user", "u1"))
			var version uint64
			if d.HasArg("version") {
				d.ScanArgs(t, "version", &version)
			}
			switch d.Cmd {
			case "join", "leave":
				return short(h.Step(id, &protocol.TenantMembershipChanged{TenantId: arg("tenant", ""), Member: d.Cmd == "join", Version: version}))
			case "list":
				return short(h.Step(id, &protocol.ListTenants{}))
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return h.Step(id, &protocol.GetTree{})
			case "fill":
				var n int
				d.ScanArgs(t, "joins", &n)
				for i := range n {
					tenant := fmt.Sprintf("t%04d", i)
					out := h.Step(id, &protocol.TenantMembershipChanged{TenantId: tenant, Member: true, Version: 1})
					if !strings.HasPrefix(out, "error") && d.HasArg("leave") {
						out = h.Step(id, &protocol.TenantMembershipChanged{TenantId: tenant, Version: 2})
					}
					if strings.HasPrefix(out, "error") {
						return fmt.Sprintf("after %d: %s", i, out)
					}
				}
				return fmt.Sprintf("filled %d\n", n)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// short prints a long tenant list as its first and last ids and a count.
func short(out string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		start := strings.Index(l, "tenant_ids:[")
		if start < 0 {
			continue
		}
		start += len("tenant_ids:[")
		end := strings.Index(l[start:], "]") + start
		ids := strings.Fields(l[start:end])
		if len(ids) > 4 {
			lines[i] = fmt.Sprintf("%s%s ... %s (%d)%s", l[:start], ids[0], ids[len(ids)-1], len(ids), l[end:])
		}
	}
	return strings.Join(lines, "\n")
}

const alice = "00000000-0000-4000-8000-00000000000a"

func step(t *testing.T, a *usertenants.Actor, from *actors.Identity, m protocol.Message) error {
	t.Helper()
	env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: usertenants.KindName, ID: alice}, Sender: from}
	fx, err := actors.Step(a, env, m)
	if err != nil {
		return err
	}
	return actors.ApplyAll(a, fx.Events)
}

// TestOnlyTheTenantChangesItsMembers: an actor may report memberships only
// of the tenant it is; another tenant, or another kind, is refused.
func TestOnlyTheTenantChangesItsMembers(t *testing.T) {
	a := usertenants.New(alice)
	join := &protocol.TenantMembershipChanged{TenantId: "acme", Member: true, Version: 1}
	for _, from := range []actors.Identity{
		{Kind: usertenants.TenantKind, ID: "globex"},
		{Kind: "user", ID: "acme"},
	} {
		err := step(t, a, &from, join)
		if actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
			t.Fatalf("from %s: %v, want PERMISSION_DENIED", from, err)
		}
	}
	if err := step(t, a, &actors.Identity{Kind: usertenants.TenantKind, ID: "acme"}, join); err != nil {
		t.Fatal(err)
	}
	snap, _ := a.Snapshot()
	if n := len(snap.(*protocol.UserTenantsSnapshot).GetEntries()); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
}

// TestSnapshotRestoreSameReplies: a restored index answers as the original.
func TestSnapshotRestoreSameReplies(t *testing.T) {
	a := usertenants.New(alice)
	for i, m := range []*protocol.TenantMembershipChanged{
		{TenantId: "acme", Member: true, Version: 3},
		{TenantId: "globex", Member: true, Version: 1},
		{TenantId: "initech", Member: true, Version: 5},
		{TenantId: "globex", Version: 2},
	} {
		if err := step(t, a, nil, m); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	snap, _ := a.Snapshot()
	b := usertenants.New(alice)
	if err := b.Restore(protocol.Clone(snap)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []protocol.Message{
		&protocol.ListTenants{},
		&protocol.TenantMembershipChanged{TenantId: "globex", Member: true, Version: 1}, // stale
		&protocol.TenantMembershipChanged{TenantId: "acme", Version: 4},
		&protocol.ListTenants{},
	} {
		var outs [2]string
		for i, x := range []*usertenants.Actor{a, b} {
			env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: usertenants.KindName, ID: alice}}
			fx, err := actors.Step(x, env, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := actors.ApplyAll(x, fx.Events); err != nil {
				t.Fatal(err)
			}
			outs[i] = actortest.FormatEffects(fx)
		}
		if outs[0] != outs[1] {
			t.Fatalf("%s:\noriginal: %s\nrestored: %s", actortest.Format(m), outs[0], outs[1])
		}
	}
	if err := b.Restore(&protocol.UserTenantsSnapshot{Entries: []*protocol.UserTenantEntry{{TenantId: "a"}, {TenantId: "a"}}}); err == nil {
		t.Fatal("restored a snapshot listing a tenant twice")
	}
	if err := b.Restore(&protocol.TenantSnapshot{}); err == nil {
		t.Fatal("Restore(TenantSnapshot) succeeded")
	}
	if err := b.Apply(&protocol.TenantCreated{}); err == nil {
		t.Fatal("Apply(TenantCreated) succeeded")
	}
}
