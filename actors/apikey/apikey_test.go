package apikey_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/apikey"
	"github.com/wardhq/ward/protocol"
)

const keyID = "k0000000000000000000000a"

// TestStories runs testdata/*.txt. Commands (id=k...a, tenant=acme, by=admin
// unless given):
//
//	create name= scopes=a,b expires=DUR [check]  CreateAPIKey (expires after now)
//	rotate overlap=DUR / revoke / get       the admin commands
//	verify gen=N | wrong                    VerifyAPIKey with the secret of
//	                                        generation N (1 = created)
//	tick DUR / rebuild
//	index-add tenant= key= / index-list tenant= / index-fill tenant= n=
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(apikey.Kind)
		ix := actortest.New(apikey.IndexKind)
		secrets := map[string][][]byte{} // key id -> secret per generation
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			arg := func(name, def string) string {
				v := def
				if d.HasArg(name) {
					d.ScanArgs(t, name, &v)
				}
				return v
			}
			dur := func(name string) time.Duration {
				if !d.HasArg(name) {
					return 0
				}
				v, err := time.ParseDuration(arg(name, ""))
				if err != nil {
					d.Fatalf(t, "%s: %v", name, err)
				}
				return v
			}
			id, tenant, by := arg("id", keyID), arg("tenant", "acme"), arg("by", "admin")
			issued := func(out string) string {
				if r, ok := h.LastReply.(*protocol.APIKeyIssued); ok && !strings.HasPrefix(out, "error") {
					secrets[id] = append(secrets[id], r.GetSecret())
					h.LastReply = nil
				}
				return out
			}
			switch d.Cmd {
			case "create":
				var scopes []string
				if s := arg("scopes", ""); s != "" {
					scopes = strings.Split(s, ",")
				}
				m := &protocol.CreateAPIKey{Tenant: tenant, Name: arg("name", "ci"), Scopes: scopes, CreatedBy: by, CheckOnly: d.HasArg("check")}
				if d.HasArg("expires") {
					m.ExpiresUnixNano = h.Now.Add(dur("expires")).UnixNano()
				}
				return issued(h.Step(id, m))
			case "rotate":
				return issued(h.Step(id, &protocol.RotateAPIKey{Tenant: tenant, OverlapNanos: int64(dur("overlap")), By: by}))
			case "revoke":
				return h.Step(id, &protocol.RevokeAPIKey{Tenant: tenant, By: by})
			case "get":
				return h.Step(id, &protocol.GetAPIKey{Tenant: tenant})
			case "verify":
				var secret []byte
				if d.HasArg("gen") {
					var gen int
					d.ScanArgs(t, "gen", &gen)
					if gen < 1 || gen > len(secrets[id]) {
						d.Fatalf(t, "no generation %d of %s", gen, id)
					}
					secret = secrets[id][gen-1]
				} else {
					secret = bytes.Repeat([]byte{0xee}, apikey.SecretLen)
				}
				return h.Step(id, &protocol.VerifyAPIKey{SecretSha256: apikey.HashSecret(secret)})
			case "verify-raw":
				return h.Step(id, &protocol.VerifyAPIKey{SecretSha256: []byte(arg("hash", ""))})
			case "tick":
				h.Now = h.Now.Add(dur("d"))
				return fmt.Sprintf("now T+%s\n", h.Now.Sub(actortest.Epoch))
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				return h.Step(id, &protocol.GetTree{})
			case "index-add":
				return ix.Step(tenant, &protocol.AddAPIKeyToIndex{KeyId: arg("key", keyID)})
			case "index-list":
				return ix.Step(tenant, &protocol.ListAPIKeyIndex{})
			case "index-fill":
				var n int
				d.ScanArgs(t, "n", &n)
				for i := range n {
					if out := ix.Step(tenant, &protocol.AddAPIKeyToIndex{KeyId: fmt.Sprintf("f%023d", i)}); strings.HasPrefix(out, "error") {
						return fmt.Sprintf("after %d: %s", i, out)
					}
				}
				return fmt.Sprintf("filled %d\n", n)
			case "index-rebuild":
				return ix.Rebuild(tenant)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
				return ""
			}
		})
	})
}

func TestFormatParse(t *testing.T) {
	secret := bytes.Repeat([]byte{0xfb}, apikey.SecretLen) // base64url has '_' and '-'
	k := apikey.Format(keyID, secret)
	id, got, err := apikey.Parse(k)
	if err != nil || id != keyID || !bytes.Equal(got, secret) {
		t.Fatalf("Parse(Format) = %q %x %v", id, got, err)
	}
	for _, bad := range []string{
		"", "ward_", "ward_" + keyID, "ward_" + keyID + "_", "WARD_" + k[5:], k + "A", k[:len(k)-1],
		"ward_K0000000000000000000000A_" + k[len("ward_")+apikey.IDLen+1:], // id case
		k[:len(k)-1] + "9", // non-canonical trailing bits
		"ward_short_" + k[len("ward_")+apikey.IDLen+1:],
		strings.Repeat("x", 10000),
	} {
		if _, _, err := apikey.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	id1, err := apikey.NewID(bytes.NewReader(bytes.Repeat([]byte{255, 7}, 100)))
	if err != nil || apikey.ValidID(id1) != nil {
		t.Fatalf("NewID = %q %v", id1, err)
	}
}

// FuzzParse: Parse never panics, and whatever it accepts formats back to
// the same string (one key, one spelling).
func FuzzParse(f *testing.F) {
	f.Add(apikey.Format(keyID, bytes.Repeat([]byte{1}, apikey.SecretLen)))
	f.Add("ward_" + keyID + "_")
	f.Add("ward__")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := apikey.Parse(s)
		if err != nil {
			return
		}
		if apikey.Format(id, secret) != s {
			t.Fatalf("Parse(%q) accepted a non-canonical key", s)
		}
	})
}
