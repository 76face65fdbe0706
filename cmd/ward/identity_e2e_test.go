package main

// The identity REST API end to end: the demo admin signs in through
// Chromium, reads their access context with the access token, and manages
// an API key that is accepted until it is revoked.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestIdentityAPIWithBrowserLogin(t *testing.T) {
	base, demo := devNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	web := demo.client("demo-web")
	conf := &oauth2.Config{ClientID: web.ID, Endpoint: provider.Endpoint(), RedirectURL: web.RedirectURIs[0], Scopes: []string{gooidc.ScopeOpenID}}
	verifier := oauth2.GenerateVerifier()
	admin := demo.user("admin")
	cb := browserLogin(t, conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), web.RedirectURIs[0], admin.Email, admin.Password)
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}

	call := func(method, path, auth, body string) (int, map[string]any, http.Header) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, rd)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d non-JSON answer %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, out, resp.Header
	}

	// The admin's access context: role admin at the root of tenant demo.
	code, ac, _ := call("GET", "/identity/me/access-context", tok.AccessToken, "")
	if code != 200 || ac["sub"] != admin.Subject {
		t.Fatalf("access context: %d %v", code, ac)
	}
	tenants, _ := ac["tenants"].([]any)
	found := false
	for _, x := range tenants {
		tc, _ := x.(map[string]any)
		if tc["id"] != demo.Tenant {
			continue
		}
		for _, m := range tc["memberships"].([]any) {
			nr := m.(map[string]any)
			for _, r := range nr["roles"].([]any) {
				found = found || (r == "admin" && nr["node_id"] == demo.Tenant)
			}
		}
	}
	if !found {
		t.Fatalf("access context has no admin role in tenant %s: %v", demo.Tenant, ac)
	}

	// Create an API key, use it, revoke it: then it is refused.
	keys := "/identity/tenants/" + demo.Tenant + "/api-keys"
	code, created, _ := call("POST", keys, tok.AccessToken, `{"name":"e2e","scopes":["vitals.read"]}`)
	key, _ := created["key"].(string)
	if code != 201 || !strings.HasPrefix(key, "ward_") {
		t.Fatalf("create API key: %d %v", code, created)
	}
	kid := created["api_key"].(map[string]any)["id"].(string)
	code, ac, _ = call("GET", "/identity/me/access-context", key, "")
	if code != 200 || ac["api_key"].(map[string]any)["id"] != kid {
		t.Fatalf("access context with the API key: %d %v", code, ac)
	}
	if code, out, _ := call("GET", keys, tok.AccessToken, ""); code != 200 || !strings.Contains(jsonString(out), kid) {
		t.Fatalf("list: %d %v", code, out)
	}
	if code, out, _ := call("DELETE", keys+"/"+kid, tok.AccessToken, ""); code != 200 || out["status"] != "revoked" {
		t.Fatalf("revoke: %d %v", code, out)
	}
	code, out, h := call("GET", "/identity/me/access-context", key, "")
	if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("revoked key: %d %v %q", code, out, h.Get("WWW-Authenticate"))
	}
	// A forged token is refused the same way.
	code, _, _ = call("GET", "/identity/me/access-context", forgeNone(t, tok.AccessToken), "")
	if code != 401 {
		t.Fatalf("alg none token: %d", code)
	}
	// The ID token is signed by the same key for the same subject; it is
	// not an access token and opens nothing.
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		t.Fatal("no ID token")
	}
	code, out, h = call("GET", "/identity/me/access-context", idToken, "")
	if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("ID token as access token: %d %v", code, out)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
