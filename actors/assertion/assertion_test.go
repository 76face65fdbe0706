package assertion_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt: use id=ID jti=J exp=SECONDS (from the
// harness clock) | advance by=SECONDS | rebuild id=ID | snapshot id=ID.
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(assertion.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "use":
				var id, jti string
				var exp int
				d.ScanArgs(t, "id", &id)
				d.ScanArgs(t, "jti", &jti)
				d.ScanArgs(t, "exp", &exp)
				return h.Step(id, &protocol.UseAssertion{Jti: jti, ExpiresUnixNano: h.Now.Add(time.Duration(exp) * time.Second).UnixNano()})
			case "advance":
				var by int
				d.ScanArgs(t, "by", &by)
				h.Now = h.Now.Add(time.Duration(by) * time.Second)
				return ""
			case "rebuild":
				var id string
				d.ScanArgs(t, "id", &id)
				return h.Rebuild(id)
			case "snapshot":
				var id string
				d.ScanArgs(t, "id", &id)
				s, err := h.Actor(id).Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				return actortest.Format(s) + "\n"
			}
			d.Fatalf(t, "unknown command %s", d.Cmd)
			return ""
		})
	})
}

// TestLiveBound: a client cannot grow its ledger past MaxLive; the
// entries that expire make room again.
func TestLiveBound(t *testing.T) {
	h := actortest.New(assertion.Kind)
	exp := h.Now.Add(time.Minute).UnixNano()
	for i := range assertion.MaxLive {
		if out := h.Step("c", &protocol.UseAssertion{Jti: strconv.Itoa(i), ExpiresUnixNano: exp}); !strings.Contains(out, "reply AssertionAccepted") {
			t.Fatalf("use %d: %s", i, out)
		}
	}
	if out := h.Step("c", &protocol.UseAssertion{Jti: "one-more", ExpiresUnixNano: exp}); !strings.Contains(out, "RESOURCE_EXHAUSTED") {
		t.Fatalf("over the bound: %s", out)
	}
	h.Now = h.Now.Add(time.Minute)
	if out := h.Step("c", &protocol.UseAssertion{Jti: "0", ExpiresUnixNano: h.Now.Add(time.Minute).UnixNano()}); !strings.Contains(out, "reply AssertionAccepted") {
		t.Fatalf("after expiry: %s", out)
	}
	s, _ := h.Actor("c").Snapshot()
	if n := len(s.(*protocol.AssertionLedger).GetUsed()); n != 1 {
		t.Errorf("ledger holds %d entries after expiry, want 1", n)
	}
	if out := h.Step("c", &protocol.GetConsent{}); !strings.Contains(out, "UNKNOWN_MESSAGE") {
		t.Errorf("unknown message: %s", out)
	}
}
