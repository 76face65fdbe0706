package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wardhq/ward/cluster"
)

// TestClientRegistryEndToEnd: an operator registers a service account with
// `ward clients create` on a running node, and a real x/oauth2 client gets
// tokens with the secret shown once; rotation keeps the old secret for the
// overlap (and not at all with --overlap 0); update changes what it may ask
// for; disable refuses it everywhere and its id is never reused. Bad specs
// and missing operator tokens are refused with clear errors and change
// nothing.
func TestClientRegistryEndToEnd(t *testing.T) {
	base, data, _ := devNodeDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	tokenFile := filepath.Join(data, adminTokenFile)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(tokenFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no operator token file")
		}
	}
	bin := ward(t)
	noEnv := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, adminTokenEnv+"=") })
	cli := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, append(args, "--server", base, "--token-file", tokenFile)...)
		cmd.Env = noEnv
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	secretOf := func(out string) string {
		t.Helper()
		var ans cluster.ClientSecretAnswer
		if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.ClientSecret == "" {
			t.Fatalf("no secret in the answer (%v):\n%s", err, out)
		}
		return ans.ClientSecret
	}
	token := func(secret string, scopes ...string) error {
		_, err := (&clientcredentials.Config{ClientID: "billing", ClientSecret: secret,
			TokenURL: provider.Endpoint().TokenURL, Scopes: scopes}).Token(ctx)
		return err
	}

	out, err := cli(`{"client_id":"billing","grant_types":["client_credentials"],"scopes":["vitals.read"]}`, "clients", "create", "--file", "-")
	if err != nil {
		t.Fatalf("ward clients create: %v\n%s", err, out)
	}
	s1 := secretOf(out)
	if err := token(s1, "vitals.read"); err != nil {
		t.Fatalf("token with the new secret: %v", err)
	}
	if err := token(s1, "vitals.write"); !isOAuthError(err, "invalid_scope") {
		t.Fatalf("scope not registered: %v, want invalid_scope", err)
	}

	// Refusals: an existing id, an invalid registration, a supplied
	// secret-ish field, no operator token.
	for _, c := range []struct{ spec, want string }{
		{`{"client_id":"billing","grant_types":["client_credentials"]}`, "exists"},
		{`{"client_id":"pub","public":true,"grant_types":["client_credentials"]}`, "public client cannot use client_credentials"},
		{`{"client_id":"web","public":true,"grant_types":["authorization_code"],"redirect_uris":["http://evil.example/cb"]}`, "http only for loopback"},
		{`{"client_id":"x","grant_types":["client_credentials"],"client_secret":"mine"}`, "unknown field"},
		{`{"client_id":`, "unexpected EOF"},
	} {
		if out, err := cli(c.spec, "clients", "create", "--file", "-"); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("create %s: err %v, want %q in:\n%s", c.spec, err, c.want, out)
		}
	}
	cmd := exec.Command(bin, "clients", "rotate-secret", "billing", "--server", base)
	cmd.Env = noEnv
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--token-file") {
		t.Fatalf("rotate-secret without the operator token: %v\n%s", err, out)
	}
	if err := token(s1, "vitals.read"); err != nil {
		t.Fatalf("refused commands changed the client: %v", err)
	}

	// Rotation with overlap: both secrets work.
	out, err = cli("", "clients", "rotate-secret", "billing", "--overlap", "1h")
	if err != nil {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	s2 := secretOf(out)
	if !strings.Contains(out, "previous_secret_expires") {
		t.Errorf("rotation answer does not say until when the old secret works:\n%s", out)
	}
	for _, s := range []string{s1, s2} {
		if err := token(s, "vitals.read"); err != nil {
			t.Fatalf("during the overlap, secret %.4s...: %v", s, err)
		}
	}
	// Rotation without overlap (a leak): only the newest works.
	out, err = cli("", "clients", "rotate-secret", "billing", "--overlap", "0s")
	if err != nil {
		t.Fatalf("rotate-secret --overlap 0s: %v\n%s", err, out)
	}
	s3 := secretOf(out)
	for _, s := range []string{s1, s2} {
		if err := token(s, "vitals.read"); !isOAuthError(err, "invalid_client") {
			t.Fatalf("old secret after a rotation without overlap: %v, want invalid_client", err)
		}
	}
	if err := token(s3, "vitals.read"); err != nil {
		t.Fatalf("newest secret: %v", err)
	}

	// The listing shows the client, never a secret.
	out, err = cli("", "clients", "list", "--json")
	if err != nil || !strings.Contains(out, `"billing"`) || !strings.Contains(out, `"has_secret": true`) {
		t.Fatalf("clients list --json: %v\n%s", err, out)
	}
	for _, s := range []string{s1, s2, s3} {
		if strings.Contains(out, s) {
			t.Fatal("the listing shows a secret")
		}
	}
	if out, err := cli("", "clients", "show", "nobody"); err == nil || !strings.Contains(out, "unknown client") {
		t.Fatalf("show an unknown client: %v\n%s", err, out)
	}

	// Update: a scope added works; the secret stays.
	out, err = cli(`{"client_id":"billing","grant_types":["client_credentials"],"scopes":["vitals.read","vitals.write"]}`, "clients", "update", "billing", "--file", "-")
	if err != nil {
		t.Fatalf("clients update: %v\n%s", err, out)
	}
	if err := token(s3, "vitals.write"); err != nil {
		t.Fatalf("scope added by update: %v", err)
	}
	if out, err := cli(`{"client_id":"billing","public":true,"grant_types":["authorization_code"],"redirect_uris":["https://a.example/cb"]}`, "clients", "update", "billing", "--file", "-"); err == nil || !strings.Contains(out, "public cannot change") {
		t.Fatalf("update flipping public: %v\n%s", err, out)
	}
	// The output of show goes back in as it is (show, edit, update); other
	// unknown fields are still refused.
	shown, err := cli("", "clients", "show", "billing")
	if err != nil || !strings.Contains(shown, `"has_secret": true`) {
		t.Fatalf("clients show: %v\n%s", err, shown)
	}
	if out, err := cli(strings.Replace(shown, `"vitals.write"`, `"vitals.write", "vitals.admin"`, 1), "clients", "update", "billing", "--file", "-"); err != nil || !strings.Contains(out, "vitals.admin") {
		t.Fatalf("update with the output of show: %v\n%s", err, out)
	}
	if err := token(s3, "vitals.admin"); err != nil {
		t.Fatalf("scope added through show's output: %v", err)
	}
	if out, err := cli(`{"client_id":"billing","grant_types":["client_credentials"],"client_secret":"x"}`, "clients", "update", "billing", "--file", "-"); err == nil || !strings.Contains(out, "unknown field") {
		t.Fatalf("update with an unknown field: %v\n%s", err, out)
	}

	// Disable: refused everywhere; the id stays taken.
	if out, err := cli("", "clients", "disable", "billing"); err != nil {
		t.Fatalf("clients disable: %v\n%s", err, out)
	}
	if err := token(s3, "vitals.read"); !isOAuthError(err, "invalid_client") {
		t.Fatalf("disabled client: %v, want invalid_client", err)
	}
	if out, err := cli(`{"client_id":"billing","grant_types":["client_credentials"]}`, "clients", "create", "--file", "-"); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("re-creating a disabled id: %v\n%s", err, out)
	}
	out, err = cli("", "clients", "list")
	if err != nil || !strings.Contains(out, "disabled") || !strings.Contains(out, "demo-service") {
		t.Fatalf("clients list: %v\n%s", err, out)
	}
}
