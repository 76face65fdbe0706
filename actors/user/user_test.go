package user_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/protocol"
)

// uid turns a story's short name into an actor id: "u1" is
// "acme/00000000-0000-4000-8000-000000000001"; anything with a "/" is used
// as is (to test id validation).
func uid(s string) string {
	if strings.Contains(s, "/") || !strings.HasPrefix(s, "u") {
		return s
	}
	return fmt.Sprintf("acme/00000000-0000-4000-8000-%012s", s[1:])
}

// TestStories runs testdata/*.txt. Commands (id=NAME, see uid):
//
//	register id first= last= phone= email= [long=FIELD:N]  FIELD gets N "x"s
//	start-email id / verify-email id token=(last|previous|wrong|short)
//	start-phone id / verify-phone id code=(last|wrong|CODE)
//	set-password id phc=P [long=N] / change-password id phc=P
//	credentials id / login id ok=(true|false) [times=N] (prints the last)
//	unlock|suspend|reactivate|delete id reason= [by=] / erase id [by=]
//	profile id / advance by=DUR / rebuild id / send id
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(user.Kind)
		tokens := map[string][][]byte{} // id -> e-mail tokens issued, oldest first
		codes := map[string]string{}    // id -> last phone code
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name string) string {
				var v string
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			id := uid(arg("id"))
			long := func(field, v string) string {
				if l := arg("long"); l != "" {
					f, n, _ := strings.Cut(l, ":")
					if f == field {
						var k int
						fmt.Sscan(n, &k)
						return strings.Repeat("x", k)
					}
				}
				return v
			}
			step := func(m protocol.Message) string {
				out := h.Step(id, m)
				switch r := h.LastReply.(type) {
				case *protocol.UserRegistration:
					tokens[id] = append(tokens[id], r.GetEmailVerification().GetToken())
				case *protocol.EmailVerificationIssued:
					tokens[id] = append(tokens[id], r.GetToken())
				case *protocol.PhoneVerificationIssued:
					codes[id] = r.GetCode()
				}
				h.LastReply = nil
				return out
			}
			switch d.Cmd {
			case "register":
				return step(&protocol.RegisterUser{
					FirstName: long("first_name", arg("first")), LastName: long("last_name", arg("last")),
					Phone: long("phone", arg("phone")), Email: long("email", arg("email")),
				})
			case "start-email":
				return step(&protocol.StartEmailVerification{})
			case "verify-email":
				var tok []byte
				ts := tokens[id]
				switch arg("token") {
				case "last":
					tok = ts[len(ts)-1]
				case "previous":
					tok = ts[len(ts)-2]
				case "wrong":
					tok = make([]byte, user.TokenLen)
				case "short":
					tok = []byte{1, 2, 3}
				default:
					d.Fatalf(t, "token=%s", arg("token"))
				}
				return step(&protocol.VerifyEmail{Token: tok})
			case "start-phone":
				return step(&protocol.StartPhoneVerification{})
			case "verify-phone":
				code := arg("code")
				switch code {
				case "last":
					code = codes[id]
				case "wrong":
					// Any 6 digits but the real code.
					code = "000000"
					if codes[id] == code {
						code = "000001"
					}
				}
				return step(&protocol.VerifyPhone{Code: code})
			case "set-password":
				return step(&protocol.SetPassword{Phc: long("phc", arg("phc"))})
			case "change-password":
				return step(&protocol.ChangePassword{Phc: long("phc", arg("phc"))})
			case "credentials":
				return step(&protocol.GetCredentials{})
			case "login":
				times := 1
				if d.HasArg("times") {
					d.ScanArgs(t, "times", &times)
				}
				var out string
				for range times {
					out = step(&protocol.RecordLogin{Success: arg("ok") == "true"})
				}
				return out
			case "unlock":
				return step(&protocol.UnlockUser{Reason: long("reason", arg("reason")), By: arg("by")})
			case "suspend":
				return step(&protocol.SuspendUser{Reason: long("reason", arg("reason")), By: arg("by")})
			case "reactivate":
				return step(&protocol.ReactivateUser{Reason: arg("reason"), By: arg("by")})
			case "delete":
				return step(&protocol.DeleteUser{Reason: arg("reason"), By: arg("by")})
			case "erase":
				return step(&protocol.EraseUser{By: arg("by")})
			case "profile":
				return step(&protocol.GetProfile{})
			case "advance":
				var by time.Duration
				var s string
				d.ScanArgs(t, "by", &s)
				by, err := time.ParseDuration(s)
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				h.Now = h.Now.Add(by)
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return step(&protocol.RegisterGet{})
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

// TestRestoreRejectsOtherMessages: a snapshot or event of another kind must
// not be taken for a user's.
func TestRestoreRejectsOtherMessages(t *testing.T) {
	a := user.New("acme/00000000-0000-4000-8000-000000000001")
	if err := a.Restore(&protocol.SessionState{}); err == nil {
		t.Fatal("Restore(SessionState) succeeded")
	}
	if err := a.Apply(&protocol.SessionTouched{}); err == nil {
		t.Fatal("Apply(SessionTouched) succeeded")
	}
}
