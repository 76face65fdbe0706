package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

func jwtParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	for i, into := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestClientCredentialsMatchesOp holds Ward's own client_credentials path
// to op's: for the same requests, the same answers and the same token
// header and claims (up to the token id and the clock).
func TestClientCredentialsMatchesOp(t *testing.T) {
	p := newTestProvider(t)
	type req struct {
		name       string
		form       url.Values
		user, pass string
		// wardError is set where Ward answers differently on purpose.
		wardError string
	}
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []req{
		{"basic, no scope", cc(), "svc", testSecret, ""},
		{"basic, scope", cc("scope", "vitals.read"), "svc", testSecret, ""},
		{"body auth", cc("client_id", "svc", "client_secret", testSecret, "scope", "vitals.read"), "", "", ""},
		{"tenant, two scopes", cc("scope", "vitals.read vitals.write"), "svc-t", testSecret, ""},
		{"basic, same client_id in body", cc("client_id", "svc"), "svc", testSecret, ""},
		{"form-encoded basic parts", cc(), url.QueryEscape("svc-t"), url.QueryEscape(testSecret), ""},
		{"bad secret", cc(), "svc", "wrong", ""},
		{"unknown client", cc(), "nobody", "x", ""},
		{"no credentials", cc(), "", "", ""},
		{"body id without secret", cc("client_id", "svc"), "", "", ""},
		{"public client", cc("client_id", "web"), "", "", ""},
		{"disabled client", cc(), "off", testSecret, ""},
		// op wraps every storage refusal in invalid_client; RFC 6749 §5.2
		// has unauthorized_client for an authenticated client without
		// the grant.
		{"grant not allowed", cc(), "app", testSecret, "unauthorized_client"},
		{"scope not allowed", cc("scope", "root"), "svc", testSecret, ""},
		{"openid", cc("scope", "openid"), "svc", testSecret, ""},
		{"offline_access", cc("scope", "vitals.read offline_access"), "svc-t", testSecret, ""},
		{"oversized client id", cc(), strings.Repeat("x", 4096), "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wc, wout, wh := postToken(t, p.srv, tc.form, tc.user, tc.pass)
			oc, oout, _ := postToken(t, p.opSrv, tc.form, tc.user, tc.pass)
			if tc.wardError != "" {
				if wc != http.StatusBadRequest || wout["error"] != tc.wardError || oout["error"] == nil {
					t.Fatalf("ward %d %v, op %d %v", wc, wout, oc, oout)
				}
			} else if wc != oc || wout["error"] != oout["error"] {
				t.Fatalf("ward %d %v, op %d %v", wc, wout, oc, oout)
			}
			if !strings.HasPrefix(wh.Get("Content-Type"), "application/json") || wh.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", wh)
			}
			if wc == http.StatusUnauthorized && !strings.HasPrefix(wh.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a Basic challenge: %v", wh)
			}
			if wc != http.StatusOK {
				if wout["access_token"] != nil || wout["error_description"] == "" {
					t.Errorf("error answer %v", wout)
				}
				return
			}
			if !slices.Equal(keysOf(wout), keysOf(oout)) || wout["token_type"] != oout["token_type"] || wout["scope"] != oout["scope"] {
				t.Errorf("answers differ:\nward %v\nop   %v", wout, oout)
			}
			// op computes expires_in from its own clock after the fact and
			// truncates (899); Ward's is the lifetime.
			if we, oe := wout["expires_in"].(float64), oout["expires_in"].(float64); we != 900 || math.Abs(we-oe) > 1 {
				t.Errorf("expires_in ward %v op %v", we, oe)
			}
			wt, ot := wout["access_token"].(string), oout["access_token"].(string)
			whd, wcl := jwtParts(t, wt)
			ohd, ocl := jwtParts(t, ot)
			if !slices.Equal(keysOf(whd), keysOf(ohd)) {
				t.Errorf("headers differ: ward %v op %v", whd, ohd)
			}
			for _, k := range keysOf(ohd) {
				if whd[k] != ohd[k] {
					t.Errorf("header %s: ward %v op %v", k, whd[k], ohd[k])
				}
			}
			if !slices.Equal(keysOf(wcl), keysOf(ocl)) {
				t.Fatalf("claims differ:\nward %v\nop   %v", wcl, ocl)
			}
			for _, k := range keysOf(ocl) {
				switch k {
				case "jti":
					w, o := wcl[k].(string), ocl[k].(string)
					if !strings.HasPrefix(w, "svc:") || !strings.HasPrefix(o, "svc:") || w == o {
						t.Errorf("jti ward %q op %q", w, o)
					}
				case "iat", "nbf", "exp":
					if math.Abs(wcl[k].(float64)-ocl[k].(float64)) > 2 {
						t.Errorf("%s ward %v op %v", k, wcl[k], ocl[k])
					}
				default:
					if toJSON(wcl[k]) != toJSON(ocl[k]) {
						t.Errorf("claim %s: ward %v op %v", k, wcl[k], ocl[k])
					}
				}
			}
			if wcl["exp"].(float64)-wcl["iat"].(float64) != 900 {
				t.Errorf("lifetime %v", wcl["exp"].(float64)-wcl["iat"].(float64))
			}
			verifyAtJWKS(t, p, wt)
		})
	}
}

// verifyAtJWKS checks tok against the keys the provider publishes.
func verifyAtJWKS(t *testing.T, p *testProvider, tok string) {
	t.Helper()
	resp, err := p.srv.Client().Get(p.srv.URL + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks jose.JWKS
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	set, err := jwks.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jose.Verify(tok, set, []jose.Alg{jose.RS256, jose.ES256}, time.Now()); err != nil {
		t.Errorf("token does not verify at JWKS: %v", err)
	}
}

// TestClientCredentialsRefusals: what Ward's path refuses beyond op's
// (repeated parameters, two authentication methods, a URL query), each
// in RFC 6749's error shape and without a token.
func TestClientCredentialsRefusals(t *testing.T) {
	p := newTestProvider(t)
	for _, tc := range []struct {
		name   string
		body   string
		query  string
		auth   string
		status int
		want   string
	}{
		{"repeated scope", "grant_type=client_credentials&scope=vitals.read&scope=root", "", basic("svc", testSecret), 400, "invalid_request"},
		{"repeated grant", "grant_type=client_credentials&grant_type=password", "", basic("svc", testSecret), 400, "invalid_request"},
		{"basic and body secret", "grant_type=client_credentials&client_secret=" + testSecret, "", basic("svc", testSecret), 400, "invalid_request"},
		{"basic and other client_id", "grant_type=client_credentials&client_id=svc-t", "", basic("svc", testSecret), 400, "invalid_request"},
		{"bearer header", "grant_type=client_credentials", "", "Bearer abc", 401, "invalid_client"},
		{"bad escape in basic", "grant_type=client_credentials", "", basic("svc", "%zz"), 401, "invalid_client"},
		{"secret in the URL", "grant_type=client_credentials", "client_id=svc&client_secret=" + testSecret, "", 400, "invalid_request"},
		{"empty scope token list", "grant_type=client_credentials&scope=+++", "", basic("svc", testSecret), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := p.srv.URL + "/oauth/token"
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := p.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || (tc.want != "" && out["error"] != tc.want) {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, out, tc.status, tc.want)
			}
			if tc.want != "" && out["access_token"] != nil {
				t.Fatalf("token issued: %v", out)
			}
			if tc.want == "" && out["scope"] != nil {
				t.Errorf("scope %v from blanks", out["scope"])
			}
		})
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// registerKeyClient stores c with a new P-256 public key "k1" registered
// without alg (P-256 can only mean ES256), and returns the key that signs
// its assertions and the registered JWK.
func registerKeyClient(t *testing.T, p *testProvider, c *protocol.OIDCClient) (*jose.SigningKey, []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubJWK, err := (&gojose.JSONWebKey{Key: &priv.PublicKey, KeyID: "k1", Use: "sig"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c.Keys = []*protocol.OIDCClientKey{{Kid: "k1", JwkJson: pubJWK}}
	if err := oidcclient.Validate(c); err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(c)
	if err := p.node.PutMetaValue(context.Background(), oidcclient.Key(c.GetId()), b); err != nil {
		t.Fatal(err)
	}
	key, err := jose.NewSigningKey("k1", jose.ES256, priv)
	if err != nil {
		t.Fatal(err)
	}
	return key, pubJWK
}

// TestClientCredentialsPrivateKeyJWT: a service account authenticates with
// an assertion signed by its registered key (RFC 7523 §2.2); each
// assertion works once, and every other shape is invalid_client or
// invalid_request, without a token.
func TestClientCredentialsPrivateKeyJWT(t *testing.T) {
	p := newTestProvider(t)
	key, pubJWK := registerKeyClient(t, p, &protocol.OIDCClient{Id: "svc-key", Tenant: "tenant-1",
		GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}})
	otherPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := jose.NewSigningKey("k1", jose.ES256, otherPriv)
	n := 0
	claims := func(mod func(map[string]any)) map[string]any {
		n++
		now := time.Now()
		c := map[string]any{"iss": "svc-key", "sub": "svc-key", "aud": p.srv.URL + "/oauth/token", "jti": fmt.Sprintf("jti-%d-%d", now.UnixNano(), n),
			"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(k *jose.SigningKey, c map[string]any) string {
		tok, err := jose.Sign(k, jose.TypJWT, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	form := func(assertion string, kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {assertion}, "scope": {"vitals.read"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	good := sign(key, claims(nil))
	code, out, _ := p.token(t, form(good), "", "")
	if code != 200 || out["access_token"] == nil {
		t.Fatalf("private_key_jwt: %d %v", code, out)
	}
	_, cl := jwtParts(t, out["access_token"].(string))
	if cl["sub"] != "svc-key" || cl["client_id"] != "svc-key" || cl["tid"] != "tenant-1" || cl["scope"] != "vitals.read" {
		t.Errorf("claims %v", cl)
	}
	verifyAtJWKS(t, p, out["access_token"].(string))
	if code, out, _ := p.token(t, form(good), "", ""); code != 401 || out["error"] != "invalid_client" || !strings.Contains(out["error_description"].(string), "used already") {
		t.Errorf("replayed assertion: %d %v", code, out)
	}
	if code, out, _ := p.token(t, form(sign(key, claims(func(c map[string]any) { c["aud"] = []string{"https://x.example", p.srv.URL} })), "client_id", "svc-key"), "", ""); code != 200 {
		t.Errorf("issuer audience in a list, with client_id: %d %v", code, out)
	}

	hs256 := func() string { // HS256 keyed with the public key's bytes
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"k1"}`))
		pl, _ := json.Marshal(claims(nil))
		in := h + "." + base64.RawURLEncoding.EncodeToString(pl)
		m := hmac.New(sha256.New, pubJWK)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	none := func() string {
		pl, _ := json.Marshal(claims(nil))
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString(pl) + "."
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		want       string
	}{
		{"another key", form(sign(other, claims(nil))), "", "", 401, "invalid_client"},
		{"alg none", form(none()), "", "", 401, "invalid_client"},
		{"HS256 with the public key", form(hs256()), "", "", 401, "invalid_client"},
		{"wrong audience", form(sign(key, claims(func(c map[string]any) { c["aud"] = "https://elsewhere.example" }))), "", "", 401, "invalid_client"},
		{"no jti", form(sign(key, claims(func(c map[string]any) { delete(c, "jti") }))), "", "", 401, "invalid_client"},
		{"expired", form(sign(key, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))), "", "", 401, "invalid_client"},
		{"lives an hour", form(sign(key, claims(func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour).Unix() }))), "", "", 401, "invalid_client"},
		{"iss is another client", form(sign(key, claims(func(c map[string]any) { c["iss"] = "svc" }))), "", "", 401, "invalid_client"},
		{"client_id of another client", form(sign(key, claims(nil)), "client_id", "svc"), "", "", 401, "invalid_client"},
		{"a secret client's assertion", form(sign(key, claims(func(c map[string]any) { c["iss"], c["sub"] = "svc", "svc" }))), "", "", 401, "invalid_client"},
		{"garbage", form("e30.e30.AAAA"), "", "", 401, "invalid_client"},
		{"empty", form(""), "", "", 401, "invalid_client"},
		{"assertion and basic", form(sign(key, claims(nil))), "svc", testSecret, 400, "invalid_request"},
		{"assertion and client_secret", form(sign(key, claims(nil)), "client_secret", testSecret), "", "", 400, "invalid_request"},
		{"wrong assertion type", form(sign(key, claims(nil)), "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"), "", "", 400, "invalid_request"},
	} {
		code, out, h := p.token(t, tc.form, tc.user, tc.pass)
		if code != tc.status || out["error"] != tc.want || out["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d %s", tc.name, code, out, tc.status, tc.want)
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: no challenge", tc.name)
		}
	}
}

// TestClientAssertionSingleUseOnOpPaths: a private_key_jwt assertion is
// spent wherever the client authenticates (refresh, introspection,
// revocation), not only on the client_credentials path, and on each the
// second presentation of one assertion is invalid_client.
func TestClientAssertionSingleUseOnOpPaths(t *testing.T) {
	p := newTestProvider(t)
	key, _ := registerKeyClient(t, p, &protocol.OIDCClient{Id: "app-key", Tenant: "default", RedirectUris: []string{"https://app.example/cb"},
		GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}, Scopes: []string{"openid", "offline_access"}})
	n := 0
	assertion := func() string {
		n++
		now := time.Now()
		tok, err := jose.Sign(key, jose.TypJWT, map[string]any{"iss": "app-key", "sub": "app-key", "aud": p.srv.URL,
			"jti": fmt.Sprintf("app-%d-%d", now.UnixNano(), n), "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withAssertion := func(a string, kv ...string) url.Values {
		v := url.Values{"client_assertion_type": {zoidcAssertionType}, "client_assertion": {a}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := p.srv.Client().Post(p.srv.URL+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	refused := func(what string, code int, out map[string]any) {
		t.Helper()
		if code != 401 || out["error"] != "invalid_client" || !strings.Contains(fmt.Sprint(out["error_description"]), "used already") {
			t.Errorf("%s, assertion replayed: %d %v", what, code, out)
		}
	}

	sub := registerUser(t, p, "pkj@example.test", "correct horse battery staple")
	sid := uuidString(t)
	m, err := p.node.Request(context.Background(), session.KindName, sid, &protocol.CreateSession{
		Subject: sub, ClientId: "app-key", TtlNanos: int64(time.Hour), Tenant: "default", Scopes: []string{"openid", "offline_access"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rt := session.FormatRefreshToken(sid, m.(*protocol.RefreshIssued).GetRefreshSecret())

	a := assertion()
	code, out := post("/oauth/token", withAssertion(a, "grant_type", "refresh_token", "refresh_token", rt))
	if code != 200 || out["refresh_token"] == nil {
		t.Fatalf("refresh with private_key_jwt: %d %v", code, out)
	}
	next := out["refresh_token"].(string)
	code, out = post("/oauth/token", withAssertion(a, "grant_type", "refresh_token", "refresh_token", next))
	refused("refresh", code, out)

	a = assertion()
	if code, out := post("/oauth/introspect", withAssertion(a, "token", next)); code != 200 {
		t.Fatalf("introspection with private_key_jwt: %d %v", code, out)
	}
	code, out = post("/oauth/introspect", withAssertion(a, "token", next))
	refused("introspection", code, out)

	a = assertion()
	if code, out := post("/revoke", withAssertion(a, "token", next, "token_type_hint", "refresh_token")); code != 200 {
		t.Fatalf("revocation with private_key_jwt: %d %v", code, out)
	}
	code, out = post("/revoke", withAssertion(a, "token", next))
	refused("revocation", code, out)

	// The refused presentations changed nothing, the revocation did: the
	// successor no longer refreshes.
	if code, out := post("/oauth/token", withAssertion(assertion(), "grant_type", "refresh_token", "refresh_token", next)); code != 400 || out["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %v", code, out)
	}
}

const zoidcAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
