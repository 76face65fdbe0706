package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

type source struct {
	set *protocol.KeySet
	err error
}

func (s source) KeySet() (*protocol.KeySet, error) { return s.set, s.err }

func esGen(protocol.KeyAlg) (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// TestHandler: the document lists exactly the published keys, as
// verifiable JWKs, cacheable for max-age; no keys is a 503, not an empty
// set a verifier would cache.
func TestHandler(t *testing.T) {
	policy := keyring.Policy{Algs: []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_ES256}}
	t0 := time.Unix(1_700_000_000, 0)
	set, _, err := keyring.Plan(nil, t0, policy, esGen)
	if err != nil {
		t.Fatal(err)
	}
	// Plan made the active key and a successor published much later.
	if len(set.Keys) != 2 {
		t.Fatalf("plan made %d keys", len(set.Keys))
	}
	now := t0.Add(time.Hour)
	h := Handler(source{set: set}, Options{Now: func() time.Time { return now }})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var doc jose.JWKS
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	active, _ := keyring.Signing(set, protocol.KeyAlg_KEY_ALG_ES256, now)
	if len(doc.Keys) != 1 || doc.Keys[0].Kid != active.Kid || doc.Keys[0].Alg != jose.ES256 {
		t.Fatalf("JWKS %s, want only the active key %s", rec.Body, active.Kid)
	}
	if _, err := doc.KeySet(); err != nil {
		t.Fatalf("served JWKS does not read back: %v", err)
	}
	if strings.Contains(rec.Body.String(), `"d"`) {
		t.Fatalf("JWKS carries a private member: %s", rec.Body)
	}

	// HEAD: headers only.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, Path, nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes", rec.Code, rec.Body.Len())
	}

	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		code   int
	}{
		{"no keys yet", Handler(source{err: errors.New("no signing keys yet")}, Options{}), http.MethodGet, http.StatusServiceUnavailable},
		{"POST", h, http.MethodPost, http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest(tc.method, Path, nil))
		if rec.Code != tc.code || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %q, want %d problem+json", tc.name, rec.Code, rec.Header().Get("Content-Type"), tc.code)
		}
		if rec.Header().Get("Cache-Control") != "" {
			t.Errorf("%s: an error is cacheable", tc.name)
		}
	}
}
