package consent_test

import (
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt: grant id=ID scopes=a,b | get id=ID |
// revoke id=ID | rebuild id=ID.
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(consent.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var id, scopes string
			d.ScanArgs(t, "id", &id)
			if d.HasArg("scopes") {
				d.ScanArgs(t, "scopes", &scopes)
			}
			switch d.Cmd {
			case "grant":
				var list []string
				if scopes != "" {
					list = strings.Split(scopes, ",")
				}
				return h.Step(id, &protocol.GrantConsent{Scopes: list})
			case "get":
				return h.Step(id, &protocol.GetConsent{})
			case "revoke":
				return h.Step(id, &protocol.RevokeConsent{})
			case "rebuild":
				return h.Rebuild(id)
			}
			d.Fatalf(t, "unknown command %s", d.Cmd)
			return ""
		})
	})
}

func TestCovers(t *testing.T) {
	if !consent.Covers([]string{"email", "profile"}, []string{"openid", "email"}) {
		t.Error("granted scopes not covered")
	}
	if consent.Covers([]string{"email"}, []string{"openid", "email", "phone"}) {
		t.Error("a new scope covered")
	}
	if !consent.Covers(nil, []string{"openid"}) {
		t.Error("openid alone needs no consent")
	}
}
