package oidcclient

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/protocol"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestSecret(t *testing.T) {
	secret, hash, err := NewSecret(bytes.NewReader(bytes.Repeat([]byte{7}, SecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	c := &protocol.OIDCClient{Id: "svc", SecretSha256: hash}
	if !VerifySecret(c, secret, t0) {
		t.Fatal("own secret refused")
	}
	for _, bad := range []string{"", secret + "x", strings.ToUpper(secret), secret[:len(secret)-1]} {
		if VerifySecret(c, bad, t0) {
			t.Errorf("secret %q accepted", bad)
		}
	}
	if VerifySecret(&protocol.OIDCClient{Id: "pub", Public: true, SecretSha256: hash}, secret, t0) {
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
	if !ServiceScope(c, "profile") || ServiceScope(c, "openid") || ServiceScope(c, "offline_access") || ServiceScope(c, "email") || ServiceScope(c, "") {
		t.Error("service scope rules")
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

// Rotation keeps the old secret for the overlap and no longer; a second
// rotation drops the first secret at once; overlap 0 (a leak) drops it
// at once; a disabled client verifies nothing.
func TestRotateSecret(t *testing.T) {
	entropy := rand.NewChaCha8([32]byte{1})
	first, hash, err := NewSecret(entropy)
	if err != nil {
		t.Fatal(err)
	}
	c := &protocol.OIDCClient{Id: "svc", SecretSha256: hash, GrantTypes: []string{GrantClientCredentials}}
	second, err := RotateSecret(c, entropy, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("rotation kept the secret")
	}
	for _, c2 := range []struct {
		secret string
		at     time.Time
		want   bool
	}{
		{first, t0, true}, {second, t0, true},
		{first, t0.Add(time.Hour - time.Nanosecond), true},
		{first, t0.Add(time.Hour), false}, {second, t0.Add(time.Hour), true},
	} {
		if got := VerifySecret(c, c2.secret, c2.at); got != c2.want {
			t.Errorf("secret %.6s at +%s: %v, want %v", c2.secret, c2.at.Sub(t0), got, c2.want)
		}
	}
	if err := Validate(c); err != nil {
		t.Fatalf("rotated registration invalid: %v", err)
	}
	third, err := RotateSecret(c, entropy, t0.Add(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{first: false, second: false, third: true} {
		if got := VerifySecret(c, s, t0.Add(2*time.Minute)); got != want {
			t.Errorf("after a rotation without overlap, secret %.6s: %v, want %v", s, got, want)
		}
	}
	c.Disabled = true
	if VerifySecret(c, third, t0) {
		t.Error("a disabled client verified its secret")
	}
	for _, bad := range []time.Duration{-time.Second, MaxSecretOverlap + time.Second} {
		if _, err := RotateSecret(c, entropy, t0, bad); err == nil {
			t.Errorf("overlap %s accepted", bad)
		}
	}
	if _, err := RotateSecret(&protocol.OIDCClient{Id: "pub", Public: true}, entropy, t0, 0); err == nil {
		t.Error("a public client got a secret")
	}
}

// Register generates the secret of a confidential client without keys and
// refuses supplied secrets; Update keeps secrets and creation time and
// refuses to flip public.
func TestRegisterAndUpdate(t *testing.T) {
	entropy := rand.NewChaCha8([32]byte{9})
	spec := &protocol.OIDCClient{Id: "svc", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"vitals.read"}}
	c, secret, err := Register(spec, entropy, t0)
	if err != nil || secret == "" || !VerifySecret(c, secret, t0) || c.GetCreatedUnixNano() != t0.UnixNano() {
		t.Fatalf("register confidential: %v secret=%q", err, secret)
	}
	if len(spec.GetSecretSha256()) != 0 {
		t.Fatal("Register changed the spec")
	}
	pub, secret, err := Register(&protocol.OIDCClient{Id: "web", Public: true, RedirectUris: []string{"https://app.example/cb"},
		GrantTypes: []string{GrantAuthorizationCode}}, entropy, t0)
	if err != nil || secret != "" || len(pub.GetSecretSha256()) != 0 {
		t.Fatalf("register public: %v secret=%q", err, secret)
	}
	if _, _, err := Register(&protocol.OIDCClient{Id: "x", SecretSha256: HashSecret("chosen"), GrantTypes: []string{GrantClientCredentials}}, entropy, t0); err == nil {
		t.Error("a supplied secret was accepted")
	}
	if _, _, err := Register(&protocol.OIDCClient{Id: "bad/id", GrantTypes: []string{GrantClientCredentials}}, entropy, t0); err == nil {
		t.Error("an invalid registration was accepted")
	}
	up, err := Update(c, &protocol.OIDCClient{Id: "svc", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"vitals.read", "vitals.write"}})
	if err != nil || !bytes.Equal(up.GetSecretSha256(), c.GetSecretSha256()) || up.GetCreatedUnixNano() != c.GetCreatedUnixNano() || len(up.GetScopes()) != 2 {
		t.Fatalf("update: %v %v", err, up)
	}
	if _, err := Update(c, &protocol.OIDCClient{Id: "svc", Public: true, GrantTypes: []string{GrantAuthorizationCode}, RedirectUris: []string{"https://a.example/cb"}}); err == nil {
		t.Error("update flipped a confidential client to public")
	}
	if _, err := Update(c, &protocol.OIDCClient{Id: "svc", SecretSha256: HashSecret("x"), GrantTypes: []string{GrantClientCredentials}}); err == nil {
		t.Error("update supplied a secret")
	}
}

// Client keys must be public JWKs of a known type with their own kid.
func TestClientKeys(t *testing.T) {
	pub := `{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`
	priv := `{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}`
	mk := func(keys ...*protocol.OIDCClientKey) *protocol.OIDCClient {
		return &protocol.OIDCClient{Id: "svc", GrantTypes: []string{GrantJWTBearer}, Keys: keys}
	}
	if err := Validate(mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(pub)})); err != nil {
		t.Fatalf("public key refused: %v", err)
	}
	for name, c := range map[string]*protocol.OIDCClient{
		"private":      mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(priv)}),
		"kid mismatch": mk(&protocol.OIDCClientKey{Kid: "k2", JwkJson: []byte(pub)}),
		"not JSON":     mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(`{"kty":`)}),
		"symmetric":    mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(`{"kty":"oct","kid":"k1","k":"c2VjcmV0"}`)}),
		"no kid":       mk(&protocol.OIDCClientKey{JwkJson: []byte(pub)}),
		"twice":        mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(pub)}, &protocol.OIDCClientKey{Kid: "k1", JwkJson: []byte(pub)}),
		"huge":         mk(&protocol.OIDCClientKey{Kid: "k1", JwkJson: bytes.Repeat([]byte(" "), MaxKeyLen+1)}),
	} {
		if err := Validate(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckAssertion(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := &protocol.OIDCClient{Id: "svc", GrantTypes: []string{GrantClientCredentials}, Keys: []*protocol.OIDCClientKey{{Kid: "k1"}}}
	aud := []string{"https://id.example", "https://id.example/oauth/token"}
	good := Assertion{Issuer: "svc", Subject: "svc", JTI: "j1", Audience: []string{"https://id.example/oauth/token"}, Expiry: now.Add(5 * time.Minute), IssuedAt: now}
	if err := CheckAssertion(c, good, aud, now); err != nil {
		t.Fatalf("good assertion: %v", err)
	}
	mod := func(f func(a *Assertion)) Assertion { a := good; f(&a); return a }
	for name, tc := range map[string]struct {
		c *protocol.OIDCClient
		a Assertion
	}{
		"other issuer":        {c, mod(func(a *Assertion) { a.Issuer = "x" })},
		"other subject":       {c, mod(func(a *Assertion) { a.Subject = "x" })},
		"other audience":      {c, mod(func(a *Assertion) { a.Audience = []string{"https://evil.example"} })},
		"no audience":         {c, mod(func(a *Assertion) { a.Audience = nil })},
		"no jti":              {c, mod(func(a *Assertion) { a.JTI = "" })},
		"no exp":              {c, mod(func(a *Assertion) { a.Expiry = time.Time{} })},
		"too long":            {c, mod(func(a *Assertion) { a.Expiry = now.Add(MaxAssertionLife + time.Second) })},
		"too long from iat":   {c, mod(func(a *Assertion) { a.IssuedAt = now.Add(-8 * time.Minute); a.Expiry = now.Add(3 * time.Minute) })},
		"public client":       {&protocol.OIDCClient{Id: "svc", Public: true, Keys: c.Keys}, good},
		"disabled client":     {&protocol.OIDCClient{Id: "svc", Disabled: true, Keys: c.Keys}, good},
		"client without keys": {&protocol.OIDCClient{Id: "svc"}, good},
	} {
		if err := CheckAssertion(tc.c, tc.a, aud, now); !errors.Is(err, ErrBadAssertion) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCurrentKeys(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	c := &protocol.OIDCClient{Keys: []*protocol.OIDCClientKey{
		{Kid: "forever"},
		{Kid: "later", ExpiresUnixNano: now.Add(time.Second).UnixNano()},
		{Kid: "now", ExpiresUnixNano: now.UnixNano()},
		{Kid: "gone", ExpiresUnixNano: now.Add(-time.Hour).UnixNano()},
	}}
	var kids []string
	for _, k := range CurrentKeys(c, now) {
		kids = append(kids, k.GetKid())
	}
	if strings.Join(kids, ",") != "forever,later" {
		t.Errorf("current keys %v", kids)
	}
}
