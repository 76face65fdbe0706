package oidcclient

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/wardhq/ward/protocol"
)

func TestSecret(t *testing.T) {
	secret, hash, err := NewSecret(bytes.NewReader(bytes.Repeat([]byte{7}, SecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	c := &protocol.OIDCClient{Id: "svc", SecretSha256: hash}
	if !VerifySecret(c, secret) {
		t.Fatal("own secret refused")
	}
	for _, bad := range []string{"", secret + "x", strings.ToUpper(secret), secret[:len(secret)-1]} {
		if VerifySecret(c, bad) {
			t.Errorf("secret %q accepted", bad)
		}
	}
	if VerifySecret(&protocol.OIDCClient{Id: "pub", Public: true, SecretSha256: hash}, secret) {
		t.Error("a public client verified a secret")
	}
	if _, _, err := NewSecret(bytes.NewReader(nil)); err == nil {
		t.Error("secret from no entropy")
	}
}

func TestValidate(t *testing.T) {
	ok := func() *protocol.OIDCClient {
		return &protocol.OIDCClient{Id: "web", Public: true, RedirectUris: []string{"https://app.example/cb", "http://127.0.0.1:8080/cb", "com.example.app:/cb"},
			GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: []string{"profile"}}
	}
	if err := Validate(ok()); err != nil {
		t.Fatalf("valid client refused: %v", err)
	}
	for name, mut := range map[string]func(c *protocol.OIDCClient){
		"empty id":            func(c *protocol.OIDCClient) { c.Id = "" },
		"slash in id":         func(c *protocol.OIDCClient) { c.Id = "a/b" },
		"public with secret":  func(c *protocol.OIDCClient) { c.SecretSha256 = HashSecret("x") },
		"confidential, none":  func(c *protocol.OIDCClient) { c.Public = false },
		"no grants":           func(c *protocol.OIDCClient) { c.GrantTypes = nil },
		"unknown grant":       func(c *protocol.OIDCClient) { c.GrantTypes = []string{"password"} },
		"public credentials":  func(c *protocol.OIDCClient) { c.GrantTypes = []string{GrantClientCredentials} },
		"code, no redirect":   func(c *protocol.OIDCClient) { c.RedirectUris = nil },
		"relative redirect":   func(c *protocol.OIDCClient) { c.RedirectUris = []string{"/cb"} },
		"fragment":            func(c *protocol.OIDCClient) { c.RedirectUris = []string{"https://app.example/cb#x"} },
		"http not loopback":   func(c *protocol.OIDCClient) { c.RedirectUris = []string{"http://app.example/cb"} },
		"https without host":  func(c *protocol.OIDCClient) { c.RedirectUris = []string{"https:///cb"} },
		"short secret hash":   func(c *protocol.OIDCClient) { c.Public = false; c.SecretSha256 = []byte{1} },
		"logout uri fragment": func(c *protocol.OIDCClient) { c.PostLogoutRedirectUris = []string{"https://a/#"} },
	} {
		c := ok()
		mut(c)
		if err := Validate(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dev := ok()
	dev.DevMode = true
	dev.RedirectUris = []string{"http://app.example/cb"}
	if err := Validate(dev); err != nil {
		t.Errorf("dev mode http redirect refused: %v", err)
	}
}

func TestGrantsAndScopes(t *testing.T) {
	c := &protocol.OIDCClient{GrantTypes: []string{GrantAuthorizationCode}, Scopes: []string{"profile"}}
	if !AllowsScope(c, "openid") || !AllowsScope(c, "profile") || AllowsScope(c, "email") || AllowsScope(c, "offline_access") {
		t.Error("scope rules")
	}
	c.GrantTypes = append(c.GrantTypes, GrantRefreshToken)
	if !AllowsScope(c, "offline_access") || !AllowsGrant(c, GrantRefreshToken) || AllowsGrant(c, GrantClientCredentials) {
		t.Error("refresh grant rules")
	}
}

func TestCheckAuthorization(t *testing.T) {
	pub := &protocol.OIDCClient{Id: "web", Public: true, GrantTypes: []string{GrantAuthorizationCode}, Scopes: []string{"email"}}
	svc := &protocol.OIDCClient{Id: "svc", GrantTypes: []string{GrantClientCredentials}}
	conf := &protocol.OIDCClient{Id: "app", GrantTypes: []string{GrantAuthorizationCode}}
	for _, tc := range []struct {
		name                  string
		c                     *protocol.OIDCClient
		rt, challenge, method string
		scopes                []string
		want                  error
	}{
		{"public with S256", pub, "code", "x", "S256", []string{"openid", "email"}, nil},
		{"confidential without PKCE", conf, "code", "", "", []string{"openid"}, nil},
		{"no code grant", svc, "code", "x", "S256", nil, ErrGrantNotAllowed},
		{"implicit", pub, "token", "x", "S256", nil, ErrBadRequest},
		{"public without PKCE", pub, "code", "", "", nil, ErrBadRequest},
		{"plain PKCE", conf, "code", "x", "plain", nil, ErrBadRequest},
		{"scope not allowed", pub, "code", "x", "S256", []string{"phone"}, ErrScopeNotAllowed},
	} {
		if err := CheckAuthorization(tc.c, tc.rt, tc.challenge, tc.method, tc.scopes); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestNeedsConsent(t *testing.T) {
	third := &protocol.OIDCClient{Id: "third"}
	first := &protocol.OIDCClient{Id: "first", FirstParty: true}
	if NeedsConsent(first, nil, []string{"openid", "email"}) || !NeedsConsent(third, nil, []string{"openid", "email"}) ||
		NeedsConsent(third, []string{"email"}, []string{"openid", "email"}) || NeedsConsent(third, nil, []string{"openid"}) {
		t.Error("consent rules")
	}
}
