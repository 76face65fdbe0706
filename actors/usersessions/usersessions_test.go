package usersessions_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt against a small world of session actors
// and usersessions indexes; sends between them are delivered when the story
// says so, as a host would (with the sender set). Commands:
//
//	login sid=ID [user=S] [tenant=T] [cap=N] [ttl=DUR]   create a session
//	deliver               deliver every pending send, and what those send, ...
//	register|unregister [user=S] sid=ID [created=DUR] [cap=N]  straight to the index
//	revoke-all [user=S] [reason=R] / list [user=S] / rebuild [user=S]
//	session sid=ID        the session's status
//	advance by=DUR / fire sid=ID      the session's expiry timer
//	raw id=ID             register on a literal index id
//	send [user=S]         a message the index does not handle
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		sessions := actortest.New(session.Kind)
		index := actortest.New(usersessions.Kind)
		var pending []actors.Send
		var from []actors.Identity
		queue := func(h *actortest.Harness, self actors.Identity) {
			for _, s := range h.LastSends {
				pending = append(pending, s)
				from = append(from, self)
			}
			h.LastSends = nil
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			num := func(name string) uint32 {
				n, _ := strconv.Atoi(arg(name, "0"))
				return uint32(n)
			}
			uid := usersessions.ID(arg("tenant", "acme"), arg("user", "alice"))
			sid := arg("sid", "")
			onIndex := func(out string) string {
				queue(index, actors.Identity{Kind: usersessions.KindName, ID: uid})
				return out
			}
			switch d.Cmd {
			case "login":
				m := &protocol.CreateSession{Subject: arg("user", "alice"), ClientId: "web", Tenant: arg("tenant", "acme"), MaxSessions: num("cap")}
				if d.HasArg("ttl") {
					ttl, _ := time.ParseDuration(arg("ttl", ""))
					m.TtlNanos = int64(ttl)
				}
				out := sessions.Step(sid, m)
				queue(sessions, actors.Identity{Kind: session.KindName, ID: sid})
				// Only the sends matter here; the session's own effects are
				// its package's stories.
				return summary(out)
			case "deliver":
				var b strings.Builder
				for len(pending) > 0 {
					s, f := pending[0], from[0]
					pending, from = pending[1:], from[1:]
					h := index
					if s.To.Kind == session.KindName {
						h = sessions
					}
					fmt.Fprintf(&b, "%s -> %s %s\n", f, s.To, actortest.Format(s.Msg))
					out := h.StepFrom(f, s.To.ID, s.Msg)
					if h == sessions {
						out = summary(out)
					}
					b.WriteString(indent(out))
					queue(h, s.To)
				}
				if b.Len() == 0 {
					return "nothing to deliver\n"
				}
				return b.String()
			case "register":
				created, _ := time.ParseDuration(arg("created", "0s"))
				return onIndex(index.Step(uid, &protocol.RegisterUserSession{
					SessionId: sid, CreatedUnixNano: actortest.Epoch.Add(created).UnixNano(), MaxSessions: num("cap"),
				}))
			case "unregister":
				return onIndex(index.Step(uid, &protocol.UnregisterUserSession{SessionId: sid}))
			case "revoke-all":
				return onIndex(index.Step(uid, &protocol.RevokeAllUserSessions{Reason: arg("reason", "")}))
			case "list":
				return index.Step(uid, &protocol.ListUserSessions{})
			case "rebuild":
				return index.Rebuild(uid)
			case "session":
				out := sessions.Step(sid, &protocol.GetSession{})
				if info, ok := sessions.LastReply.(*protocol.SessionInfo); ok && !strings.HasPrefix(out, "error") {
					return fmt.Sprintf("%s %s %s\n", sid, info.GetStatus(), info.GetRevokeReason())
				}
				return out
			case "advance":
				by, _ := time.ParseDuration(arg("by", "0s"))
				sessions.Now = sessions.Now.Add(by)
				index.Now = sessions.Now
				return fmt.Sprintf("now T+%s\n", sessions.Now.Sub(actortest.Epoch))
			case "fire":
				out := sessions.Fire(sid, "expiry", &protocol.ExpireSession{})
				queue(sessions, actors.Identity{Kind: session.KindName, ID: sid})
				return summary(out)
			case "raw":
				return index.Step(arg("id", ""), &protocol.RegisterUserSession{SessionId: "s1", CreatedUnixNano: 1})
			case "send":
				return index.Step(uid, &protocol.GetSession{})
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// summary keeps the lines of a session step that concern the index: its
// sends, its status change, or its error.
func summary(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "send "), strings.HasPrefix(l, "error "):
			b.WriteString(l + "\n")
		case strings.HasPrefix(l, "persist SessionRevoked"), strings.HasPrefix(l, "persist SessionExpired"),
			strings.HasPrefix(l, "persist SessionCreated"):
			b.WriteString(strings.SplitN(l, "{", 2)[0] + "\n")
		}
	}
	if b.Len() == 0 {
		return "ok\n"
	}
	return b.String()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// TestSessionKindName: the index addresses sessions by a name it cannot
// import; it must stay the session package's.
func TestSessionKindName(t *testing.T) {
	h := actortest.New(usersessions.Kind)
	h.Step("acme/alice", &protocol.RegisterUserSession{SessionId: "s1", CreatedUnixNano: 1, MaxSessions: 1})
	h.Step("acme/alice", &protocol.RegisterUserSession{SessionId: "s2", CreatedUnixNano: 2, MaxSessions: 1})
	if len(h.LastSends) != 1 || h.LastSends[0].To.Kind != session.KindName {
		t.Fatalf("eviction sends %v, want one to kind %q", h.LastSends, session.KindName)
	}
}

// TestOnlyTheSessionSpeaksForItself: a registration or unregistration sent
// by an actor must come from the session it names.
func TestOnlyTheSessionSpeaksForItself(t *testing.T) {
	h := actortest.New(usersessions.Kind)
	other := actors.Identity{Kind: session.KindName, ID: "s2"}
	out := h.StepFrom(other, "acme/alice", &protocol.RegisterUserSession{SessionId: "s1", CreatedUnixNano: 1})
	if !strings.Contains(out, "PERMISSION_DENIED") {
		t.Fatalf("foreign registration: %s", out)
	}
	out = h.StepFrom(actors.Identity{Kind: session.KindName, ID: "s1"}, "acme/alice", &protocol.RegisterUserSession{SessionId: "s1", CreatedUnixNano: 1})
	if strings.HasPrefix(out, "error") {
		t.Fatalf("own registration: %s", out)
	}
	out = h.StepFrom(other, "acme/alice", &protocol.UnregisterUserSession{SessionId: "s1"})
	if !strings.Contains(out, "PERMISSION_DENIED") {
		t.Fatalf("foreign unregistration: %s", out)
	}
}

// TestListIsBounded: whatever caps sessions claim, the list never holds
// more than MaxSessions, and the oldest go first.
func TestListIsBounded(t *testing.T) {
	h := actortest.New(usersessions.Kind)
	for i := range usersessions.MaxSessions + 5 {
		out := h.Step("acme/alice", &protocol.RegisterUserSession{
			SessionId: fmt.Sprintf("s%04d", i), CreatedUnixNano: int64(i + 1), MaxSessions: usersessions.MaxSessions,
		})
		if strings.HasPrefix(out, "error") || strings.HasPrefix(out, "APPLY") {
			t.Fatalf("register %d: %s", i, out)
		}
	}
	snap, _ := h.Actor("acme/alice").Snapshot()
	list := snap.(*protocol.UserSessionsState).GetSessions()
	if len(list) != usersessions.MaxSessions || list[0].GetSessionId() != "s0005" {
		t.Fatalf("list has %d, first %s", len(list), list[0].GetSessionId())
	}
	if out := h.Rebuild("acme/alice"); !strings.Contains(out, "identical") {
		t.Fatal(out)
	}
}
