package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// TestAdminEndpoints runs the handlers over a real lone node.
func TestAdminEndpoints(t *testing.T) {
	n, srv := loneNode(t, 4)
	for deadline := time.Now().Add(20 * time.Second); !n.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
	}
	token := waitToken(t, n)
	call := func(method, path string) (int, map[string]any, string) {
		t.Helper()
		code, out, h := bearerCall(t, srv, method, path, token)
		return code, out, h.Get("Content-Type")
	}

	code, st, _ := call("GET", cluster.StatusPath)
	if code != 200 || len(st["partitions"].([]any)) != 4 || st["meta"].(map[string]any)["leader"] != "solo" {
		t.Fatalf("status: %d %v", code, st)
	}
	if code, local, _ := call("GET", cluster.LocalStatusPath); code != 200 || local["name"] != "solo" || len(local["partitions"].([]any)) != 4 {
		t.Fatalf("local: %d %v", code, local)
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", cluster.DrainPath, 400},
		{"POST", cluster.DrainPath + "?name=" + strings.Repeat("n", maxNameLen+1), 400},
		{"POST", cluster.DrainPath + "?name=nobody", 404},
		{"POST", cluster.RemovePath + "?name=nobody", 404},
		{"GET", cluster.DrainPath + "?name=solo", 404}, // drain is POST only
		{"GET", "/cluster/nothing", 404},
	} {
		code, body, ct := call(tc.method, tc.path)
		if code != tc.status || ct != "application/problem+json" || body["detail"] == "" {
			t.Errorf("%s %s: %d %s %v, want %d problem+json", tc.method, tc.path, code, ct, body, tc.status)
		}
	}
	// Nothing of the refused requests changed the member.
	_, st, _ = call("GET", cluster.StatusPath)
	if m := st["members"].([]any)[0].(map[string]any); m["state"] != "alive" {
		t.Fatalf("member after refused requests: %v", m)
	}
	// A real drain is accepted.
	if code, body, _ := call("POST", cluster.DrainPath+"?name=solo"); code != http.StatusAccepted {
		t.Fatalf("drain: %d %v", code, body)
	}
	// Remove is accepted, also twice; after it, removal is final: a drain
	// is refused as a conflict.
	for range 2 {
		if code, body, _ := call("POST", cluster.RemovePath+"?name=solo"); code != http.StatusAccepted {
			t.Fatalf("remove: %d %v", code, body)
		}
	}
	if code, body, ct := call("POST", cluster.DrainPath+"?name=solo"); code != http.StatusConflict || ct != "application/problem+json" || !strings.Contains(fmt.Sprint(body["detail"]), "removed") {
		t.Fatalf("drain of a removed member: %d %s %v, want 409 problem+json", code, ct, body)
	}
	_, st, _ = call("GET", cluster.StatusPath)
	if m := st["members"].([]any)[0].(map[string]any); m["state"] != "removed" {
		t.Fatalf("member after remove and a refused drain: %v", m)
	}
}

// waitToken waits for the lone node's meta leadership to create the
// cluster's operator token.
func waitToken(t *testing.T, n *cluster.Node) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tok, err := n.AdminToken()
		if err == nil {
			if !strings.HasPrefix(tok, cluster.AdminTokenPrefix) || len(tok) < 40 {
				t.Fatalf("operator token %q has the wrong shape", tok[:min(len(tok), 10)])
			}
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("no operator token: %v", err)
		}
	}
}

// fakeNode records whether a handler reached it; only AdminToken and Local
// answer.
type fakeNode struct {
	token   string
	tokErr  error
	reached int
}

func (f *fakeNode) Status(context.Context) (*cluster.Status, error) {
	f.reached++
	return nil, fmt.Errorf("not in this test")
}
func (f *fakeNode) Local() cluster.LocalStatus { f.reached++; return cluster.LocalStatus{Name: "fake"} }
func (f *fakeNode) Drain(context.Context, string) error {
	f.reached++
	return nil
}
func (f *fakeNode) Remove(context.Context, string) error {
	f.reached++
	return nil
}
func (f *fakeNode) KeySet() (*protocol.KeySet, error) {
	f.reached++
	return nil, fmt.Errorf("not in this test")
}
func (f *fakeNode) RotateKeys(context.Context, bool) (*protocol.KeySet, error) {
	f.reached++
	return nil, fmt.Errorf("not in this test")
}
func (f *fakeNode) AdminToken() (string, error) { return f.token, f.tokErr }
func (f *fakeNode) RotateAdminToken(context.Context) (string, error) {
	f.reached++
	return "", fmt.Errorf("not in this test")
}
func (f *fakeNode) Clients() ([]cluster.ClientInfo, error) {
	f.reached++
	return nil, nil
}
func (f *fakeNode) Client(string) (cluster.ClientInfo, error) {
	f.reached++
	return cluster.ClientInfo{}, cluster.ErrUnknownClient
}
func (f *fakeNode) RegisterClient(context.Context, cluster.ClientSpec) (cluster.ClientSecretAnswer, error) {
	f.reached++
	return cluster.ClientSecretAnswer{}, nil
}
func (f *fakeNode) UpdateClient(context.Context, string, cluster.ClientSpec) (cluster.ClientInfo, error) {
	f.reached++
	return cluster.ClientInfo{}, nil
}
func (f *fakeNode) DisableClient(context.Context, string) (cluster.ClientInfo, error) {
	f.reached++
	return cluster.ClientInfo{}, nil
}
func (f *fakeNode) RotateClientSecret(context.Context, string, time.Duration) (cluster.ClientSecretAnswer, error) {
	f.reached++
	return cluster.ClientSecretAnswer{}, nil
}

// TestOperatorToken: every admin endpoint, reads and unknown paths
// included, answers 401 in problem+json with a Bearer challenge unless the
// request carries the cluster's operator token, and a refused request
// reaches nothing behind the guard.
func TestOperatorToken(t *testing.T) {
	const tok = cluster.AdminTokenPrefix + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	f := &fakeNode{token: tok}
	srv := httptest.NewServer(Handler(f))
	defer srv.Close()
	do := func(method, path, auth string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	paths := []struct{ method, path string }{
		{"GET", cluster.StatusPath}, {"GET", cluster.LocalStatusPath}, {"GET", cluster.KeysPath},
		{"POST", cluster.KeysRotatePath}, {"POST", cluster.DrainPath + "?name=n1"},
		{"POST", cluster.RemovePath + "?name=n1"}, {"GET", "/cluster/nothing"},
		{"GET", cluster.ClientsPath}, {"POST", cluster.ClientsPath}, {"GET", cluster.ClientPath("svc")},
		{"PUT", cluster.ClientPath("svc")}, {"DELETE", cluster.ClientPath("svc")}, {"POST", cluster.ClientPath("svc") + "/secret"},
		{"POST", cluster.AdminTokenRotatePath},
	}
	for _, p := range paths {
		for _, c := range []struct{ auth, challenge string }{
			{"", `Bearer realm="ward-operator"`},
			{"Basic " + tok, `Bearer realm="ward-operator"`},
			{"Bearer", `Bearer realm="ward-operator"`},
			{"Bearer " + tok[:len(tok)-1], `Bearer realm="ward-operator", error="invalid_token"`},
			{"Bearer " + tok + "x", `Bearer realm="ward-operator", error="invalid_token"`},
			{"Bearer wardop_", `Bearer realm="ward-operator", error="invalid_token"`},
		} {
			resp, body := do(p.method, p.path, c.auth)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" ||
				resp.Header.Get("WWW-Authenticate") != c.challenge || body["title"] == nil {
				t.Errorf("%s %s with %q: %d %q %q %v", p.method, p.path, c.auth, resp.StatusCode,
					resp.Header.Get("Content-Type"), resp.Header.Get("WWW-Authenticate"), body)
			}
		}
	}
	if f.reached != 0 {
		t.Fatalf("refused requests reached the node %d times", f.reached)
	}
	// The right token passes; the scheme is case-insensitive (RFC 9110 §11.1).
	for _, auth := range []string{"Bearer " + tok, "bearer " + tok} {
		if resp, body := do("GET", cluster.LocalStatusPath, auth); resp.StatusCode != http.StatusOK || body["name"] != "fake" {
			t.Fatalf("right token (%s...): %d %v", auth[:7], resp.StatusCode, body)
		}
		if resp, _ := do("POST", cluster.DrainPath+"?name=n1", auth); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("drain with the right token: %d", resp.StatusCode)
		}
	}
	// Before the cluster has a token nothing is served, not even to a
	// caller that guesses an empty one.
	f2 := &fakeNode{tokErr: cluster.ErrNoAdminToken}
	srv2 := httptest.NewServer(Handler(f2))
	defer srv2.Close()
	for _, auth := range []string{"", "Bearer x"} {
		req, _ := http.NewRequest("GET", srv2.URL+cluster.LocalStatusPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv2.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || f2.reached != 0 {
			t.Fatalf("no token yet, auth %q: %d, reached %d", auth, resp.StatusCode, f2.reached)
		}
	}
}

// loneNode starts a real one-node cluster with the given partitions and
// serves Handler over it; both stop when the test ends.
func loneNode(t *testing.T, partitions int) (*cluster.Node, *httptest.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := persistence.Open(t.TempDir(), persistence.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.StartNode(cluster.NodeConfig{Store: store, Name: "solo", Partitions: partitions, Replicas: 1,
		Host: cluster.Config{Kinds: []actors.Kind{register.Kind}, Logger: log, Registerer: prometheus.NewRegistry()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(n))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
		_ = store.Close()
	})
	return n, srv
}

// TestRotateAdminToken: rotation answers a new token once; the old one is
// refused from then on, the new one accepted.
func TestRotateAdminToken(t *testing.T) {
	n, srv := loneNode(t, 2)
	old := waitToken(t, n)
	post := func(token string) (int, map[string]any, http.Header) {
		t.Helper()
		return bearerCall(t, srv, "POST", cluster.AdminTokenRotatePath, token)
	}
	code, out, h := post(old)
	fresh, _ := out["token"].(string)
	if code != 200 || !strings.HasPrefix(fresh, cluster.AdminTokenPrefix) || fresh == old || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotate: %d %v %v", code, out, h)
	}
	if cur, err := n.AdminToken(); err != nil || cur != fresh {
		t.Fatalf("node holds %q..., %v", cur[:min(len(cur), 12)], err)
	}
	if code, _, _ := post(old); code != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d", code)
	}
	code, out, _ = post(fresh)
	if code != 200 || out["token"] == fresh {
		t.Errorf("rotate with the new token: %d", code)
	}
}

// bearerCall calls an admin endpoint with token and decodes the JSON
// answer (problem details included); a non-JSON answer fails the test.
func bearerCall(t *testing.T, srv *httptest.Server, method, path, token string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out, resp.Header
}
