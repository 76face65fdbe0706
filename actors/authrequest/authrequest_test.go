package authrequest_test

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands:
//
//	create id=ID [client=C] [redirect=URI] [scopes=a,b] [challenge=X method=S256] [ttl=10m] [state=S]
//	get id=ID
//	complete id=ID subject=S [amr=pwd,otp] [acr=L1] [consent=1]
//	approve id=ID
//	save id=ID code=C         stores sha256(C)
//	redeem id=ID code=C
//	check id=ID code=C        redeem with check_only
//	session id=ID sid=S
//	advance d=DURATION        moves the harness clock
//	fire id=ID                delivers the expiry timer
//	rebuild id=ID
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(authrequest.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				if !d.HasArg(name) {
					return def
				}
				var v string
				d.ScanArgs(t, name, &v)
				return v
			}
			list := func(name string) []string {
				if v := arg(name, ""); v != "" {
					return strings.Split(v, ",")
				}
				return nil
			}
			hash := func(code string) []byte {
				if code == "short" {
					return []byte{1, 2, 3}
				}
				s := sha256.Sum256([]byte(code))
				return s[:]
			}
			id := arg("id", "")
			switch d.Cmd {
			case "create":
				ttl, err := time.ParseDuration(arg("ttl", "10m"))
				if err != nil {
					d.Fatalf(t, "ttl: %v", err)
				}
				data := &protocol.AuthRequestData{
					ClientId: arg("client", "web"), RedirectUri: arg("redirect", "https://app.example/cb"),
					Scopes: list("scopes"), State: arg("state", "st"), ResponseType: arg("response_type", "code"),
					CodeChallenge: arg("challenge", ""), CodeChallengeMethod: arg("method", ""),
				}
				if n := arg("long_state", ""); n != "" {
					data.State = strings.Repeat("s", authrequest.MaxStateLen+1)
				}
				return h.Step(id, &protocol.CreateAuthRequest{Data: data, TtlNanos: int64(ttl)})
			case "get":
				return h.Step(id, &protocol.GetAuthRequest{})
			case "complete":
				return h.Step(id, &protocol.CompleteAuthRequest{Subject: arg("subject", ""), Amr: list("amr"), Acr: arg("acr", ""), ConsentRequired: arg("consent", "") == "1"})
			case "approve":
				return h.Step(id, &protocol.ApproveAuthRequest{})
			case "save":
				return h.Step(id, &protocol.SaveAuthCode{CodeHash: hash(arg("code", ""))})
			case "redeem":
				return h.Step(id, &protocol.RedeemAuthCode{CodeHash: hash(arg("code", ""))})
			case "check":
				return h.Step(id, &protocol.RedeemAuthCode{CodeHash: hash(arg("code", "")), CheckOnly: true})
			case "session":
				return h.Step(id, &protocol.RecordAuthSession{SessionId: arg("sid", "")})
			case "advance":
				dur, err := time.ParseDuration(arg("d", ""))
				if err != nil {
					d.Fatalf(t, "d: %v", err)
				}
				h.Now = h.Now.Add(dur)
				return "now " + h.Now.Sub(actortest.Epoch).String() + "\n"
			case "fire":
				return h.Fire(id, "expiry", &protocol.GetAuthRequest{})
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return h.Step(id, &protocol.StoredTimer{Name: "x"})
			}
			d.Fatalf(t, "unknown command %s", d.Cmd)
			return ""
		})
	})
}

// TestRestoreRejectsOtherMessages: a foreign snapshot is an error.
func TestRestoreRejectsOtherMessages(t *testing.T) {
	if err := authrequest.New("a").Restore(&protocol.RegisterValue{}); err == nil {
		t.Fatal("restore from a register snapshot succeeded")
	}
}
