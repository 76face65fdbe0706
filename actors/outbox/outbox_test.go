package outbox_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands (the actor is tenant "acme"
// unless id= says otherwise):
//
//	enqueue id=I [ch=mail|sms|x] [to=T] [subject=S] [body=B]
//	pending [limit=N] [lease=D]      due messages, optionally leased
//	sent id=I [via=smtp|sms|dev|none] / fail id=I [err=E]
//	list [limit=N] [to=T]            newest first, every status
//	tick d=D                         advance the clock
//	fire                             deliver the retry timer
//	timers / rebuild
//	fill n=N [status=sent]           enqueue N messages (and mark them)
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(outbox.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			unescape := strings.NewReplacer(`\r`, "\r", `\n`, "\n")
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return unescape.Replace(v)
			}
			num := func(name string) uint32 {
				var n uint32
				if d.HasArg(name) {
					d.ScanArgs(t, name, &n)
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
			switch d.Cmd {
			case "enqueue":
				ch := map[string]protocol.OutboxChannel{"mail": protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL, "sms": protocol.OutboxChannel_OUTBOX_CHANNEL_SMS}[arg("ch", "mail")]
				to := arg("to", "ada@example.com")
				if ch == protocol.OutboxChannel_OUTBOX_CHANNEL_SMS && !d.HasArg("to") {
					to = "+41791234567"
				}
				subject := arg("subject", "Confirm your e-mail")
				if ch == protocol.OutboxChannel_OUTBOX_CHANNEL_SMS && !d.HasArg("subject") {
					subject = ""
				}
				return h.Step(id, &protocol.OutboxEnqueue{Id: arg("id", ""), Channel: ch, To: to, Subject: subject, Body: arg("body", "hello")})
			case "pending":
				return h.Step(id, &protocol.OutboxListPending{Limit: num("limit"), LeaseNanos: int64(dur("lease"))})
			case "sent":
				via := map[string]protocol.OutboxVia{"smtp": protocol.OutboxVia_OUTBOX_VIA_SMTP, "sms": protocol.OutboxVia_OUTBOX_VIA_SMS_GATEWAY, "dev": protocol.OutboxVia_OUTBOX_VIA_DEV_MAILBOX}[arg("via", "smtp")]
				return h.Step(id, &protocol.OutboxMarkSent{Id: arg("id", ""), Via: via})
			case "fail":
				return h.Step(id, &protocol.OutboxMarkFailed{Id: arg("id", ""), Error: arg("err", "connection refused")})
			case "list":
				return h.Step(id, &protocol.OutboxListMessages{Limit: num("limit"), To: arg("to", "")})
			case "tick":
				h.Now = h.Now.Add(dur("d"))
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "fire":
				return h.Fire(id, "retry", &protocol.OutboxRetryDue{})
			case "timers":
				return h.Timers(id)
			case "rebuild":
				return h.Rebuild(id)
			case "fill":
				n := int(num("n"))
				var last string
				for i := 0; i < n; i++ {
					mid := fmt.Sprintf("fill-%d", i)
					last = h.Step(id, &protocol.OutboxEnqueue{Id: mid, Channel: protocol.OutboxChannel_OUTBOX_CHANNEL_SMS, To: "+41791234567", Body: "code"})
					if strings.HasPrefix(last, "error") {
						return fmt.Sprintf("enqueue %d: %s", i, last)
					}
					if arg("status", "") == "sent" {
						if out := h.Step(id, &protocol.OutboxMarkSent{Id: mid, Via: protocol.OutboxVia_OUTBOX_VIA_SMTP}); strings.HasPrefix(out, "error") {
							return out
						}
					}
				}
				return fmt.Sprintf("enqueued %d\n", n)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := outbox.Backoff(uint32(i + 1)); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
}
