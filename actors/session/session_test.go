package session_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands:
//
//	create id=ID subject=S client=C ttl=DUR
//	rotate id=ID secret=(last|wrong|previous)
//	touch id=ID / revoke id=ID reason=R / get id=ID
//	advance by=DUR        move the clock
//	fire id=ID timer=NAME deliver a durable timer
//	timers id=ID          pending timers
//	rebuild id=ID         rebuild from events and from a snapshot; must agree
//	send id=ID msg=TYPE   deliver a message the actor does not handle
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(session.Kind)
		secrets := map[string][][]byte{} // id -> every secret issued, oldest first
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			id := ""
			if d.HasArg("id") {
				d.ScanArgs(t, "id", &id)
			}
			var out string
			switch d.Cmd {
			case "create":
				var subject, client, ttl string
				d.ScanArgs(t, "subject", &subject)
				d.ScanArgs(t, "client", &client)
				d.ScanArgs(t, "ttl", &ttl)
				dur, err := time.ParseDuration(ttl)
				if err != nil {
					d.Fatalf(t, "ttl: %v", err)
				}
				out = h.Step(id, &protocol.CreateSession{Subject: subject, ClientId: client, TtlNanos: int64(dur)})
			case "rotate":
				var which string
				d.ScanArgs(t, "secret", &which)
				issued := secrets[id]
				var s []byte
				switch which {
				case "last":
					s = issued[len(issued)-1]
				case "previous":
					s = issued[len(issued)-2]
				case "wrong":
					s = make([]byte, session.SecretLen)
				default:
					d.Fatalf(t, "secret=%s", which)
				}
				out = h.Step(id, &protocol.RotateRefresh{PresentedSecret: s})
			case "touch":
				out = h.Step(id, &protocol.TouchSession{})
			case "revoke":
				var reason string
				d.ScanArgs(t, "reason", &reason)
				out = h.Step(id, &protocol.RevokeSession{Reason: reason})
			case "get":
				out = h.Step(id, &protocol.GetSession{})
			case "advance":
				var by string
				d.ScanArgs(t, "by", &by)
				dur, err := time.ParseDuration(by)
				if err != nil {
					d.Fatalf(t, "by: %v", err)
				}
				h.Now = h.Now.Add(dur)
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "fire":
				var name string
				d.ScanArgs(t, "timer", &name)
				out = h.Fire(id, name, &protocol.ExpireSession{})
			case "timers":
				return h.Timers(id)
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				out = h.Step(id, &protocol.StoredTimer{Name: "not-a-session-command"})
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			if r, ok := h.LastReply.(*protocol.RefreshIssued); ok {
				if s := r.GetRefreshSecret(); len(secrets[id]) == 0 || string(secrets[id][len(secrets[id])-1]) != string(s) {
					secrets[id] = append(secrets[id], s)
				}
			}
			return out
		})
	})
}
