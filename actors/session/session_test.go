package session_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands:
//
//	create id=ID subject=S client=C [ttl=DUR] [tenant=T] [grace=DUR] [cap=N]
//	       [amr=a,b] [acr=A] [node=N] [scopes=a,b] [tids=a,b] [long=FIELD:N]
//	rotate id=ID secret=(last|previous|gen:N|wrong|short) [times=N]
//	       times=N presents the same secret N times in a row (the host's
//	       mailbox order for N concurrent requests) and sums up the replies
//	touch id=ID / revoke id=ID reason=R / get id=ID
//	advance by=DUR        move the clock
//	fire id=ID timer=NAME deliver a durable timer
//	timers id=ID          pending timers
//	rebuild id=ID         rebuild from events and from a snapshot; must agree
//	send id=ID msg=TYPE   deliver a message the actor does not handle
//
// Every secret a reply carries is kept by generation; a reply that hands out
// a different secret for a generation already issued fails the test.
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(session.Kind)
		secrets := map[string]map[uint64][]byte{} // id -> generation -> secret
		latest := map[string]uint64{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name string) string {
				var v string
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			dur := func(name string) time.Duration {
				v, err := time.ParseDuration(arg(name))
				if err != nil {
					d.Fatalf(t, "%s: %v", name, err)
				}
				return v
			}
			split := func(name string) []string {
				if v := arg(name); v != "" {
					return strings.Split(v, ",")
				}
				return nil
			}
			id := arg("id")
			record := func() string {
				r, ok := h.LastReply.(*protocol.RefreshIssued)
				if !ok {
					return ""
				}
				h.LastReply = nil
				g := r.GetSession().GetGeneration()
				if secrets[id] == nil {
					secrets[id] = map[uint64][]byte{}
				}
				if prev, ok := secrets[id][g]; ok && !bytes.Equal(prev, r.GetRefreshSecret()) {
					return fmt.Sprintf("TWO SECRETS FOR GENERATION %d\n", g)
				}
				secrets[id][g] = r.GetRefreshSecret()
				latest[id] = max(latest[id], g)
				return ""
			}
			switch d.Cmd {
			case "create":
				m := &protocol.CreateSession{
					Subject: arg("subject"), ClientId: arg("client"), Tenant: arg("tenant"),
					TenantIds: split("tids"), Amr: split("amr"), Acr: arg("acr"),
					ContextNodeId: arg("node"), Scopes: split("scopes"),
				}
				if d.HasArg("ttl") {
					m.TtlNanos = int64(dur("ttl"))
				}
				if d.HasArg("grace") {
					g := int64(dur("grace"))
					m.GraceNanos = &g
				}
				if d.HasArg("cap") {
					n, _ := strconv.Atoi(arg("cap"))
					m.MaxSessions = uint32(n)
				}
				if l := arg("long"); l != "" {
					field, n, _ := strings.Cut(l, ":")
					k, _ := strconv.Atoi(n)
					long := strings.Repeat("x", k)
					switch field {
					case "subject":
						m.Subject = long
					case "client":
						m.ClientId = long
					case "acr":
						m.Acr = long
					case "node":
						m.ContextNodeId = long
					case "scopes":
						m.Scopes = []string{long}
					case "scope-count":
						m.Scopes = strings.Split(strings.Repeat("s,", k-1)+"s", ",")
					default:
						d.Fatalf(t, "long=%s", l)
					}
				}
				out := h.Step(id, m)
				return out + record()
			case "rotate":
				which := arg("secret")
				var s []byte
				switch {
				case which == "last":
					s = secrets[id][latest[id]]
				case which == "previous":
					s = secrets[id][latest[id]-1]
				case strings.HasPrefix(which, "gen:"):
					g, _ := strconv.ParseUint(strings.TrimPrefix(which, "gen:"), 10, 64)
					s = secrets[id][g]
				case which == "wrong":
					s = make([]byte, session.SecretLen)
				case which == "short":
					s = []byte{1, 2, 3}
				default:
					d.Fatalf(t, "secret=%s", which)
				}
				if s == nil {
					d.Fatalf(t, "no secret %s for %s", which, id)
				}
				times := 1
				if d.HasArg("times") {
					times, _ = strconv.Atoi(arg("times"))
				}
				if times == 1 {
					out := h.Step(id, &protocol.RotateRefresh{PresentedSecret: s})
					return out + record()
				}
				return presentMany(h, id, s, times, record)
			case "touch":
				return h.Step(id, &protocol.TouchSession{})
			case "revoke":
				return h.Step(id, &protocol.RevokeSession{Reason: arg("reason")})
			case "get":
				return h.Step(id, &protocol.GetSession{})
			case "advance":
				h.Now = h.Now.Add(dur("by"))
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "fire":
				name := arg("timer")
				var payload protocol.Message = &protocol.ExpireSession{}
				if name == "grace" {
					payload = &protocol.CloseGrace{}
				}
				return h.Fire(id, name, payload)
			case "timers":
				return h.Timers(id)
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return h.Step(id, &protocol.StoredTimer{Name: "not-a-session-command"})
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// presentMany delivers one secret n times, one step after another (what n
// concurrent requests become in the actor's mailbox), and sums up: how many
// steps persisted, what each step answered, and how many distinct
// successors (secret, jti) were handed out.
func presentMany(h *actortest.Harness, id string, s []byte, n int, record func() string) string {
	persisted := 0
	counts := map[string]int{}
	var order []string
	successors := map[string]bool{}
	var b strings.Builder
	for range n {
		h.LastReply = nil
		out := h.Step(id, &protocol.RotateRefresh{PresentedSecret: s})
		wrote := strings.Contains(out, "persist ")
		if wrote {
			persisted++
		}
		var what string
		switch r := h.LastReply.(type) {
		case *protocol.RefreshIssued:
			successors[fmt.Sprintf("%x/%s", r.GetRefreshSecret(), r.GetAccess().GetJti())] = true
			what = fmt.Sprintf("issued generation %d", r.GetSession().GetGeneration())
			if !wrote {
				what += " again (nothing written)"
			}
		case *protocol.RefreshReuseDetected:
			what = "reuse detected, family revoked"
		default:
			what = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		}
		if counts[what] == 0 {
			order = append(order, what)
		}
		counts[what]++
		if msg := record(); msg != "" {
			b.WriteString(msg)
		}
	}
	fmt.Fprintf(&b, "%d presentations: %d persisted, %d distinct successors\n", n, persisted, len(successors))
	for _, w := range order {
		fmt.Fprintf(&b, "  %d x %s\n", counts[w], w)
	}
	return b.String()
}

// TestRefreshToken: formatting and parsing are inverse, and malformed
// tokens are refused with INVALID_ARGUMENT.
func TestRefreshToken(t *testing.T) {
	secret := bytes.Repeat([]byte{0xfb}, session.SecretLen)
	tok := session.FormatRefreshToken("web.s-1", secret)
	id, got, err := session.ParseRefreshToken(tok)
	if err != nil || id != "web.s-1" || !bytes.Equal(got, secret) {
		t.Fatalf("parse(%q) = %q, %x, %v", tok, id, got, err)
	}
	enc := tok[len("web.s-1."):]
	for _, bad := range []string{
		"", ".", "s1", "s1.", "." + enc, "s1." + enc + "=", "s1." + enc[:len(enc)-1],
		"s1." + enc + "A", "s/1." + enc, "s1." + strings.Replace(enc, "_", "+", 1),
		strings.Repeat("a", session.MaxIDLen+1) + "." + enc,
		// Same bytes except for non-zero padding bits: not canonical.
		"s1." + enc[:len(enc)-1] + "9",
	} {
		if _, _, err := session.ParseRefreshToken(bad); actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			t.Errorf("parse(%q): err %v, want INVALID_ARGUMENT", bad, err)
		}
	}
}

// FuzzParseRefreshToken: the parser never panics, accepts only what
// FormatRefreshToken produces, and round-trips what it accepts.
func FuzzParseRefreshToken(f *testing.F) {
	f.Add(session.FormatRefreshToken("s1", make([]byte, session.SecretLen)))
	f.Add(session.FormatRefreshToken("a.b.c", bytes.Repeat([]byte{0xff}, session.SecretLen)))
	f.Add("s1.AAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		id, secret, err := session.ParseRefreshToken(tok)
		if err != nil {
			if actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
				t.Fatalf("parse(%q): uncoded error %v", tok, err)
			}
			return
		}
		if len(secret) != session.SecretLen || session.ValidTokenID(id) != nil {
			t.Fatalf("parse(%q) accepted id %q secret %d bytes", tok, id, len(secret))
		}
		if again := session.FormatRefreshToken(id, secret); again != tok {
			t.Fatalf("parse(%q) then format = %q", tok, again)
		}
	})
}

// TestGraceSecretNotInState: while a retry window is open, neither the
// snapshot nor the rotation event holds the successor secret or the old
// secret in the clear, and only the old secret opens the sealed copy.
func TestGraceSecretNotInState(t *testing.T) {
	h := actortest.New(session.Kind)
	h.Step("s1", &protocol.CreateSession{Subject: "alice", ClientId: "web"})
	first := h.LastReply.(*protocol.RefreshIssued).GetRefreshSecret()
	h.Step("s1", &protocol.RotateRefresh{PresentedSecret: first})
	second := h.LastReply.(*protocol.RefreshIssued).GetRefreshSecret()
	snap, _ := h.Actor("s1").Snapshot()
	raw, err := protocol.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, second) || bytes.Contains(raw, first) {
		t.Fatal("snapshot holds a refresh secret in the clear")
	}
	if snap.(*protocol.SessionState).GetGrace().GetSealedSuccessor() == nil {
		t.Fatal("no sealed successor during the grace window")
	}
	// A truncated secret is malformed: refused as such, never taken for a
	// guess or for reuse.
	if out := h.Step("s1", &protocol.RotateRefresh{PresentedSecret: second[: session.SecretLen-1 : session.SecretLen-1]}); !strings.Contains(out, "INVALID_ARGUMENT") {
		t.Fatalf("short secret: %s", out)
	}
}

// TestRestoreRejectsOtherMessages: a snapshot or event of another kind must
// not be taken for a session's.
func TestRestoreRejectsOtherMessages(t *testing.T) {
	a := session.New("s1")
	if err := a.Restore(&protocol.UserSnapshot{}); err == nil {
		t.Fatal("Restore(UserSnapshot) succeeded")
	}
	if err := a.Apply(&protocol.UserErased{}); err == nil {
		t.Fatal("Apply(UserErased) succeeded")
	}
}
