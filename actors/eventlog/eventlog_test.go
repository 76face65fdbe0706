package eventlog_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands (the actor is tenant "acme"
// unless actor= says otherwise):
//
//	append source=S pos=1,2,3 [tenant=T] [at=D] [bad=POS:what]
//	    EventLogAppend of one user event per position (id e-S-POS, subject
//	    uPOS, time T+D); bad= breaks the entry at POS: what is nil, noid,
//	    notype, notime or bigdata
//	fill source=S from=N n=N [at=D] [step=D]
//	    append n entries (positions from..), one batch of up to 500 each,
//	    times at, at+step, ...; prints the last answer only
//	read [after=N] [limit=N]     EventLogRead, printed as seq:id lines
//	tick d=D / rebuild
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(eventlog.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			num := func(name string) uint64 {
				n, err := strconv.ParseUint(arg(name, "0"), 10, 64)
				if err != nil {
					d.Fatalf(t, "%s: %v", name, err)
				}
				return n
			}
			dur := func(name string) time.Duration {
				v, err := time.ParseDuration(arg(name, "0s"))
				if err != nil {
					d.Fatalf(t, "%s: %v", name, err)
				}
				return v
			}
			id := arg("actor", "acme")
			source := arg("source", "p1")
			tenant := arg("tenant", id)
			entry := func(pos uint64, at time.Time) *protocol.FeedEntry {
				data, _ := protocol.Pack(&protocol.UserEventData{UserId: fmt.Sprintf("u%d", pos)})
				return &protocol.FeedEntry{Position: pos, Event: &protocol.EventEnvelope{
					Id: fmt.Sprintf("e-%s-%d", source, pos), Type: "identity.user.registered.v1", Tenant: tenant,
					Subject: fmt.Sprintf("u%d", pos), TimeUnixNano: at.UnixNano(), Data: data,
				}}
			}
			switch d.Cmd {
			case "append":
				m := &protocol.EventLogAppend{Source: source}
				at := actortest.Epoch.Add(dur("at"))
				if p := arg("pos", ""); p != "" {
					for _, s := range strings.Split(p, ",") {
						n, err := strconv.ParseUint(s, 10, 64)
						if err != nil {
							d.Fatalf(t, "pos: %v", err)
						}
						m.Entries = append(m.Entries, entry(n, at))
					}
				}
				if b := arg("bad", ""); b != "" {
					ps, what, _ := strings.Cut(b, ":")
					for _, e := range m.Entries {
						if strconv.FormatUint(e.Position, 10) != ps {
							continue
						}
						switch what {
						case "nil":
							e.Event = nil
						case "noid":
							e.Event.Id = ""
						case "notype":
							e.Event.Type = ""
						case "notime":
							e.Event.TimeUnixNano = 0
						case "bigdata":
							e.Event.Data.Value = make([]byte, 5000)
						default:
							d.Fatalf(t, "bad: unknown %q", what)
						}
					}
				}
				return h.Step(id, m)
			case "fill":
				from, n := num("from"), num("n")
				at, step := actortest.Epoch.Add(dur("at")), dur("step")
				var last string
				for done := uint64(0); done < n; {
					m := &protocol.EventLogAppend{Source: source}
					for ; done < n && len(m.Entries) < eventlog.MaxBatch; done++ {
						m.Entries = append(m.Entries, entry(from+done, at.Add(time.Duration(done)*step)))
					}
					h.Step(id, m)
					last = actortest.Format(h.LastReply)
				}
				return "reply " + last + "\n"
			case "read":
				out := h.Step(id, &protocol.EventLogRead{After: num("after"), Limit: uint32(num("limit"))})
				if strings.HasPrefix(out, "error") {
					return out
				}
				p := h.LastReply.(*protocol.EventLogPage)
				var b strings.Builder
				fmt.Fprintf(&b, "head=%d oldest=%d gap=%t events=%d\n", p.GetHead(), p.GetOldest(), p.GetGap(), len(p.GetEvents()))
				for _, e := range p.GetEvents() {
					fmt.Fprintf(&b, "  %d %s %s T+%s\n", e.GetSeq(), e.GetEvent().GetId(), e.GetEvent().GetSubject(),
						time.Unix(0, e.GetEvent().GetTimeUnixNano()).Sub(actortest.Epoch))
				}
				return b.String()
			case "tick":
				h.Now = h.Now.Add(dur("d"))
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "rebuild":
				return h.Rebuild(id)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}
