package identity

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors/apikey"
	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/actors/usertenants"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/clustertest"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

const issuer = "https://id.test.example"

// env is the handler over a real one-node cluster (pebble, raft, the
// actors), shared by the tests of this binary: starting it and generating
// its RSA keys takes seconds.
type env struct {
	srv  *httptest.Server
	node *cluster.Node
}

var (
	shared     *env
	sharedOnce sync.Once
	sharedErr  error
)

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a cluster node")
	}
	sharedOnce.Do(func() { shared, sharedErr = startEnv() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func startEnv() (*env, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, _, err := clustertest.OneNode(session.Kind, usersessions.Kind, tenant.Kind, usertenants.Kind, apikey.Kind, apikey.IndexKind, eventlog.Kind)
	if err != nil {
		return nil, err
	}
	h, err := New(Config{Issuer: issuer, Actors: n, Keys: n, Logger: log,
		EventStreamMax: 2 * time.Second, EventPoll: 50 * time.Millisecond, EventHeartbeat: 200 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	return &env{srv: httptest.NewServer(h), node: n}, nil
}

func (e *env) request(t *testing.T, kind, id string, m protocol.Message) protocol.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := e.node.Request(ctx, kind, id, m)
	if err != nil {
		t.Fatalf("%s/%s %s: %v", kind, id, protocol.TypeName(m), err)
	}
	return out
}

// tenantWith creates a tenant (a fresh id per test) with an admin at the
// root and a doctor at a facility, and returns the ids.
func (e *env) tenantWith(t *testing.T) (tid, admin, doctor string) {
	tid = "t" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	admin, doctor = uuid.NewString(), uuid.NewString()
	e.request(t, tenant.KindName, tid, &protocol.CreateTenant{Name: "Acme " + tid, Slug: tid})
	e.request(t, tenant.KindName, tid, &protocol.AddNode{NodeId: tid + "-north", ParentId: tid, Type: protocol.NodeType_NODE_TYPE_FACILITY, Name: "North"})
	e.request(t, tenant.KindName, tid, &protocol.GrantRole{User: admin, NodeId: tid, Role: protocol.Role_ROLE_ADMIN})
	e.request(t, tenant.KindName, tid, &protocol.GrantRole{User: doctor, NodeId: tid + "-north", Role: protocol.Role_ROLE_DOCTOR})
	return tid, admin, doctor
}

// login opens a session for sub and returns its id.
func (e *env) login(t *testing.T, sub, tid string) string {
	m := e.request(t, session.KindName, uuid.NewString(), &protocol.CreateSession{Subject: sub, ClientId: "web", Tenant: tid})
	return m.(*protocol.RefreshIssued).GetSession().GetId()
}

// token signs an access token the way the provider does, with claims
// overridden by over (a nil value deletes the claim).
func (e *env) token(t *testing.T, sub, tid, sid string, over map[string]any) string {
	t.Helper()
	set, err := e.node.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.Signing(set, protocol.KeyAlg_KEY_ALG_RS256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sk, err := jose.SigningKeyFromProto(k)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": issuer, "sub": sub, "tid": tid, "tids": []string{tid}, "sid": sid, "amr": []string{"pwd"},
		"acr": "1", "client_id": "web", "aud": []string{"web"}, "jti": sid + ":x", "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix()}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok, err := jose.Sign(sk, jose.TypJWT, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (e *env) call(t *testing.T, method, path, auth string, body io.Reader, hdr ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.raw, _ = io.ReadAll(resp.Body)
	if err := json.Unmarshal(a.raw, &a.body); err != nil {
		t.Fatalf("%s %s: %d, answer is not JSON: %q", method, path, resp.StatusCode, a.raw)
	}
	return a
}

// wantProblem checks a problem+json answer with status.
func wantProblem(t *testing.T, what string, a answer, status int) {
	t.Helper()
	if a.status != status || !strings.HasPrefix(a.header.Get("Content-Type"), "application/problem+json") || a.body["status"] != float64(status) {
		t.Fatalf("%s: %d %s %s, want %d problem+json", what, a.status, a.header.Get("Content-Type"), a.raw, status)
	}
}

func wantInvalidToken(t *testing.T, what string, a answer) {
	t.Helper()
	wantProblem(t, what, a, http.StatusUnauthorized)
	if ch := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("%s: WWW-Authenticate %q, want Bearer error=\"invalid_token\"", what, ch)
	}
}

const meCtx = "/identity/me/access-context"

func TestAccessContextWithToken(t *testing.T) {
	e := newEnv(t)
	tid, admin, doctor := e.tenantWith(t)

	a := e.call(t, "GET", meCtx, e.token(t, admin, tid, e.login(t, admin, tid), nil), nil)
	if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("admin: %d %s", a.status, a.raw)
	}
	var ac AccessContext
	_ = json.Unmarshal(a.raw, &ac)
	if ac.Sub != admin || len(ac.Tenants) != 1 || ac.Tenants[0].ID != tid || ac.Tenants[0].Slug != tid ||
		len(ac.Tenants[0].Memberships) != 1 || strings.Join(ac.Tenants[0].Memberships[0].Roles, ",") != "admin" ||
		ac.Tenants[0].Memberships[0].NodeType != "tenant" {
		t.Fatalf("admin access context: %s", a.raw)
	}

	// The doctor's role is at a facility: membership there, with its path.
	a = e.call(t, "GET", meCtx, e.token(t, doctor, tid, e.login(t, doctor, tid), nil), nil)
	_ = json.Unmarshal(a.raw, &ac)
	if a.status != 200 || len(ac.Tenants) != 1 || len(ac.Tenants[0].Effective) != 1 ||
		ac.Tenants[0].Effective[0].NodeID != tid+"-north" || strings.Join(ac.Tenants[0].Effective[0].NodePath, "/") != tid+"/"+tid+"-north" ||
		ac.Tenants[0].Effective[0].NodeType != "facility" || ac.Tenants[0].Effective[0].Roles[0] != "doctor" {
		t.Fatalf("doctor access context: %d %s", a.status, a.raw)
	}

	// A valid token of someone with no role anywhere: authenticated, but
	// no access.
	nobody := uuid.NewString()
	wantProblem(t, "no roles", e.call(t, "GET", meCtx, e.token(t, nobody, tid, e.login(t, nobody, tid), nil), nil), http.StatusForbidden)
}

func TestRefusedTokens(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	sid := e.login(t, admin, tid)
	good := e.token(t, admin, tid, sid, nil)

	// No credentials: 401 with a challenge but no error code (RFC 6750 3.1).
	a := e.call(t, "GET", meCtx, "", nil)
	wantProblem(t, "no token", a, http.StatusUnauthorized)
	if ch := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") || strings.Contains(ch, "error=") {
		t.Fatalf("no token: WWW-Authenticate %q", ch)
	}

	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	set, _ := e.node.KeySet()
	k, _ := keyring.Signing(set, protocol.KeyAlg_KEY_ALG_RS256, time.Now())
	hsInput := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"`+k.GetKid()+`"}`)) + "." + parts[1]
	mac := hmac.New(sha256.New, k.GetPublicKey()) // the public key's DER: the classic confusion
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	for name, tok := range map[string]string{
		"expired":          e.token(t, admin, tid, sid, map[string]any{"exp": time.Now().Add(-2 * time.Minute).Unix(), "iat": time.Now().Add(-20 * time.Minute).Unix()}),
		"alg none":         none,
		"HS256 public key": hs256,
		"wrong issuer":     e.token(t, admin, tid, sid, map[string]any{"iss": "https://evil.example"}),
		"no exp":           e.token(t, admin, tid, sid, map[string]any{"exp": nil}),
		"tampered payload": parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + "." + parts[2],
		"garbage":          "not-a-token",
		"unknown session":  e.token(t, admin, tid, uuid.NewString(), nil),
		"other subject":    e.token(t, uuid.NewString(), tid, sid, nil),
		// An ID token has the same issuer, subject and signature; it must
		// not open the API (no jti; an at_hash or nonce).
		"no jti (ID token)":  e.token(t, admin, tid, sid, map[string]any{"jti": nil}),
		"at_hash (ID token)": e.token(t, admin, tid, sid, map[string]any{"at_hash": "abc"}),
		"nonce (ID token)":   e.token(t, admin, tid, sid, map[string]any{"nonce": "n"}),
		"service, no jti":    e.token(t, "svc", tid, "", map[string]any{"jti": nil, "sid": nil}),
	} {
		wantInvalidToken(t, name, e.call(t, "GET", meCtx, tok, nil))
	}

	// A revoked session stops its tokens at once.
	if a := e.call(t, "GET", meCtx, good, nil); a.status != 200 {
		t.Fatalf("before revocation: %d %s", a.status, a.raw)
	}
	e.request(t, session.KindName, sid, &protocol.RevokeSession{Reason: "logout"})
	wantInvalidToken(t, "revoked session", e.call(t, "GET", meCtx, good, nil))

	// Two credentials at once is a bad request.
	a = e.call(t, "GET", meCtx, good, nil, "X-API-Key", "ward_x")
	wantProblem(t, "two credentials", a, http.StatusBadRequest)
}

func TestAPIKeys(t *testing.T) {
	e := newEnv(t)
	tid, admin, doctor := e.tenantWith(t)
	adminTok := e.token(t, admin, tid, e.login(t, admin, tid), nil)
	keys := "/identity/tenants/" + tid + "/api-keys"

	a := e.call(t, "POST", keys, adminTok, strings.NewReader(`{"name":"ci","scopes":["vitals.read"]}`))
	if a.status != 201 || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	var issued IssuedKey
	_ = json.Unmarshal(a.raw, &issued)
	if !strings.HasPrefix(issued.Key, "ward_"+issued.APIKey.ID+"_") || issued.APIKey.Status != "active" || issued.APIKey.CreatedBy != admin {
		t.Fatalf("create answer: %s", a.raw)
	}
	key1 := issued.Key
	kid := issued.APIKey.ID

	// The key acts for its tenant with its scopes, either header.
	for _, a := range []answer{e.call(t, "GET", meCtx, key1, nil), e.call(t, "GET", meCtx, "", nil, "X-API-Key", key1)} {
		var ac AccessContext
		_ = json.Unmarshal(a.raw, &ac)
		if a.status != 200 || ac.APIKey == nil || ac.APIKey.ID != kid || len(ac.Tenants) != 1 || ac.Tenants[0].ID != tid ||
			strings.Join(ac.Tenants[0].Scopes, ",") != "vitals.read" || ac.Tenants[0].Name != "Acme "+tid {
			t.Fatalf("API key access context: %d %s", a.status, a.raw)
		}
	}
	// A wrong secret of a real key id, and a malformed key.
	_, secret, _ := apikey.Parse(key1)
	secret[0] ^= 1
	wantInvalidToken(t, "wrong secret", e.call(t, "GET", meCtx, apikey.Format(kid, secret), nil))
	wantInvalidToken(t, "malformed key", e.call(t, "GET", meCtx, "ward_nope", nil))

	// Listing shows the key, never a secret.
	a = e.call(t, "GET", keys, adminTok, nil)
	if a.status != 200 || !strings.Contains(string(a.raw), kid) || strings.Contains(string(a.raw), key1[len("ward_")+apikey.IDLen+1:]) {
		t.Fatalf("list: %d %s", a.status, a.raw)
	}

	// Who may manage keys: the doctor (no admin role), the API key itself,
	// an admin of another tenant: none.
	doctorTok := e.token(t, doctor, tid, e.login(t, doctor, tid), nil)
	otherTid, otherAdmin, _ := e.tenantWith(t)
	otherTok := e.token(t, otherAdmin, otherTid, e.login(t, otherAdmin, otherTid), nil)
	for name, tok := range map[string]string{"doctor": doctorTok, "api key": key1, "other tenant's admin": otherTok} {
		wantProblem(t, name+" creates", e.call(t, "POST", keys, tok, strings.NewReader(`{"name":"x"}`)), http.StatusForbidden)
		wantProblem(t, name+" lists", e.call(t, "GET", keys, tok, nil), http.StatusForbidden)
		wantProblem(t, name+" revokes", e.call(t, "DELETE", keys+"/"+kid, tok, nil), http.StatusForbidden)
	}
	// Another tenant's admin, on their own tenant's path, cannot reach the key.
	wantProblem(t, "revoke through another tenant", e.call(t, "DELETE", "/identity/tenants/"+otherTid+"/api-keys/"+kid, otherTok, nil), http.StatusNotFound)

	// Rotation: the old secret works within the overlap, not after.
	a = e.call(t, "POST", keys+"/"+kid+"/rotate", adminTok, strings.NewReader(`{"overlap_seconds":1}`))
	if a.status != 200 {
		t.Fatalf("rotate: %d %s", a.status, a.raw)
	}
	_ = json.Unmarshal(a.raw, &issued)
	key2 := issued.Key
	if key2 == key1 || issued.APIKey.PreviousValidUntil == nil {
		t.Fatalf("rotate answer: %s", a.raw)
	}
	for name, k := range map[string]string{"new key": key2, "old key in the overlap": key1} {
		if a := e.call(t, "GET", meCtx, k, nil); a.status != 200 {
			t.Fatalf("%s: %d %s", name, a.status, a.raw)
		}
	}
	time.Sleep(time.Until(*issued.APIKey.PreviousValidUntil) + 50*time.Millisecond)
	wantInvalidToken(t, "old key after the overlap", e.call(t, "GET", meCtx, key1, nil))
	if a := e.call(t, "GET", meCtx, key2, nil); a.status != 200 {
		t.Fatalf("new key after the overlap: %d %s", a.status, a.raw)
	}

	// Revocation refuses the key at once.
	a = e.call(t, "DELETE", keys+"/"+kid, adminTok, nil)
	if a.status != 200 || a.body["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", a.status, a.raw)
	}
	wantInvalidToken(t, "revoked key", e.call(t, "GET", meCtx, key2, nil))
	wantProblem(t, "rotate a revoked key", e.call(t, "POST", keys+"/"+kid+"/rotate", adminTok, nil), http.StatusConflict)
	wantProblem(t, "unknown key", e.call(t, "DELETE", keys+"/"+strings.Repeat("a", apikey.IDLen), adminTok, nil), http.StatusNotFound)
}

func TestAPIKeyBadInput(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	adminTok := e.token(t, admin, tid, e.login(t, admin, tid), nil)
	keys := "/identity/tenants/" + tid + "/api-keys"
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"malformed JSON", `{"name":`, 400},
		{"unknown field", `{"name":"x","admin":true}`, 400},
		{"trailing data", `{"name":"x"} {}`, 400},
		{"not an object", `["x"]`, 400},
		{"empty body", ``, 400},
		{"no name", `{"scopes":["a"]}`, 400},
		{"bad scope", `{"name":"x","scopes":["Not A Scope"]}`, 400},
		{"expiry in the past", `{"name":"x","expires_at":"2001-01-01T00:00:00Z"}`, 400},
		{"bad expiry", `{"name":"x","expires_at":"tomorrow"}`, 400},
		{"oversized", `{"name":"` + strings.Repeat("x", 20<<10) + `"}`, 413},
	} {
		wantProblem(t, tc.name, e.call(t, "POST", keys, adminTok, strings.NewReader(tc.body)), tc.status)
	}
	wantProblem(t, "rotate overlap out of range", e.call(t, "POST", keys+"/"+strings.Repeat("a", apikey.IDLen)+"/rotate", adminTok, strings.NewReader(`{"overlap_seconds":-1}`)), 400)
	// Nothing was created, not even an index entry.
	a := e.call(t, "GET", keys, adminTok, nil)
	if a.status != 200 || string(bytes.TrimSpace(a.raw)) != `{"api_keys":[]}` {
		t.Fatalf("list after refused creates: %d %s", a.status, a.raw)
	}
	m := e.request(t, apikey.IndexKindName, tid, &protocol.ListAPIKeyIndex{})
	if n := len(m.(*protocol.APIKeyIndex).GetKeyIds()); n != 0 {
		t.Fatalf("index holds %d ids after refused creates", n)
	}
}
