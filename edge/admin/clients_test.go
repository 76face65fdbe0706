package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wardhq/ward/cluster"
)

// TestClientEndpoints: the client registry over HTTP on a real lone node:
// malformed, oversized and invalid bodies are 400 problem+json and store
// nothing; unknown ids 404; an existing id 409; answers carrying a secret
// are not cacheable and listings never show a secret.
func TestClientEndpoints(t *testing.T) {
	n, srv := loneNode(t, 2)
	token := waitToken(t, n)
	call := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", cluster.ClientsPath, ``, 400},
		{"POST", cluster.ClientsPath, `{"client_id":`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a","grant_types":["client_credentials"],"secret_sha256":"AAAA"}`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a","grant_types":["client_credentials"]} {}`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a","grant_types":["client_credentials"],"name":"` + strings.Repeat("x", maxClientBody) + `"}`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a/b","grant_types":["client_credentials"]}`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a","grant_types":["password"]}`, 400},
		{"POST", cluster.ClientsPath, `{"client_id":"a","grant_types":["jwt-bearer"],"keys":[{"jwk":"nope"}]}`, 400},
		{"GET", cluster.ClientPath("nobody"), ``, 404},
		{"PUT", cluster.ClientPath("nobody"), `{"grant_types":["client_credentials"]}`, 404},
		{"DELETE", cluster.ClientPath("nobody"), ``, 404},
		{"POST", cluster.ClientPath("nobody") + "/secret", ``, 404},
		{"GET", cluster.ClientPath(strings.Repeat("x", 129)), ``, 400},
	} {
		resp, body := call(c.method, c.path, c.body)
		if resp.StatusCode != c.want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s %.60s: %d %q %.200s, want %d problem+json", c.method, c.path, c.body, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.want)
		}
	}
	if list, err := n.Clients(); err != nil || len(list) != 0 {
		t.Fatalf("refused requests stored clients: %v %v", list, err)
	}

	resp, body := call("POST", cluster.ClientsPath, `{"client_id":"svc","grant_types":["client_credentials"],"scopes":["a"]}`)
	var ans cluster.ClientSecretAnswer
	if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &ans) != nil || ans.ClientSecret == "" || !ans.Client.HasSecret ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("register: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	if resp, body := call("POST", cluster.ClientsPath, `{"client_id":"svc","grant_types":["client_credentials"]}`); resp.StatusCode != 409 {
		t.Fatalf("register twice: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []string{`{"overlap_seconds":-1}`, `{"overlap_seconds":2592001}`, `{"overlap":5}`} {
		if resp, body := call("POST", cluster.ClientPath("svc")+"/secret", bad); resp.StatusCode != 400 {
			t.Errorf("rotate with %s: %d %s", bad, resp.StatusCode, body)
		}
	}
	if resp, body := call("PUT", cluster.ClientPath("svc"), `{"client_id":"other","grant_types":["client_credentials"]}`); resp.StatusCode != 400 {
		t.Errorf("update naming another client: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{cluster.ClientsPath, cluster.ClientPath("svc")} {
		resp, body := call("GET", path, "")
		if resp.StatusCode != 200 || strings.Contains(body, ans.ClientSecret) || strings.Contains(strings.ToLower(body), "sha256") {
			t.Fatalf("GET %s: %d, shows a secret or its hash:\n%s", path, resp.StatusCode, body)
		}
	}
}
