package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/clustertest"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

const testSecret = "s3cret-s3cret-s3cret-s3cret-s3cret"

// provider runs the handler over a real one-node cluster (pebble, raft,
// the actors) with two clients registered in its meta key state.
type testProvider struct {
	srv    *httptest.Server
	opSrv  *httptest.Server // op's client_credentials path
	node   *cluster.Node
	hasher *password.Hasher
}

var (
	shared     *testProvider
	sharedOnce sync.Once
	sharedErr  error
)

// newTestProvider starts one provider per test binary: the node takes a
// few seconds to start and to generate its RSA keys.
func newTestProvider(t testing.TB) *testProvider {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = startTestProvider() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func startTestProvider() (*testProvider, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, _, err := clustertest.OneNode(authrequest.Kind, session.Kind, usersessions.Kind, user.Kind, emailindex.Kind, consent.Kind, assertion.Kind)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	for _, c := range []*protocol.OIDCClient{
		{Id: "web", Public: true, DevMode: true, FirstParty: true, RedirectUris: []string{"http://127.0.0.1:9/cb"}, GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}, Scopes: []string{"email"}},
		{Id: "third", Name: "Third Party App", Public: true, DevMode: true, RedirectUris: []string{"http://127.0.0.1:9/third"}, GrantTypes: []string{oidcclient.GrantAuthorizationCode}, Scopes: []string{"email"}},
		{Id: "svc", SecretSha256: oidcclient.HashSecret(testSecret), GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}},
		{Id: "svc-t", Tenant: "tenant-1", SecretSha256: oidcclient.HashSecret(testSecret), GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read", "vitals.write"}},
		{Id: "app", SecretSha256: oidcclient.HashSecret(testSecret), RedirectUris: []string{"http://127.0.0.1:9/app"}, GrantTypes: []string{oidcclient.GrantAuthorizationCode}, Scopes: []string{"vitals.read"}},
		{Id: "off", Disabled: true, SecretSha256: oidcclient.HashSecret(testSecret), GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}},
	} {
		b, _ := proto.Marshal(c)
		if err := n.PutMetaValue(ctx, oidcclient.Key(c.Id), b); err != nil {
			return nil, err
		}
	}
	hasher, err := password.New(password.Config{Params: password.Params{Memory: 8 << 10, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		return nil, err
	}
	p := &testProvider{node: n, hasher: hasher}
	var handler http.Handler
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	var secret [32]byte
	copy(secret[:], "0123456789abcdef0123456789abcdef")
	cfg := Config{Issuer: p.srv.URL, Insecure: true, Actors: n, Meta: n, Keys: n, Passwords: hasher, Secret: secret, Logger: log}
	if handler, err = New(cfg); err != nil {
		return nil, err
	}
	// The same provider with op answering client_credentials, under the
	// same issuer: the reference for Ward's own path.
	var opHandler http.Handler
	p.opSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { opHandler.ServeHTTP(w, r) }))
	cfg.opClientCredentials = true
	if opHandler, err = New(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *testProvider) token(t testing.TB, form url.Values, user, pass string) (int, map[string]any, http.Header) {
	t.Helper()
	return postToken(t, p.srv, form, user, pass)
}

func postToken(t testing.TB, srv *httptest.Server, form url.Values, user, pass string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("token endpoint answered %d non-JSON: %q", resp.StatusCode, b)
	}
	return resp.StatusCode, out, resp.Header
}

func TestDiscovery(t *testing.T) {
	p := newTestProvider(t)
	resp, err := p.srv.Client().Get(p.srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d["issuer"] != p.srv.URL || !strings.Contains(toJSON(d["code_challenge_methods_supported"]), "S256") ||
		!strings.Contains(toJSON(d["grant_types_supported"]), "client_credentials") {
		t.Fatalf("discovery: %v", d)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("security headers missing: %v", resp.Header)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestTokenErrors: each RFC 6749 §5.2 error, in its JSON shape, and
// nothing issued.
func TestTokenErrors(t *testing.T) {
	p := newTestProvider(t)
	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		want       string
	}{
		{"no grant type", url.Values{}, "svc", testSecret, "invalid_request"},
		{"unknown grant", url.Values{"grant_type": {"password"}}, "svc", testSecret, "unsupported_grant_type"},
		{"bad secret", url.Values{"grant_type": {"client_credentials"}}, "svc", "wrong", "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}}, "nobody", "x", "invalid_client"},
		{"scope", url.Values{"grant_type": {"client_credentials"}, "scope": {"root"}}, "svc", testSecret, "invalid_scope"},
		{"public client credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {"web"}}, "", "", "invalid_client"},
		{"refresh grant not allowed", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x.y"}}, "svc", testSecret, "unauthorized_client"},
		{"garbage code", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"web"}, "redirect_uri": {"http://127.0.0.1:9/cb"}, "code_verifier": {strings.Repeat("a", 43)}}, "", "", "invalid_grant"},
		{"garbage refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"abc"}, "client_id": {"web"}}, "", "", "invalid_grant"},
	} {
		code, out, h := p.token(t, tc.form, tc.user, tc.pass)
		if out["error"] != tc.want || code < 400 || code > 401 || out["access_token"] != nil {
			t.Errorf("%s: %d %v, want %s", tc.name, code, out, tc.want)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s: content type %q", tc.name, h.Get("Content-Type"))
		}
	}
	code, out, h := p.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"vitals.read"}}, "svc", testSecret)
	if code != 200 || out["token_type"] != "Bearer" || out["access_token"] == nil || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("client_credentials: %d %v %v", code, out, h)
	}
}

// TestLoginFormRefusals: the login page refuses a POST without its CSRF
// pair, an unknown request, and an oversized form, changing nothing.
func TestLoginFormRefusals(t *testing.T) {
	p := newTestProvider(t)
	post := func(form url.Values, cookie string) int {
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			req.Header.Set("Cookie", csrfCookie+"="+cookie)
		}
		resp, err := p.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	id := "0b8c5f3e-5d1c-4c7e-9a43-3f1d3f1e2a10"
	if c := post(url.Values{"authRequestID": {id}, "email": {"a@b.c"}, "password": {"x"}}, ""); c != http.StatusForbidden {
		t.Errorf("no CSRF: %d", c)
	}
	if c := post(url.Values{"authRequestID": {id}, "csrf": {"forged"}, "email": {"a@b.c"}, "password": {"x"}}, "cookie"); c != http.StatusForbidden {
		t.Errorf("forged CSRF: %d", c)
	}
	if c := post(url.Values{"authRequestID": {id}, "pad": {strings.Repeat("x", maxLoginForm)}}, ""); c != http.StatusBadRequest {
		t.Errorf("oversized form: %d", c)
	}
	resp, err := p.srv.Client().Get(p.srv.URL + "/login?authRequestID=" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("unknown request: %d %v", resp.StatusCode, resp.Header)
	}
}

// FuzzTokenEndpoint: whatever the body, the token endpoint answers JSON
// with a 2xx or 4xx status, and never issues a token to an unauthenticated
// caller.
func FuzzTokenEndpoint(f *testing.F) {
	for _, s := range []string{"grant_type=client_credentials", "grant_type=authorization_code&code=x", "grant_type=refresh_token&refresh_token=a.b",
		"grant_type=%zz", "grant_type=client_credentials&client_id=svc&client_secret=nope", "", "a=b&a=c&&&", "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=e30.e30.x"} {
		f.Add(s)
	}
	p := newTestProvider(f)
	f.Fuzz(func(t *testing.T, body string) {
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := p.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%q: non-JSON answer %d %q", body, resp.StatusCode, b)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("%q: server error %d %v", body, resp.StatusCode, out)
		}
		if out["access_token"] != nil && !strings.Contains(body, testSecret) {
			t.Fatalf("%q: a token without credentials: %v", body, out)
		}
	})
}

// registerUser creates an active user with a password in the default
// tenant, the way a registration does.
func registerUser(t *testing.T, p *testProvider, email, pw string) string {
	t.Helper()
	ctx := context.Background()
	sub := uuidString(t)
	id := user.ID("default", sub)
	if _, err := p.node.Request(ctx, emailindex.KindName, emailindex.ID("default", email), &protocol.EmailReserve{UserId: sub}); err != nil {
		t.Fatal(err)
	}
	m, err := p.node.Request(ctx, user.KindName, id, &protocol.RegisterUser{FirstName: "Ada", LastName: "Test", Phone: "+4930123456", Email: email})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.Request(ctx, user.KindName, id, &protocol.VerifyEmail{Token: m.(*protocol.UserRegistration).GetEmailVerification().GetToken()}); err != nil {
		t.Fatal(err)
	}
	m, err = p.node.Request(ctx, user.KindName, id, &protocol.StartPhoneVerification{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.Request(ctx, user.KindName, id, &protocol.VerifyPhone{Code: m.(*protocol.PhoneVerificationIssued).GetCode()}); err != nil {
		t.Fatal(err)
	}
	phc, err := p.hasher.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.Request(ctx, user.KindName, id, &protocol.SetPassword{Phc: phc}); err != nil {
		t.Fatal(err)
	}
	return sub
}

// loginForm starts an authorization request and opens its login form,
// returning the form's fields and the CSRF cookie.
func loginForm(t *testing.T, p *testProvider) (url.Values, *http.Cookie) {
	return loginFormFor(t, p, "web", "http://127.0.0.1:9/cb", "openid")
}

func loginFormFor(t *testing.T, p *testProvider, clientID, redirect, scope string) (url.Values, *http.Cookie) {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {scope}, "redirect_uri": {redirect},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}, "state": {"s"}}
	resp, err := noFollow.Get(p.srv.URL + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("authRequestID") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = noFollow.Get(p.srv.URL + "/login?" + loc.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login form cookie: %+v", cookie)
	}
	csrf := between(string(body), `name="csrf" value="`, `"`)
	return url.Values{"authRequestID": {loc.Query().Get("authRequestID")}, "csrf": {csrf}}, cookie
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// TestLoginLockout: five wrong passwords lock the account; then even the
// right password is refused with 429 and Retry-After, and an unknown
// address is refused exactly like a wrong password.
func TestLoginLockout(t *testing.T) {
	p := newTestProvider(t)
	registerUser(t, p, "lock@example.test", "correct horse battery staple")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	try := func(email, pw string) (int, http.Header) {
		form, cookie := loginForm(t, p)
		form.Set("email", email)
		form.Set("password", pw)
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, _ := try("nobody@example.test", "whatever"); code != http.StatusUnauthorized {
		t.Fatalf("unknown address: %d, want 401 like a wrong password", code)
	}
	for i := range user.LockAfter {
		if code, _ := try("lock@example.test", "wrong"); code != http.StatusUnauthorized && !(i == user.LockAfter-1 && code == http.StatusTooManyRequests) {
			t.Fatalf("failure %d: %d", i+1, code)
		}
	}
	code, h := try("lock@example.test", "correct horse battery staple")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("right password on a locked account: %d Retry-After %q", code, h.Get("Retry-After"))
	}
	// A fresh account signs in and is sent back to the provider's callback.
	registerUser(t, p, "ok@example.test", "correct horse battery staple")
	code, h = try("ok@example.test", "correct horse battery staple")
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "/authorize/callback?id=") {
		t.Fatalf("good login: %d %q", code, h.Get("Location"))
	}
}

func uuidString(t *testing.T) string {
	t.Helper()
	return uuid.NewString()
}

// TestJWTProfileServiceAccount: a service account with a registered public
// key gets a token with a signed assertion (RFC 7523); a wrong key, a
// wrong audience, an expired assertion, one without a jti or living longer
// than 10 minutes, and the same assertion presented again are
// invalid_grant.
func TestJWTProfileServiceAccount(t *testing.T) {
	p := newTestProvider(t)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubJWK, err := (&jose.JSONWebKey{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c := &protocol.OIDCClient{Id: "sa", GrantTypes: []string{oidcclient.GrantJWTBearer}, Scopes: []string{"vitals.read"},
		Keys: []*protocol.OIDCClientKey{{Kid: "k1", JwkJson: pubJWK}}}
	if err := oidcclient.Validate(c); err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(c)
	if err := p.node.PutMetaValue(context.Background(), oidcclient.Key("sa"), b); err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jtis := 0
	assertionJTI := func(key *ecdsa.PrivateKey, aud string, exp time.Time, jti string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		c := map[string]any{"iss": "sa", "sub": "sa", "aud": aud, "iat": time.Now().Unix(), "exp": exp.Unix()}
		if jti != "" {
			c["jti"] = jti
		}
		claims, _ := json.Marshal(c)
		obj, err := signer.Sign(claims)
		if err != nil {
			t.Fatal(err)
		}
		s, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	assertion := func(key *ecdsa.PrivateKey, aud string, exp time.Time) string {
		jtis++
		return assertionJTI(key, aud, exp, fmt.Sprintf("sa-%d", jtis))
	}
	grant := func(a string) (int, map[string]any) {
		code, out, _ := p.token(t, url.Values{"grant_type": {oidcclient.GrantJWTBearer}, "assertion": {a}, "scope": {"vitals.read"}}, "", "")
		return code, out
	}
	good := assertion(priv, p.srv.URL, time.Now().Add(time.Minute))
	code, out := grant(good)
	if code != 200 || out["access_token"] == nil {
		t.Fatalf("JWT profile: %d %v", code, out)
	}
	if code, out := grant(good); code != 400 || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "used already") {
		t.Errorf("replayed assertion: %d %v", code, out)
	}
	for name, a := range map[string]string{
		"another key":    assertion(other, p.srv.URL, time.Now().Add(time.Minute)),
		"wrong audience": assertion(priv, "https://elsewhere.example", time.Now().Add(time.Minute)),
		"expired":        assertion(priv, p.srv.URL, time.Now().Add(-time.Hour)),
		"no jti":         assertionJTI(priv, p.srv.URL, time.Now().Add(time.Minute), ""),
		"an hour's life": assertion(priv, p.srv.URL, time.Now().Add(time.Hour)),
		"garbage":        "e30.e30.AAAA",
	} {
		if code, out := grant(a); code != 400 || out["error"] != "invalid_grant" && out["error"] != "invalid_request" {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
}

// TestConcurrentRefreshRotations: 50 concurrent refreshes with one token
// (Keycloak's issue 50999) yield exactly one successor: inside the grace
// window every answer carries the same new refresh token.
func TestConcurrentRefreshRotations(t *testing.T) {
	p := newTestProvider(t)
	sub := registerUser(t, p, "rot@example.test", "correct horse battery staple")
	sid := uuid.NewString()
	m, err := p.node.Request(context.Background(), session.KindName, sid, &protocol.CreateSession{
		Subject: sub, ClientId: "web", TtlNanos: int64(time.Hour), Tenant: "default", Scopes: []string{"openid", "offline_access"},
		GraceNanos: proto.Int64(int64(10 * time.Second)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := session.FormatRefreshToken(sid, m.(*protocol.RefreshIssued).GetRefreshSecret())
	const n = 50
	var wg sync.WaitGroup
	got := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out, _ := p.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"web"}}, "", "")
			if code == 200 {
				got <- out["refresh_token"].(string)
			} else {
				got <- "error:" + toJSON(out)
			}
		}()
	}
	wg.Wait()
	close(got)
	successors := map[string]int{}
	for s := range got {
		successors[s]++
	}
	if len(successors) != 1 {
		t.Fatalf("%d concurrent rotations gave %d different answers: %v", n, len(successors), successors)
	}
	for s := range successors {
		if strings.HasPrefix(s, "error:") || s == rt {
			t.Fatalf("answer: %s", s)
		}
	}
}

// TestConsentRememberedPerClient: a third-party client's scopes are shown
// for approval once; allowed, they are remembered (the next sign-in goes
// straight back); denied, the client gets access_denied with its state;
// the provider's callback refuses a request whose consent is pending.
func TestConsentRememberedPerClient(t *testing.T) {
	p := newTestProvider(t)
	registerUser(t, p, "consent@example.test", "correct horse battery staple")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, form url.Values, cookie *http.Cookie) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, p.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	signIn := func() (url.Values, *http.Cookie, *http.Response, string) {
		form, cookie := loginFormFor(t, p, "third", "http://127.0.0.1:9/third", "openid email")
		form.Set("email", "consent@example.test")
		form.Set("password", "correct horse battery staple")
		resp, body := post("/login", form, cookie)
		return form, cookie, resp, body
	}
	form, cookie, resp, body := signIn()
	if resp.StatusCode != 200 || !strings.Contains(body, "Third Party App") || !strings.Contains(body, "see your e-mail address") {
		t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	// Consent pending: the callback must not issue a code.
	cb, err := noFollow.Get(p.srv.URL + "/authorize/callback?id=" + form.Get("authRequestID"))
	if err != nil {
		t.Fatal(err)
	}
	cb.Body.Close()
	if loc := cb.Header.Get("Location"); strings.Contains(loc, "code=") {
		t.Fatalf("callback issued a code before consent: %s", loc)
	}
	// A forged decision is refused.
	if r, _ := post("/login/consent", url.Values{"authRequestID": {form.Get("authRequestID")}, "csrf": {"x"}, "decision": {"allow"}}, cookie); r.StatusCode != http.StatusForbidden {
		t.Fatalf("forged consent: %d", r.StatusCode)
	}
	resp, _ = post("/login/consent", url.Values{"authRequestID": {form.Get("authRequestID")}, "csrf": {form.Get("csrf")}, "decision": {"allow"}}, cookie)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/authorize/callback?id=") {
		t.Fatalf("allow: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Remembered: the next sign-in goes straight to the callback.
	_, _, resp, _ = signIn()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/authorize/callback?id=") {
		t.Fatalf("second sign-in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A new user denies: access_denied back to the client, with its state.
	registerUser(t, p, "deny@example.test", "correct horse battery staple")
	form, cookie = loginFormFor(t, p, "third", "http://127.0.0.1:9/third", "openid email")
	form.Set("email", "deny@example.test")
	form.Set("password", "correct horse battery staple")
	if resp, _ := post("/login", form, cookie); resp.StatusCode != 200 {
		t.Fatalf("consent page for the second user: %d", resp.StatusCode)
	}
	resp, _ = post("/login/consent", url.Values{"authRequestID": {form.Get("authRequestID")}, "csrf": {form.Get("csrf")}, "decision": {"deny"}}, cookie)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), "http://127.0.0.1:9/third") ||
		loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s" {
		t.Fatalf("deny: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
