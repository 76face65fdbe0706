package emailindex_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/user"
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

// TestStories runs testdata/*.txt. Commands:
//
//	reserve email=E [tenant=T] user=U / release email=E [tenant=T] user=U
//	lookup email=E [tenant=T] / rebuild email=E [tenant=T]
//	raw id=ID user=U   reserve on a literal actor id (id validation)
//	send email=E       a message the index does not handle
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(emailindex.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			id := emailindex.ID(arg("tenant", "acme"), arg("email", ""))
			u := uuid(arg("user", ""))
			switch d.Cmd {
			case "reserve":
				return h.Step(id, &protocol.EmailReserve{UserId: u})
			case "release":
				return h.Step(id, &protocol.EmailRelease{UserId: u})
			case "lookup":
				return h.Step(id, &protocol.EmailLookup{})
			case "rebuild":
				return h.Rebuild(id)
			case "raw":
				return h.Step(arg("id", ""), &protocol.EmailReserve{UserId: u})
			case "send":
				return h.Step(id, &protocol.GetProfile{})
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// TestID: every node maps one address to one actor, whatever its case or
// surrounding space, and tenants never share an entry.
func TestID(t *testing.T) {
	a := emailindex.ID("acme", "Ada@Example.COM ")
	if b := emailindex.ID("acme", "ada@example.com"); a != b {
		t.Fatalf("%s != %s", a, b)
	}
	if !strings.HasPrefix(a, "acme/") || len(a) != len("acme/")+64 {
		t.Fatalf("id shape %q", a)
	}
	if emailindex.ID("globex", "ada@example.com") == a {
		t.Fatal("tenants share an index entry")
	}
	if strings.Contains(a, "ada") {
		t.Fatal("the id holds the address")
	}
	if err := emailindex.ValidID(a); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRegistrations: two registrations of one address arrive on
// different nodes. Both route to the one index actor (same ID), which the
// host runs one message at a time, so however their steps interleave,
// including retries after a lost answer, exactly one user ends up holding
// the address and the other is told ALREADY_EXISTS.
func TestConcurrentRegistrations(t *testing.T) {
	alice := "00000000-0000-4000-8000-00000000000a"
	bob := "00000000-0000-4000-8000-00000000000b"
	// Node A and node B normalise differently typed input to one id.
	idA := emailindex.ID("acme", "Shared@Example.com")
	idB := emailindex.ID("acme", "shared@example.com")
	if idA != idB {
		t.Fatal("nodes disagree on the index id")
	}
	// Every order of two reservations, each sent twice (a retry).
	orders := [][]string{
		{alice, bob, alice, bob},
		{bob, alice, bob, alice},
		{alice, alice, bob, bob},
		{bob, bob, alice, alice},
		{alice, bob, bob, alice},
		{bob, alice, alice, bob},
	}
	for _, order := range orders {
		a := emailindex.New(idA)
		env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: emailindex.KindName, ID: idA}}
		won := map[string]bool{}
		lost := map[string]bool{}
		for _, u := range order {
			fx, err := actors.Step(a, env, &protocol.EmailReserve{UserId: u})
			if err != nil {
				if actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
					t.Fatalf("%v: unexpected error %v", order, err)
				}
				lost[u] = true
				continue
			}
			if err := actors.ApplyAll(a, fx.Events); err != nil {
				t.Fatal(err)
			}
			won[u] = true
		}
		if len(won) != 1 || len(lost) != 1 {
			t.Fatalf("order %v: winners %v, losers %v; want exactly one of each", order, won, lost)
		}
		if !won[order[0]] {
			t.Fatalf("order %v: the first to arrive should win", order)
		}
	}
}

// TestRegistrationFlow: reserve, register; erasure of the user frees the
// address (the user actor sends EmailRelease to exactly this index entry),
// and then another account can take it.
func TestRegistrationFlow(t *testing.T) {
	const uid = "00000000-0000-4000-8000-000000000001"
	const other = "00000000-0000-4000-8000-000000000002"
	idx := actortest.New(emailindex.Kind)
	users := actortest.New(user.Kind)
	iid := emailindex.ID("acme", "Ada@Example.com")

	if out := idx.Step(iid, &protocol.EmailReserve{UserId: uid}); strings.HasPrefix(out, "error") {
		t.Fatal(out)
	}
	if out := users.Step("acme/"+uid, &protocol.RegisterUser{FirstName: "Ada", LastName: "L", Phone: "+441234567890", Email: "Ada@Example.com"}); strings.HasPrefix(out, "error") {
		t.Fatal(out)
	}
	if out := idx.Step(iid, &protocol.EmailReserve{UserId: other}); !strings.Contains(out, "ALREADY_EXISTS") {
		t.Fatalf("second registration: %s", out)
	}

	// Erase, and deliver the user's send as the host would.
	a := users.Actor("acme/" + uid)
	env := actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: user.KindName, ID: "acme/" + uid}}
	fx, err := actors.Step(a, env, &protocol.EraseUser{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.Sends) != 1 || fx.Sends[0].To != (actors.Identity{Kind: emailindex.KindName, ID: iid}) {
		t.Fatalf("erase sends %v, want one EmailRelease to %s", fx.Sends, iid)
	}
	if out := idx.Step(fx.Sends[0].To.ID, fx.Sends[0].Msg); strings.HasPrefix(out, "error") {
		t.Fatal(out)
	}
	if out := idx.Step(iid, &protocol.EmailReserve{UserId: other}); strings.HasPrefix(out, "error") {
		t.Fatalf("after erasure: %s", out)
	}
}

// TestSnapshotRequired: a release asks for a snapshot so the log stops
// linking the address hash to the old holder.
func TestSnapshotRequired(t *testing.T) {
	a := emailindex.New(emailindex.ID("acme", "a@b.ch"))
	if !a.SnapshotRequired([]protocol.Message{&protocol.EmailReleased{}}) {
		t.Fatal("release does not require a snapshot")
	}
	if a.SnapshotRequired([]protocol.Message{&protocol.EmailReserved{}}) {
		t.Fatal("reserve requires a snapshot")
	}
	if err := a.Restore(&protocol.UserSnapshot{}); err == nil {
		t.Fatal("Restore(UserSnapshot) succeeded")
	}
	if err := a.Apply(&protocol.UserErased{}); err == nil {
		t.Fatal("Apply(UserErased) succeeded")
	}
}
