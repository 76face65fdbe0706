package jose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardhq/ward/protocol"
)

var now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// opaque hides the concrete key type so NewSigningKey cannot pick the
// OpenSSL backend: it is the pure-Go path in either build.
type opaque struct{ crypto.Signer }

type fixture struct {
	rsaPriv *rsa.PrivateKey
	ecPriv  *ecdsa.PrivateKey
	rs      *SigningKey // compiled-in backend
	rsGo    *SigningKey // crypto/rsa
	es      *SigningKey // compiled-in backend
	esGo    *SigningKey // crypto/ecdsa
	keys    *KeySet
}

var (
	fixOnce sync.Once
	fix     fixture
)

func keys(tb testing.TB) *fixture {
	tb.Helper()
	fixOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		fix.rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048)
		fix.ecPriv, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		var e error
		fix.rs, e = NewSigningKey("rsa-1", RS256, fix.rsaPriv)
		must(e)
		fix.rsGo, e = NewSigningKey("rsa-1", RS256, opaque{fix.rsaPriv})
		must(e)
		fix.es, e = NewSigningKey("ec-1", ES256, fix.ecPriv)
		must(e)
		fix.esGo, e = NewSigningKey("ec-1", ES256, opaque{fix.ecPriv})
		must(e)
		fix.keys, e = NewKeySet(fix.rs.PublicKey(), fix.es.PublicKey())
		must(e)
		if err != nil {
			panic(err)
		}
	})
	return &fix
}

func claimsAt(iat time.Time, life time.Duration) map[string]any {
	return map[string]any{
		"sub": "user-1", "tid": "tenant-1", "jti": "j1", "acr": "2",
		"iat": iat.Unix(), "nbf": iat.Unix(), "exp": iat.Add(life).Unix(),
	}
}

var both = []Alg{RS256, ES256}

func TestSignVerify(t *testing.T) {
	f := keys(t)
	t.Logf("RS256 backend: %s", Backend)
	for _, tc := range []struct {
		name string
		key  *SigningKey
		typ  string
	}{
		{"RS256 " + Backend, f.rs, TypJWT},
		{"RS256 go", f.rsGo, TypAccessToken},
		{"ES256 " + Backend, f.es, TypAccessToken},
		{"ES256 go", f.esGo, TypAccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Sign(tc.key, tc.typ, claimsAt(now, 15*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(tok, f.keys, both, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if got.Alg != tc.key.Alg() || got.Kid != tc.key.Kid() || got.Typ != tc.typ || got.Claims["sub"] != "user-1" {
				t.Errorf("verified token: %+v", got)
			}
			if !got.Expiry.Equal(now.Add(15 * time.Minute)) {
				t.Errorf("expiry %s", got.Expiry)
			}
			v := Verifier{Keys: f.keys, Algs: both, Typ: "application/AT+JWT"}
			if _, err := v.Verify(tok, now); (err == nil) != (tc.typ == TypAccessToken) {
				t.Errorf("typ check: %v", err)
			}
		})
	}
	t.Run("raw payload", func(t *testing.T) {
		tok, err := Sign(f.es, TypJWT, []byte(`{"sub":"x","exp":1893499200}`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Verify(tok, f.keys, both, now)
		if err != nil || string(got.Payload) != `{"sub":"x","exp":1893499200}` {
			t.Fatalf("%v %s", err, got.Payload)
		}
		if _, err := Sign(f.es, TypJWT, []byte(`[1]`)); !errors.Is(err, ErrMalformed) {
			t.Errorf("signed a non-object: %v", err)
		}
	})
	t.Run("marshalled non-objects", func(t *testing.T) {
		var nilMap map[string]any
		for _, v := range []any{nilMap, []string{"a"}, "str", 7, json.RawMessage(`"x"`), rawMarshaler(`[1]`), rawMarshaler(`null`)} {
			if _, err := Sign(f.es, TypJWT, v); !errors.Is(err, ErrMalformed) && err == nil {
				t.Errorf("signed %T %v", v, v)
			}
		}
		tok, err := Sign(f.es, TypJWT, rawMarshaler(`{"sub":"m","exp":1893499200}`))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Verify(tok, f.keys, both, now); err != nil || got.Claims["sub"] != "m" {
			t.Fatalf("%v %v", err, got)
		}
	})
}

// rawMarshaler is a claims type with its own MarshalJSON.
type rawMarshaler string

func (r rawMarshaler) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// TestRS256MatchesCryptoRSA cross-checks the backends: PKCS#1 v1.5 is
// deterministic, so OpenSSL and crypto/rsa must produce the same bytes, and
// each verifies with the other's public operation.
func TestRS256MatchesCryptoRSA(t *testing.T) {
	f := keys(t)
	for i := range 20 {
		msg := bytes.Repeat([]byte{byte(i)}, i*37)
		digest := sha256.Sum256(msg)
		got, err := f.rs.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, f.rsaPriv, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s signature differs from crypto/rsa", Backend)
		}
		if err := rsa.VerifyPKCS1v15(&f.rsaPriv.PublicKey, crypto.SHA256, digest[:], got); err != nil {
			t.Fatalf("crypto/rsa refuses the %s signature: %v", Backend, err)
		}
	}
	a, _ := Sign(f.rs, TypJWT, claimsAt(now, time.Hour))
	b, _ := Sign(f.rsGo, TypJWT, claimsAt(now, time.Hour))
	if a != b {
		t.Errorf("tokens differ between %s and go", Backend)
	}
}

// ECDSA signatures are randomised, so the backends cannot be compared byte
// for byte: each must verify under crypto/ecdsa in both encodings.
func TestES256VerifiesWithCryptoECDSA(t *testing.T) {
	f := keys(t)
	for i := range 50 {
		digest := sha256.Sum256(bytes.Repeat([]byte{byte(i)}, i*37))
		der, err := f.es.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&f.ecPriv.PublicKey, digest[:], der) {
			t.Fatalf("crypto/ecdsa refuses the %s ASN.1 signature", Backend)
		}
		raw, err := f.es.sign(bytes.Repeat([]byte{byte(i)}, i*37))
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsaVerifyJOSE(&f.ecPriv.PublicKey, digest[:], raw) {
			t.Fatalf("crypto/ecdsa refuses the %s JOSE signature %x", Backend, raw)
		}
	}
	if _, err := f.es.signer.Sign(rand.Reader, make([]byte, 32), crypto.SHA384); err == nil && Backend != "go" {
		t.Error("SHA-384 accepted")
	}
	if _, err := f.es.signer.Sign(rand.Reader, make([]byte, 31), crypto.SHA256); err == nil && Backend != "go" {
		t.Error("short digest accepted")
	}
}

func TestConcurrentSign(t *testing.T) {
	for _, key := range []*SigningKey{keys(t).rs, keys(t).es} {
		t.Run(string(key.Alg()), func(t *testing.T) { concurrentSign(t, key) })
	}
}

func concurrentSign(t *testing.T, key *SigningKey) {
	f := keys(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				c := claimsAt(now, time.Hour)
				c["n"] = g*100 + i
				tok, err := Sign(key, TypJWT, c)
				if err == nil {
					_, err = Verify(tok, f.keys, both, now)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCloseReleasesKey(t *testing.T) {
	f := keys(t)
	for _, tc := range []struct {
		alg  Alg
		priv crypto.Signer
	}{{RS256, f.rsaPriv}, {ES256, f.ecPriv}} {
		t.Run(string(tc.alg), func(t *testing.T) { closeReleases(t, tc.alg, tc.priv) })
	}
}

func closeReleases(t *testing.T, alg Alg, priv crypto.Signer) {
	k, err := NewSigningKey("tmp", alg, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(k, TypJWT, claimsAt(now, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	_, err = Sign(k, TypJWT, claimsAt(now, time.Hour))
	if (err != nil) != (Backend == "openssl") {
		t.Errorf("sign after close on %s: %v", Backend, err)
	}
}

// forge builds a token with any header and a signature from sign.
func forge(header, payload string, sign func(input []byte) []byte) string {
	in := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	return in + "." + b64.EncodeToString(sign([]byte(in)))
}

func TestVerifyRefuses(t *testing.T) {
	f := keys(t)
	good, _ := json.Marshal(claimsAt(now, 15*time.Minute))
	payload := string(good)
	esSign := func(in []byte) []byte {
		s, err := f.es.sign(in)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsSign := func(in []byte) []byte {
		s, err := f.rs.sign(in)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	spki, _ := x509.MarshalPKIXPublicKey(&f.rsaPriv.PublicKey)
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	hmacWith := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	valid, _ := Sign(f.es, TypJWT, claimsAt(now, 15*time.Minute))
	parts := strings.Split(valid, ".")
	single, _ := NewKeySet(f.es.PublicKey())

	tests := []struct {
		name  string
		token string
		keys  KeyFinder
		algs  []Alg
		at    time.Time
		want  error
	}{
		{name: "alg none, empty signature", token: forge(`{"alg":"none","kid":"ec-1"}`, payload, func([]byte) []byte { return nil }), want: ErrAlgNotAllowed},
		{name: "alg None", token: forge(`{"alg":"None","kid":"ec-1"}`, payload, func([]byte) []byte { return nil }), want: ErrAlgNotAllowed},
		{name: "alg none even if listed", token: forge(`{"alg":"none"}`, payload, func([]byte) []byte { return nil }), algs: []Alg{"none"}, want: ErrAlgNotAllowed},
		{name: "HS256 keyed with the PEM public key", token: forge(`{"alg":"HS256","kid":"rsa-1"}`, payload, hmacWith(pemPub)), want: ErrAlgNotAllowed},
		{name: "HS256 keyed with the DER public key", token: forge(`{"alg":"HS256","kid":"rsa-1"}`, payload, hmacWith(spki)), algs: []Alg{"HS256", RS256}, want: ErrAlgNotAllowed},
		{name: "HS512", token: forge(`{"alg":"HS512","kid":"rsa-1"}`, payload, hmacWith(spki)), want: ErrAlgNotAllowed},
		{name: "alg not in allowed list", token: valid, algs: []Alg{RS256}, want: ErrAlgNotAllowed},
		{name: "no allowed algs", token: valid, algs: []Alg{}, want: ErrAlgNotAllowed},
		{name: "ES256 header on the RSA key", token: forge(`{"alg":"ES256","kid":"rsa-1"}`, payload, esSign), want: ErrAlgKeyMismatch},
		{name: "RS256 header on the EC key", token: forge(`{"alg":"RS256","kid":"ec-1"}`, payload, rsSign), want: ErrAlgKeyMismatch},
		{name: "unknown kid", token: forge(`{"alg":"ES256","kid":"ec-2"}`, payload, esSign), want: ErrUnknownKey},
		{name: "missing kid, two keys", token: forge(`{"alg":"ES256"}`, payload, esSign), want: ErrMissingKid},
		{name: "empty kid, two keys", token: forge(`{"alg":"ES256","kid":""}`, payload, esSign), want: ErrMissingKid},
		{name: "missing kid, one key", token: forge(`{"alg":"ES256"}`, payload, esSign), keys: single},
		{name: "signed by another key under the kid", token: forge(`{"alg":"RS256","kid":"rsa-1"}`, payload, func(in []byte) []byte {
			other, _ := rsa.GenerateKey(rand.Reader, 2048)
			d := sha256.Sum256(in)
			s, _ := rsa.SignPKCS1v15(nil, other, crypto.SHA256, d[:])
			return s
		}), want: ErrSignature},
		{name: "tampered payload", token: parts[0] + "." + b64.EncodeToString([]byte(strings.Replace(payload, "user-1", "admin", 1))) + "." + parts[2], want: ErrSignature},
		{name: "tampered signature", token: parts[0] + "." + parts[1] + "." + b64.EncodeToString(bytes.Repeat([]byte{1}, 64)), want: ErrSignature},
		{name: "ASN.1 ECDSA signature", token: forge(`{"alg":"ES256","kid":"ec-1"}`, payload, func(in []byte) []byte {
			d := sha256.Sum256(in)
			s, _ := ecdsa.SignASN1(rand.Reader, f.ecPriv, d[:])
			return s
		}), want: ErrSignature},
		{name: "expired", token: valid, at: now.Add(16 * time.Minute), want: ErrExpired},
		{name: "expired within leeway", token: valid, at: now.Add(15*time.Minute + 59*time.Second)},
		{name: "not yet valid", token: valid, at: now.Add(-2 * time.Minute), want: ErrNotYetValid},
		{name: "issued in the future", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"exp":1999999999,"iat":1893499300}`, esSign), at: now.Add(-10 * time.Minute), want: ErrIssuedInFuture},
		{name: "no exp", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"sub":"x"}`, esSign), want: ErrMissingExp},
		{name: "exp as string", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"exp":"1999999999"}`, esSign), want: ErrMalformed},
		{name: "exp huge", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"exp":1e300}`, esSign), want: ErrMalformed},
		{name: "payload not an object", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `["exp"]`, esSign), want: ErrMalformed},
		{name: "repeated claim", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"exp":1999999999,"sub":"a","sub":"b"}`, esSign), want: ErrMalformed},
		{name: "repeated alg", token: forge(`{"alg":"none","kid":"ec-1","alg":"ES256"}`, payload, esSign), want: ErrMalformed},
		{name: "crit", token: forge(`{"alg":"ES256","kid":"ec-1","crit":["b64"],"b64":false}`, payload, esSign), want: ErrMalformed},
		{name: "alg not a string", token: forge(`{"alg":["ES256"],"kid":"ec-1"}`, payload, esSign), want: ErrMalformed},
		{name: "no alg", token: forge(`{"kid":"ec-1"}`, payload, esSign), want: ErrMalformed},
		{name: "header not JSON", token: forge(`alg`, payload, esSign), want: ErrMalformed},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], want: ErrMalformed},
		{name: "four parts", token: valid + ".x", want: ErrMalformed},
		{name: "empty", token: "", want: ErrMalformed},
		{name: "oversized token", token: forge(`{"alg":"ES256","kid":"ec-1"}`, `{"exp":1999999999,"x":"`+strings.Repeat("a", MaxTokenSize)+`"}`, esSign), want: ErrTooLarge},
		{name: "oversized header", token: forge(`{"alg":"ES256","kid":"`+strings.Repeat("k", MaxHeaderSize)+`"}`, payload, esSign), want: ErrTooLarge},
		{name: "embedded jwk is ignored", token: forge(`{"alg":"ES256","kid":"nope","jwk":{"kty":"EC"}}`, payload, esSign), want: ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = f.keys
			}
			algs := tc.algs
			if algs == nil {
				algs = both
			}
			at := tc.at
			if at.IsZero() {
				at = now
			}
			_, err := Verify(tc.token, keys, algs, at)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestJWK(t *testing.T) {
	f := keys(t)
	for _, k := range []*SigningKey{f.rs, f.es} {
		j, err := NewJWK(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if j.Use != "sig" || j.Alg != k.Alg() || j.Kid != k.Kid() {
			t.Errorf("jwk %+v", j)
		}
		b, _ := json.Marshal(JWKS{Keys: []JWK{j}})
		var back JWKS
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		set, err := back.KeySet()
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := Sign(k, TypJWT, claimsAt(now, time.Hour))
		if _, err := Verify(tok, set, both, now); err != nil {
			t.Errorf("%s token does not verify with its JWK: %v", k.Alg(), err)
		}
	}
	ec, _ := NewJWK(f.es.PublicKey())
	if len(ec.X) != 43 || len(ec.Y) != 43 || ec.Crv != "P-256" {
		t.Errorf("EC coordinates not full width: %+v", ec)
	}
	rsj, _ := NewJWK(f.rs.PublicKey())
	if rsj.E != "AQAB" {
		t.Errorf("e = %q", rsj.E)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	bad := []JWK{
		func() JWK { j := ec; j.Alg = ""; return j }(),
		func() JWK { j := ec; j.Use = "enc"; return j }(),
		func() JWK { j := ec; j.Alg = RS256; return j }(),
		func() JWK { j := ec; j.Y = j.X; return j }(), // off the curve
		func() JWK { j := ec; j.Crv = "P-384"; return j }(),
		func() JWK { j := rsj; j.E = "AAEAAQ"; return j }(),
		func() JWK { j := rsj; j.N = b64.EncodeToString(small.N.Bytes()); return j }(),
		{Kty: "oct", Alg: "HS256", Kid: "k"},
	}
	for i, j := range bad {
		if _, err := j.PublicKey(); !errors.Is(err, ErrBadKey) {
			t.Errorf("bad jwk %d accepted: %v", i, err)
		}
	}
	if _, err := NewKeySet(f.rs.PublicKey(), f.rs.PublicKey()); !errors.Is(err, ErrBadKey) {
		t.Errorf("duplicate kid: %v", err)
	}
	if _, err := NewSigningKey("x", ES256, f.rsaPriv); !errors.Is(err, ErrBadKey) {
		t.Errorf("RSA key for ES256: %v", err)
	}
}

func TestFromProto(t *testing.T) {
	f := keys(t)
	var protoKeys []*protocol.SigningKey
	for _, c := range []struct {
		kid  string
		alg  protocol.KeyAlg
		priv crypto.Signer
	}{{"rsa-1", protocol.KeyAlg_KEY_ALG_RS256, f.rsaPriv}, {"ec-1", protocol.KeyAlg_KEY_ALG_ES256, f.ecPriv}} {
		der, _ := x509.MarshalPKCS8PrivateKey(c.priv)
		pub, _ := x509.MarshalPKIXPublicKey(c.priv.Public())
		protoKeys = append(protoKeys, &protocol.SigningKey{Kid: c.kid, Alg: c.alg, PrivateKey: der, PublicKey: pub})
	}
	jwks, err := JWKSFromProto(protoKeys)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwks.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	for _, pk := range protoKeys {
		k, err := SigningKeyFromProto(pk)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := Sign(k, TypAccessToken, claimsAt(now, time.Hour))
		if _, err := Verify(tok, set, both, now); err != nil {
			t.Errorf("%s: %v", pk.Kid, err)
		}
		k.Close()
	}
	protoKeys[0].Alg = protocol.KeyAlg_KEY_ALG_ES256
	if _, err := SigningKeyFromProto(protoKeys[0]); !errors.Is(err, ErrBadKey) {
		t.Errorf("RSA key labelled ES256: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	k := keys(f)
	for _, key := range []*SigningKey{k.rs, k.es} {
		tok, _ := Sign(key, TypJWT, claimsAt(now, time.Hour))
		f.Add(tok)
	}
	f.Add(forge(`{"alg":"none"}`, `{"exp":1999999999}`, func([]byte) []byte { return nil }))
	f.Add(forge(`{"alg":"HS256","kid":"rsa-1"}`, `{"exp":1999999999}`, func([]byte) []byte { return []byte("x") }))
	f.Add("..")
	f.Add("e30.e30.")
	f.Add(forge(`{"alg":"ES256","kid":"ec-1","crit":[]}`, `{"exp":1e999}`, func([]byte) []byte { return make([]byte, 64) }))
	f.Fuzz(func(t *testing.T, token string) {
		got, err := Verify(token, k.keys, both, now)
		if err != nil {
			return
		}
		// Anything accepted must be one of ours: a pinned alg, a known kid.
		if (got.Alg != RS256 && got.Alg != ES256) || (got.Kid != "rsa-1" && got.Kid != "ec-1") {
			t.Fatalf("accepted %q as %+v", token, got)
		}
	})
}

func BenchmarkSignRS256(b *testing.B) {
	f := keys(b)
	benchSign(b, f.rsGo, f.rs)
}

// benchSign measures the pure-Go key and, in the openssl build, the
// compiled-in one, alone and from all Ps.
func benchSign(b *testing.B, goKey, native *SigningKey) {
	type backend struct {
		name string
		key  *SigningKey
	}
	backends := []backend{{"go", goKey}}
	if Backend != "go" {
		backends = append(backends, backend{Backend, native})
	}
	for _, be := range backends {
		name, key := be.name, be.key
		b.Run(name, func(b *testing.B) {
			c := claimsAt(now, time.Hour)
			for b.Loop() {
				if _, err := Sign(key, TypAccessToken, c); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			c := claimsAt(now, time.Hour)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := Sign(key, TypAccessToken, c); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSignES256(b *testing.B) {
	f := keys(b)
	benchSign(b, f.esGo, f.es)
}

func benchVerify(b *testing.B, key *SigningKey) {
	f := keys(b)
	tok, _ := Sign(key, TypAccessToken, claimsAt(now, time.Hour))
	for b.Loop() {
		if _, err := Verify(tok, f.keys, both, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, keys(b).rs) }
func BenchmarkVerifyES256(b *testing.B) { benchVerify(b, keys(b).es) }
