package main

// The OpenID Connect provider end to end: a real `ward dev` process, a real
// relying party (golang.org/x/oauth2 + coreos/go-oidc) and Debian's
// Chromium driven by chromedp filling the login form.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// devNode runs `ward dev` and waits for its provider and demo data.
func devNode(t *testing.T, extra ...string) (base string, demo demoFile) {
	t.Helper()
	base, _, demo = devNodeDir(t, extra...)
	return base, demo
}

// devNodeDir is devNode that also returns the node's data directory.
func devNodeDir(t *testing.T, extra ...string) (base, data string, demo demoFile) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a ward process")
	}
	bin := ward(t)
	data = t.TempDir()
	addr := freeAddr(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"dev", "--data", data, "--http", addr}, extra...)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			lines := strings.Split(stderr.String(), "\n")
			t.Logf("---- ward dev log (last 40 lines) ----\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	base = "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(data, "demo.json"))
		if err == nil && json.Unmarshal(b, &demo) == nil {
			resp, err := http.Get(base + "/.well-known/openid-configuration")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return base, data, demo
				}
			}
		}
		select {
		case <-done:
			t.Fatalf("ward dev exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider not serving within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d demoFile) user(role string) demoUser {
	for _, u := range d.Users {
		if u.Role == role {
			return u
		}
	}
	return demoUser{}
}

func (d demoFile) client(id string) demoClient {
	for _, c := range d.Clients {
		if c.ID == id {
			return c
		}
	}
	return demoClient{}
}

// browserLogin opens authURL in headless Chromium, signs in, and returns
// the URL the provider redirected to (the relying party's callback, which
// nothing serves: the request is captured, not loaded).
func browserLogin(t *testing.T, authURL, redirectPrefix, email, password string) *url.URL {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("needs Debian's chromium: ", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var landed string
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && strings.HasPrefix(e.Request.URL, redirectPrefix) {
			mu.Lock()
			if landed == "" {
				landed = e.Request.URL
			}
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("submit")),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		l := landed
		mu.Unlock()
		if l != "" {
			u, err := url.Parse(l)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("the browser never went to %s; page:\n%s", redirectPrefix, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOIDCAuthorizationCodeWithBrowser(t *testing.T) {
	base, demo := devNode(t, "--refresh-grace", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	web := demo.client("demo-web")
	if web.ID == "" || len(web.RedirectURIs) == 0 {
		t.Fatalf("demo.json has no demo-web client: %+v", demo)
	}
	conf := &oauth2.Config{ClientID: web.ID, Endpoint: provider.Endpoint(), RedirectURL: web.RedirectURIs[0],
		Scopes: []string{gooidc.ScopeOpenID, "profile", "email", gooidc.ScopeOfflineAccess}}
	verifier := oauth2.GenerateVerifier()
	state, nonce := "st-"+randomToken(8), "n-"+randomToken(8)
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), gooidc.Nonce(nonce))

	doctor := demo.user("doctor")
	start := time.Now()
	cb := browserLogin(t, authURL, web.RedirectURIs[0], doctor.Email, doctor.Password)
	t.Logf("browser login took %s", time.Since(start).Round(time.Millisecond))
	if cb.Query().Get("state") != state || cb.Query().Get("code") == "" {
		t.Fatalf("callback %s: want state %s and a code", cb, state)
	}
	code := cb.Query().Get("code")

	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&gooidc.Config{ClientID: web.ID}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce || idt.Subject != doctor.Subject {
		t.Fatalf("ID token nonce %q sub %q, want %q %q", idt.Nonce, idt.Subject, nonce, doctor.Subject)
	}
	// The access token is a JWT that verifies against JWKS, with Ward's claims.
	at, err := provider.Verifier(&gooidc.Config{ClientID: web.ID}).Verify(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("access token against JWKS: %v", err)
	}
	var claims struct {
		Tid string   `json:"tid"`
		Amr []string `json:"amr"`
		Acr string   `json:"acr"`
		Sid string   `json:"sid"`
		Jti string   `json:"jti"`
	}
	if err := at.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Tid != demo.Tenant || !slices.Contains(claims.Amr, "pwd") || claims.Sid == "" || claims.Jti == "" || claims.Acr == "" {
		t.Fatalf("access token claims: %+v", claims)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Email != doctor.Email || ui.Subject != doctor.Subject {
		t.Fatalf("userinfo %+v, want %s", ui, doctor.Email)
	}

	// Forged tokens carrying the same claims are refused: alg none, and
	// HS256 keyed with the provider's public key.
	for name, forged := range map[string]string{"alg none": forgeNone(t, tok.AccessToken), "HS256 with the public key": forgeHS256(t, ctx, base, tok.AccessToken)} {
		if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: forged, TokenType: "Bearer"})); err == nil {
			t.Errorf("userinfo accepted a token forged with %s", name)
		}
	}

	// The code is spent: a second exchange is invalid_grant and revokes
	// what the first one issued.
	if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("second exchange of the code: %v, want invalid_grant", err)
	}
	if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Fatal("userinfo still answers for a token issued from a reused code")
	}
}

func TestOIDCRefreshRotationAndReuse(t *testing.T) {
	base, demo := devNode(t, "--refresh-grace", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	web := demo.client("demo-web")
	conf := &oauth2.Config{ClientID: web.ID, Endpoint: provider.Endpoint(), RedirectURL: web.RedirectURIs[0],
		Scopes: []string{gooidc.ScopeOpenID, "email", gooidc.ScopeOfflineAccess}}
	verifier := oauth2.GenerateVerifier()
	nurse := demo.user("nurse")
	cb := browserLogin(t, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier)), web.RedirectURIs[0], nurse.Email, nurse.Password)
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	refresh := func(rt string) (*oauth2.Token, error) {
		return conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Minute)}).Token()
	}
	r1, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if r1.RefreshToken == tok.RefreshToken || r1.RefreshToken == "" {
		t.Fatal("refresh token not rotated")
	}
	// A lost response: the same token again inside the grace window gets
	// the same successor.
	again, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("retry inside the grace window: %v", err)
	}
	if again.RefreshToken != r1.RefreshToken {
		t.Fatal("retry inside the grace window issued another successor")
	}
	// After the window it is reuse: the family is revoked, the successor too.
	time.Sleep(2500 * time.Millisecond)
	if _, err := refresh(tok.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("reuse after the grace window: %v, want invalid_grant", err)
	}
	if _, err := refresh(r1.RefreshToken); !isOAuthError(err, "invalid_grant") {
		t.Fatalf("the successor after reuse: %v, want invalid_grant", err)
	}
}

func TestOIDCClientCredentialsAndErrors(t *testing.T) {
	base, demo := devNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	tokenURL := provider.Endpoint().TokenURL
	svc := demo.client("demo-service")
	post := func(form url.Values, user, pass string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("token endpoint answered non-JSON (%d): %s", resp.StatusCode, b)
		}
		return resp.StatusCode, out
	}
	code, out := post(url.Values{"grant_type": {"client_credentials"}, "scope": {"vitals.read"}}, svc.ID, svc.Secret)
	if code != 200 || out["access_token"] == nil {
		t.Fatalf("client_credentials: %d %v", code, out)
	}
	at, err := provider.Verifier(&gooidc.Config{SkipClientIDCheck: true}).Verify(ctx, out["access_token"].(string))
	if err != nil || at.Subject != svc.ID {
		t.Fatalf("service token: %v (sub %v)", err, at)
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		want       string
	}{
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}}, svc.ID, "nope", "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}}, "ghost", "x", "invalid_client"},
		{"unsupported grant", url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, svc.ID, svc.Secret, "unsupported_grant_type"},
		{"scope not allowed", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin.everything"}}, svc.ID, svc.Secret, "invalid_scope"},
		{"missing grant type", url.Values{}, svc.ID, svc.Secret, "invalid_request"},
		{"bad code", url.Values{"grant_type": {"authorization_code"}, "code": {"garbage"}, "redirect_uri": {"http://x/cb"}}, "demo-backend", demo.client("demo-backend").Secret, "invalid_grant"},
		{"bad refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x.y"}}, "demo-backend", demo.client("demo-backend").Secret, "invalid_grant"},
		{"service account not allowed the refresh grant", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x.y"}}, svc.ID, svc.Secret, "unauthorized_client"},
	} {
		code, out := post(tc.form, tc.user, tc.pass)
		if out["error"] != tc.want || code < 400 || code >= 500 {
			t.Errorf("%s: %d %v, want error %s", tc.name, code, out, tc.want)
		}
	}

	// A redirect URI that is not registered: an error page, never a redirect.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"demo-web"}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"},
		"redirect_uri": {"http://127.0.0.1:5173/callback/evil"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	resp, err := noFollow.Get(provider.Endpoint().AuthURL + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("unregistered redirect_uri: %d Location %q, want an error page", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A public client without PKCE is sent back with invalid_request.
	q.Set("redirect_uri", "http://127.0.0.1:5173/callback")
	q.Del("code_challenge")
	q.Del("code_challenge_method")
	resp, err = noFollow.Get(provider.Endpoint().AuthURL + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Fatalf("public client without PKCE: %d %q, want a redirect with invalid_request", resp.StatusCode, resp.Header.Get("Location"))
	}

}

// forgeNone re-signs a token's payload with alg none.
func forgeNone(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return h + "." + parts[1] + "."
}

// forgeHS256 re-signs a token's payload with HS256, keyed with the DER of
// the provider's RSA public key (the classic algorithm-confusion attack).
func forgeHS256(t *testing.T, ctx context.Context, base, tok string) string {
	t.Helper()
	resp, err := http.Get(base + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + k.KeyID + `"}`))
		input := h + "." + strings.Split(tok, ".")[1]
		m := hmac.New(sha256.New, der)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	t.Fatal("no RSA key in JWKS")
	return ""
}

func isOAuthError(err error, code string) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == code
}
