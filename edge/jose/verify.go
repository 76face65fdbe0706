package jose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PublicKey is a verification key and the one algorithm it may verify.
type PublicKey struct {
	Kid string
	Alg Alg
	Key crypto.PublicKey
}

// KeyFinder is where Verify looks keys up.
type KeyFinder interface {
	// FindKey returns the key called kid.
	FindKey(kid string) (PublicKey, bool)
	// SoleKey returns the only key, for tokens without a kid; with more
	// than one key it reports false, since guessing would let a token pick
	// its key.
	SoleKey() (PublicKey, bool)
}

// KeySet is a fixed KeyFinder, e.g. built from a JWKS.
type KeySet struct {
	byKid map[string]PublicKey
}

// NewKeySet checks every key against its algorithm and refuses duplicate
// kids.
func NewKeySet(keys ...PublicKey) (*KeySet, error) {
	s := &KeySet{byKid: make(map[string]PublicKey, len(keys))}
	for _, k := range keys {
		if k.Kid == "" {
			return nil, fmt.Errorf("key set: %w: empty kid", ErrBadKey)
		}
		if _, dup := s.byKid[k.Kid]; dup {
			return nil, fmt.Errorf("key set: %w: kid %q twice", ErrBadKey, k.Kid)
		}
		if err := checkKey(k.Alg, k.Key); err != nil {
			return nil, fmt.Errorf("key set: kid %q: %w", k.Kid, err)
		}
		s.byKid[k.Kid] = k
	}
	return s, nil
}

func (s *KeySet) FindKey(kid string) (PublicKey, bool) {
	k, ok := s.byKid[kid]
	return k, ok
}

func (s *KeySet) SoleKey() (PublicKey, bool) {
	if len(s.byKid) != 1 {
		return PublicKey{}, false
	}
	for _, k := range s.byKid {
		return k, true
	}
	return PublicKey{}, false
}

// Token is a verified JWT.
type Token struct {
	Alg Alg
	Kid string
	Typ string
	// Payload is the claims' JSON, for callers decoding into their own type.
	Payload []byte
	// Claims are the decoded claims; numbers are json.Number.
	Claims    map[string]any
	Expiry    time.Time
	NotBefore time.Time // zero when absent
	IssuedAt  time.Time // zero when absent
}

// Verifier checks tokens against a key set with pinned algorithms.
type Verifier struct {
	Keys KeyFinder
	// Algs are the algorithms accepted; an empty list accepts none.
	Algs []Alg
	// Leeway is the clock skew allowed on exp, nbf and iat; zero means
	// DefaultLeeway, negative means none.
	Leeway time.Duration
	// Typ, when set, is the typ header required (compared as RFC 7515 4.1.9
	// says: case-insensitively, "application/" optional).
	Typ string
}

// Verify checks token with keys, accepting only algs, at now.
func Verify(token string, keys KeyFinder, algs []Alg, now time.Time) (*Token, error) {
	v := Verifier{Keys: keys, Algs: algs}
	return v.Verify(token, now)
}

type parsedHeader struct {
	Alg  *string         `json:"alg"`
	Kid  *string         `json:"kid"`
	Typ  *string         `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks, in this order, size, shape, header, algorithm, key,
// signature, then claims: nothing from the payload is looked at before the
// signature holds.
func (v *Verifier) Verify(token string, now time.Time) (*Token, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(token), MaxTokenSize)
	}
	hEnc, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	pEnc, sEnc, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sEnc, ".") {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	if len(hEnc) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes, limit %d", ErrTooLarge, len(hEnc), MaxHeaderSize)
	}
	hJSON, err := decodeSegment(hEnc)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := strictObject(hJSON); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var h parsedHeader
	if err := json.Unmarshal(hJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg == nil {
		return nil, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	alg := Alg(*h.Alg)
	// Only algorithms this package implements can pass, whatever the caller
	// listed: "none" and HS* never reach key lookup.
	if (alg != RS256 && alg != ES256) || !slices.Contains(v.Algs, alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlgNotAllowed, clip(string(alg)))
	}
	if h.Crit != nil {
		// RFC 7515 4.1.11: extensions we do not know make the token invalid.
		return nil, fmt.Errorf("%w: crit header not supported", ErrMalformed)
	}
	key, err := v.findKey(h.Kid)
	if err != nil {
		return nil, err
	}
	if key.Alg != alg {
		return nil, fmt.Errorf("%w: token says %s, key %q is for %s", ErrAlgKeyMismatch, alg, key.Kid, key.Alg)
	}
	if err := checkKey(alg, key.Key); err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrAlgKeyMismatch, key.Kid, err)
	}
	sig, err := decodeSegment(sEnc)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(token[:len(hEnc)+1+len(pEnc)]))
	if !verifySig(alg, key.Key, digest[:], sig) {
		return nil, fmt.Errorf("%w: kid %q", ErrSignature, key.Kid)
	}

	out := &Token{Alg: alg, Kid: key.Kid}
	if h.Typ != nil {
		out.Typ = *h.Typ
	}
	if v.Typ != "" && !sameTyp(v.Typ, out.Typ) {
		return nil, fmt.Errorf("%w: %q, want %q", ErrWrongType, clip(out.Typ), v.Typ)
	}
	if out.Payload, err = decodeSegment(pEnc); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if err := strictObject(out.Payload); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out.Payload))
	dec.UseNumber()
	if err := dec.Decode(&out.Claims); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := v.checkTimes(out, now); err != nil {
		return nil, err
	}
	return out, nil
}

func (v *Verifier) findKey(kid *string) (PublicKey, error) {
	if v.Keys == nil {
		return PublicKey{}, fmt.Errorf("%w: no key set", ErrUnknownKey)
	}
	if kid == nil || *kid == "" {
		k, ok := v.Keys.SoleKey()
		if !ok {
			return PublicKey{}, fmt.Errorf("%w and the key set has more than one key", ErrMissingKid)
		}
		return k, nil
	}
	k, ok := v.Keys.FindKey(*kid)
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, clip(*kid))
	}
	return k, nil
}

func verifySig(alg Alg, pub crypto.PublicKey, digest, sig []byte) bool {
	switch alg {
	case RS256:
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		return ok && ecdsaVerifyJOSE(k, digest, sig)
	}
	return false
}

func (v *Verifier) checkTimes(t *Token, now time.Time) error {
	leeway := v.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	var err error
	var present bool
	if t.Expiry, present, err = numericDate(t.Claims, "exp"); err != nil {
		return err
	} else if !present {
		return ErrMissingExp
	}
	if !now.Before(t.Expiry.Add(leeway)) {
		return fmt.Errorf("%w at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	if t.NotBefore, present, err = numericDate(t.Claims, "nbf"); err != nil {
		return err
	} else if present && now.Add(leeway).Before(t.NotBefore) {
		return fmt.Errorf("%w until %s", ErrNotYetValid, t.NotBefore.UTC().Format(time.RFC3339))
	}
	if t.IssuedAt, present, err = numericDate(t.Claims, "iat"); err != nil {
		return err
	} else if present && now.Add(leeway).Before(t.IssuedAt) {
		return fmt.Errorf("%w: iat %s", ErrIssuedInFuture, t.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// maxNumericDate keeps float-to-int conversion defined (year ~285 million).
const maxNumericDate = 1 << 53

func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, true, fmt.Errorf("%w: %s is not a number", ErrMalformed, name)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxNumericDate {
		return time.Time{}, true, fmt.Errorf("%w: %s out of range", ErrMalformed, name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

func decodeSegment(s string) ([]byte, error) {
	// Strict: no padding, no trailing bits, so one token has one encoding
	// and a signature cannot be re-spelled.
	b, err := b64.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: base64url: %v", ErrMalformed, err)
	}
	return b, nil
}

// strictObject accepts one JSON object with no repeated member names and
// nothing after it. encoding/json keeps the last of two "alg" members where
// other parsers keep the first; refusing duplicates removes that
// disagreement.
func strictObject(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		name, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: bad member name", ErrMalformed)
		}
		if seen[name] {
			return fmt.Errorf("%w: member %q repeated", ErrMalformed, clip(name))
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	return nil
}

func sameTyp(want, got string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		return strings.TrimPrefix(s, "application/")
	}
	return norm(want) == norm(got)
}

// clip keeps attacker-chosen strings short in error messages and logs.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
