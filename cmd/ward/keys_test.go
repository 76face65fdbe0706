package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/jwks"
)

// jwksKids is the kids node via serves at /.well-known/jwks.json.
func (c *tcluster) jwksKids(via string) ([]string, error) {
	code, b, err := c.do(via, http.MethodGet, jwks.Path, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, &httpError{code, strings.TrimSpace(string(b))}
	}
	var doc jose.JWKS
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if _, err := doc.KeySet(); err != nil {
		return nil, err
	}
	var out []string
	for _, k := range doc.Keys {
		out = append(out, k.Kid)
	}
	return out, nil
}

func (c *tcluster) keysList(via string) cluster.KeyList {
	c.t.Helper()
	out, err := c.cli("keys", "list", "--json", "--server", "http://"+c.node(via).http).Output()
	if err != nil {
		c.t.Fatalf("ward keys list --json via %s: %v", via, err)
	}
	var kl cluster.KeyList
	if err := json.Unmarshal(out, &kl); err != nil {
		c.t.Fatalf("ward keys list --json: %v\n%s", err, out)
	}
	return kl
}

// TestClusterKeys: on a three-node cluster the meta leader creates signing
// keys; `ward keys rotate` through any node publishes new kids in the JWKS
// of every node, `ward keys list` shows both algorithms; a bad --server
// and a malformed body are refused clearly.
func TestClusterKeys(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()

	// Every node serves the leader's keys.
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range c.names() {
		for {
			kids, err := c.jwksKids(name)
			if err == nil && len(kids) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("JWKS of %s: %v %v, want the two active keys", name, kids, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	before := c.keysList("n1")

	// Rotate through a node that is not the meta leader when there is one,
	// so the call is forwarded.
	st, err := c.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	via := "n1"
	for _, name := range c.names() {
		if name != st.Meta.Leader {
			via = name
			break
		}
	}
	out, err := c.cli("keys", "rotate", "--server", "http://"+c.node(via).http).CombinedOutput()
	if err != nil {
		t.Fatalf("ward keys rotate via %s: %v\n%s", via, err, out)
	}
	if !strings.Contains(string(out), "rotated") {
		t.Fatalf("ward keys rotate printed:\n%s", out)
	}
	after := c.keysList(via)
	if after.Version <= before.Version {
		t.Fatalf("key set version %d after rotation (was %d)", after.Version, before.Version)
	}
	var fresh []string
	for _, k := range after.Keys {
		if !slices.ContainsFunc(before.Keys, func(o cluster.KeyInfo) bool { return o.Kid == k.Kid }) {
			fresh = append(fresh, k.Kid)
			if k.State != "next" {
				t.Errorf("new %s key %s is %q, want next (published, not signing yet)", k.Alg, k.Kid, k.State)
			}
		}
	}
	if len(fresh) != 2 {
		t.Fatalf("rotation added %d keys, want one per algorithm:\nbefore %+v\nafter %+v", len(fresh), before, after)
	}
	// The node that took the command serves them at once; the others as
	// soon as their meta replica applied the write.
	for _, name := range c.names() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids, err := c.jwksKids(name)
			if err == nil && slices.Contains(kids, fresh[0]) && slices.Contains(kids, fresh[1]) {
				break
			}
			if name == via || time.Now().After(deadline) {
				t.Fatalf("JWKS of %s: %v (%v), want the new kids %v", name, kids, err, fresh)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	out, err = exec.Command(c.bin, "keys", "list", "--server", c.node("n3").http, "--token-file", filepath.Join(c.node("n3").dir, adminTokenFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("ward keys list: %v\n%s", err, out)
	}
	for _, want := range []string{"RS256", "ES256", "active", "next", fresh[0]} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ward keys list lacks %q:\n%s", want, out)
		}
	}

	// Without the operator token: refused, with the way to pass it, a
	// non-zero exit, and nothing rotated.
	cmd := exec.Command(c.bin, "keys", "rotate", "--force", "--server", "http://"+c.node("n1").http)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, adminTokenEnv+"=") })
	out, err = cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "--token-file") {
		t.Fatalf("rotate without the operator token: err %v\n%s", err, out)
	}
	if v := c.keysList("n1").Version; v != after.Version {
		t.Fatalf("refused rotation changed the key set: version %d, was %d", v, after.Version)
	}

	// A server nobody listens on: a clear error and a non-zero exit.
	dead := freePortOn(t, "127.0.0.1")
	cmd = c.cli("keys", "rotate", "--server", "http://"+dead)
	out, err = cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("rotate via a dead --server exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "cannot reach http://"+dead) {
		t.Errorf("rotate via a dead --server says:\n%s", out)
	}

	// A malformed body: 400 problem+json, nothing rotated.
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.node("n2").http+cluster.KeysRotatePath, strings.NewReader(`{"force":tru`))
	c.authorize(req)
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pd struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&pd)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" || pd.Status != 400 || pd.Detail == "" {
		t.Fatalf("malformed rotate body: HTTP %d %q %+v, want 400 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), pd)
	}
	if kl := c.keysList("n2"); kl.Version != after.Version {
		t.Fatalf("a refused rotation changed the key set: version %d -> %d", after.Version, kl.Version)
	}

	// A client registered through a node that does not lead the meta
	// group (so the call is forwarded) gets tokens from every node once
	// their replicas hold it.
	cmd = c.cli("clients", "create", "--file", "-", "--server", "http://"+c.node(via).http)
	cmd.Stdin = strings.NewReader(`{"client_id":"svc3","grant_types":["client_credentials"],"scopes":["vitals.read"]}`)
	out, err = cmd.CombinedOutput()
	var reg cluster.ClientSecretAnswer
	if err != nil || json.Unmarshal(out, &reg) != nil || reg.ClientSecret == "" {
		t.Fatalf("ward clients create via %s: %v\n%s", via, err, out)
	}
	for _, name := range c.names() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodPost, "http://"+c.node(name).http+"/oauth/token",
				strings.NewReader("grant_type=client_credentials&scope=vitals.read"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("svc3", reg.ClientSecret)
			resp, err := c.client.Do(req)
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("token for the new client from %s: %d %v", name, code, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The operator token rotated through a node that does not lead the
	// meta group: the CLI prints the new one, every node rewrites its
	// token file, the old token is refused everywhere, the new accepted.
	old := c.adminToken()
	out, err = c.cli("cluster", "rotate-token", "--server", "http://"+c.node(via).http).CombinedOutput()
	newTok := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(newTok, cluster.AdminTokenPrefix) || newTok == old {
		t.Fatalf("ward cluster rotate-token via %s: %v\n%s", via, err, out)
	}
	c.mu.Lock()
	c.token = newTok
	c.mu.Unlock()
	for _, name := range c.names() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(filepath.Join(c.node(name).dir, adminTokenFile))
			if strings.TrimSpace(string(b)) == newTok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not rewrite %s after the rotation", name, adminTokenFile)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for tok, want := range map[string]int{old: http.StatusUnauthorized, newTok: http.StatusOK} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+c.node(name).http+cluster.LocalStatusPath, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s with the %s token: HTTP %d, want %d", name, map[bool]string{true: "new", false: "old"}[tok == newTok], resp.StatusCode, want)
			}
		}
	}
	if st, err := c.status("n1"); err != nil || len(st.Members) != 3 {
		t.Fatalf("cluster status with the new token: %v %+v", err, st)
	}
}
