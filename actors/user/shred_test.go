package user_test

import (
	"bytes"
	"testing"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/protocol"
)

// store models the journal semantics of persistence.Write: events are kept
// in their at-rest form, and a snapshot deletes every event at or below it.
type store struct {
	snapshot []byte
	events   [][]byte
}

func (s *store) bytes() [][]byte {
	out := append([][]byte{}, s.events...)
	if s.snapshot != nil {
		out = append(out, s.snapshot)
	}
	return out
}

// host steps one user actor the way cluster/ must: persist, snapshot when
// the actor requires it, apply.
type host struct {
	t     *testing.T
	id    string
	a     *user.Actor
	st    store
	env   actors.Env
	honor bool // honour SnapshotRequired
}

func (h *host) step(msg protocol.Message) protocol.Message {
	h.t.Helper()
	fx, err := actors.Step(h.a, h.env, msg)
	if err != nil {
		h.t.Fatalf("%s: %v", protocol.TypeName(msg), err)
	}
	if err := actors.ApplyAll(h.a, fx.Events); err != nil {
		h.t.Fatal(err)
	}
	for _, ev := range fx.Events {
		b, err := protocol.Marshal(ev)
		if err != nil {
			h.t.Fatal(err)
		}
		h.st.events = append(h.st.events, b)
	}
	if h.honor && h.a.SnapshotRequired(fx.Events) {
		snap, _ := h.a.Snapshot()
		b, err := protocol.Marshal(snap)
		if err != nil {
			h.t.Fatal(err)
		}
		h.st.snapshot, h.st.events = b, nil
	}
	if len(fx.Replies) == 0 {
		return nil
	}
	return fx.Replies[0]
}

// activate rebuilds a fresh actor from what the store holds.
func (h *host) activate() *user.Actor {
	h.t.Helper()
	a := user.New(h.id)
	if h.st.snapshot != nil {
		m, err := protocol.Unmarshal(h.st.snapshot)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := a.Restore(m); err != nil {
			h.t.Fatal(err)
		}
	}
	for _, b := range h.st.events {
		m, err := protocol.Unmarshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := a.Apply(m); err != nil {
			h.t.Fatal(err)
		}
	}
	return a
}

func (h *host) read(a *user.Actor, msg protocol.Message) protocol.Message {
	h.t.Helper()
	fx, err := actors.Step(a, h.env, msg)
	if err != nil {
		h.t.Fatal(err)
	}
	return fx.Replies[0]
}

const phcString = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"

var personal = []string{"Ada", "Lovelace", "+441234567890", "ada@example.com", phcString}

func newShredHost(t *testing.T, honor bool) *host {
	id := "acme/00000000-0000-4000-8000-000000000001"
	h := &host{t: t, id: id, a: user.New(id), honor: honor,
		env: actors.Env{Now: actortest.Epoch, Entropy: &actortest.Counter{}, Self: actors.Identity{Kind: user.KindName, ID: id}}}
	reg := h.step(&protocol.RegisterUser{FirstName: "Ada", LastName: "Lovelace", Phone: "+441234567890", Email: "ADA@example.com"}).(*protocol.UserRegistration)
	h.step(&protocol.VerifyEmail{Token: reg.GetEmailVerification().GetToken()})
	code := h.step(&protocol.StartPhoneVerification{}).(*protocol.PhoneVerificationIssued).GetCode()
	h.step(&protocol.VerifyPhone{Code: code})
	h.step(&protocol.SetPassword{Phc: phcString})
	h.step(&protocol.RecordLogin{Success: false})
	return h
}

func leaks(blobs [][]byte, secrets ...[]byte) []string {
	var found []string
	for _, b := range blobs {
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				found = append(found, string(s))
			}
		}
	}
	return found
}

func personalBytes() [][]byte {
	var out [][]byte
	for _, p := range personal {
		out = append(out, []byte(p))
	}
	return out
}

// TestCryptoShredding: personal data is at rest only sealed; after erasure
// the store holds neither the key nor anything that opens to personal data,
// and an actor rebuilt from the store is erased with empty personal fields.
func TestCryptoShredding(t *testing.T) {
	h := newShredHost(t, true)

	// Before erasure: nothing personal in the clear at rest, yet a rebuilt
	// actor reads it all back (the key is in the log).
	if l := leaks(h.st.bytes(), personalBytes()...); len(l) > 0 {
		t.Fatalf("personal data in the clear at rest: %q", l)
	}
	keyEv, err := protocol.Unmarshal(h.st.events[0])
	if err != nil {
		t.Fatal(err)
	}
	key := keyEv.(*protocol.UserKeyIssued).GetKey()
	p := h.read(h.activate(), &protocol.GetProfile{}).(*protocol.UserProfile)
	if p.GetEmail() != "ada@example.com" || p.GetFirstName() != "Ada" || p.GetPhone() != "+441234567890" {
		t.Fatalf("rebuilt profile before erasure = %v", p)
	}
	c := h.read(h.activate(), &protocol.GetCredentials{}).(*protocol.UserCredentials)
	if c.GetPhc() != phcString {
		t.Fatalf("rebuilt PHC before erasure = %q", c.GetPhc())
	}

	h.step(&protocol.EraseUser{By: "dpo"})

	// The erase write carried a snapshot, so the log below it, the key
	// event with it, is gone.
	if len(h.st.events) != 0 || h.st.snapshot == nil {
		t.Fatalf("after erasure the store has %d events and snapshot %v", len(h.st.events), h.st.snapshot != nil)
	}
	if l := leaks(h.st.bytes(), append(personalBytes(), key)...); len(l) > 0 {
		t.Fatalf("after erasure the store still holds %d secrets", len(l))
	}
	snap, _ := protocol.Unmarshal(h.st.snapshot)
	if s := snap.(*protocol.UserSnapshot); len(s.GetKey()) != 0 || len(s.GetSealedEmail()) != 0 || len(s.GetSealedPhc()) != 0 {
		t.Fatalf("erased snapshot keeps key or sealed data: %v", s)
	}

	// Replay what survives into a fresh actor.
	fresh := h.activate()
	p = h.read(fresh, &protocol.GetProfile{}).(*protocol.UserProfile)
	if p.GetStatus().GetState() != protocol.UserState_USER_STATE_ERASED ||
		p.GetFirstName()+p.GetLastName()+p.GetPhone()+p.GetEmail() != "" || p.GetHasPassword() {
		t.Fatalf("rebuilt profile after erasure = %v", p)
	}
	c = h.read(fresh, &protocol.GetCredentials{}).(*protocol.UserCredentials)
	if c.GetPhc() != "" || c.GetState() != protocol.UserState_USER_STATE_ERASED {
		t.Fatalf("rebuilt credentials after erasure = %v", c)
	}
	// Nothing but reads works on the erased account.
	if _, err := actors.Step(fresh, h.env, &protocol.SetPassword{Phc: phcString}); actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
		t.Fatalf("SetPassword after erasure: %v", err)
	}
}

// TestErasureNeedsTheSnapshot shows why the host must honour
// SnapshotRequired: if it kept the log, the key would survive erasure in
// UserKeyIssued even though the live state forgot it.
func TestErasureNeedsTheSnapshot(t *testing.T) {
	h := newShredHost(t, false)
	fx, err := actors.Step(h.a, h.env, &protocol.EraseUser{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.a.SnapshotRequired(fx.Events) {
		t.Fatal("the erase write does not require a snapshot")
	}
	if h.a.SnapshotRequired([]protocol.Message{&protocol.LoginFailed{}}) {
		t.Fatal("an ordinary write requires a snapshot")
	}
	h.step(&protocol.EraseUser{})
	if p := h.read(h.activate(), &protocol.GetProfile{}).(*protocol.UserProfile); p.GetStatus().GetState() != protocol.UserState_USER_STATE_ERASED || p.GetEmail() != "" {
		t.Fatalf("replayed profile = %v", p)
	}
	keyEv, _ := protocol.Unmarshal(h.st.events[0])
	if _, ok := keyEv.(*protocol.UserKeyIssued); !ok {
		t.Fatal("expected the key event to survive in an un-snapshotted log")
	}
}
