package admin

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/protocol"
)

// TestKeysEndpoints: listing and rotating over a real lone node; the list
// never carries key material; bad bodies are 400 problem+json and rotate
// nothing.
func TestKeysEndpoints(t *testing.T) {
	n, srv := loneNode(t, 2)
	var set *protocol.KeySet
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if set, err = n.KeySet(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no keys: %v", err)
		}
	}
	token := waitToken(t, n)
	call := func(method, path, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}

	code, body, _ := call(http.MethodGet, cluster.KeysPath, "")
	if code != http.StatusOK {
		t.Fatalf("GET keys: %d %s", code, body)
	}
	var list cluster.KeyList
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, k := range list.Keys {
		states[k.Alg+" "+k.State]++
		if k.Kid == "" || k.ActivateAt.IsZero() || k.RemoveAt.IsZero() {
			t.Errorf("incomplete key %+v", k)
		}
	}
	if states["RS256 active"] != 1 || states["ES256 active"] != 1 {
		t.Fatalf("states %v, want one active key per algorithm", states)
	}
	noKeyMaterial := func(what, body string, set *protocol.KeySet) {
		t.Helper()
		for _, k := range set.GetKeys() {
			for _, enc := range []string{
				base64.StdEncoding.EncodeToString(k.GetPrivateKey()),
				base64.RawURLEncoding.EncodeToString(k.GetPrivateKey()),
				hex.EncodeToString(k.GetPrivateKey()),
			} {
				// Any 40-character slice of the encoding would do; the
				// middle is past the DER headers all keys share.
				if mid := enc[len(enc)/2 : len(enc)/2+40]; strings.Contains(body, mid) {
					t.Fatalf("%s contains private key bytes of %s", what, k.GetKid())
				}
			}
		}
		if strings.Contains(body, "private") {
			t.Fatalf("%s mentions private keys: %s", what, body)
		}
	}
	noKeyMaterial("key list", body, set)

	for _, bad := range []string{`{"force":`, `{"forse":true}`, `[true]`, `{"force":"yes"}`, `{"force":true} {}`} {
		code, body, ct := call(http.MethodPost, cluster.KeysRotatePath, bad)
		if code != http.StatusBadRequest || ct != "application/problem+json" {
			t.Errorf("rotate with body %s: %d %s %s, want 400 problem+json", bad, code, ct, body)
		}
	}
	if now, _ := n.KeySet(); now.GetVersion() != set.GetVersion() {
		t.Fatalf("a refused rotation changed the key set (version %d -> %d)", set.GetVersion(), now.GetVersion())
	}

	code, body, _ = call(http.MethodPost, cluster.KeysRotatePath, `{"force":true}`)
	if code != http.StatusOK {
		t.Fatalf("forced rotate: %d %s", code, body)
	}
	var rotated cluster.KeyList
	if err := json.Unmarshal([]byte(body), &rotated); err != nil {
		t.Fatal(err)
	}
	if rotated.Version <= list.Version {
		t.Fatalf("version %d after rotation of %d", rotated.Version, list.Version)
	}
	withdrawn := 0
	for _, k := range rotated.Keys {
		if k.Compromised {
			withdrawn++
		}
	}
	if withdrawn != 2 {
		t.Fatalf("forced rotation marked %d keys compromised, want 2:\n%s", withdrawn, body)
	}
	after, _ := n.KeySet()
	noKeyMaterial("rotation answer", body, after)

	// An empty body is a plain rotation.
	if code, body, _ := call(http.MethodPost, cluster.KeysRotatePath, ""); code != http.StatusOK {
		t.Fatalf("rotate without a body: %d %s", code, body)
	}
}
