// Package jose signs and verifies the JWTs Ward issues (compact JWS, RS256
// and ES256 only) and serves their public keys as JWKS.
//
// Verification pins algorithms: a token's alg must be one the caller allows,
// one this package implements, and the alg of the key its kid names. Keys
// never come from the token itself (jwk, jku, x5u, x5c headers are ignored),
// so the classic confusions (alg "none", HS256 keyed with the RSA public key,
// an RS256 key used for ES256) have no path to succeed.
//
// RS256 signing is the expensive operation of an identity provider; built
// with `-tags openssl` (and cgo) it goes through OpenSSL's libcrypto, which
// is several times faster than crypto/rsa. ES256 (P-256) goes there too, a
// third faster than crypto/ecdsa. Backend says which is compiled in.
package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"
)

// Alg is a JWS algorithm name.
type Alg string

const (
	RS256 Alg = "RS256"
	ES256 Alg = "ES256"
)

// Token types for the typ header: plain ID tokens and RFC 9068 access tokens.
const (
	TypJWT         = "JWT"
	TypAccessToken = "at+jwt"
)

// Bounds on untrusted input, checked before any decoding.
const (
	MaxTokenSize  = 16 << 10
	MaxHeaderSize = 1 << 10 // encoded; ours are under 150 bytes
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = time.Minute
)

var (
	ErrMalformed      = errors.New("jose: malformed token")
	ErrTooLarge       = errors.New("jose: token too large")
	ErrAlgNotAllowed  = errors.New("jose: algorithm not allowed")
	ErrAlgKeyMismatch = errors.New("jose: algorithm does not match the key")
	ErrMissingKid     = errors.New("jose: token has no kid")
	ErrUnknownKey     = errors.New("jose: unknown key")
	ErrSignature      = errors.New("jose: invalid signature")
	ErrExpired        = errors.New("jose: token expired")
	ErrNotYetValid    = errors.New("jose: token not yet valid")
	ErrIssuedInFuture = errors.New("jose: token issued in the future")
	ErrMissingExp     = errors.New("jose: token has no exp")
	ErrWrongType      = errors.New("jose: wrong token type")
	ErrBadKey         = errors.New("jose: unusable key")
)

// checkKey says whether pub can carry alg at all; RSA below 2048 bits is
// refused because nobody should accept a token that cheap to forge.
func checkKey(alg Alg, pub crypto.PublicKey) error {
	switch alg {
	case RS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an RSA key, have %T", ErrBadKey, alg, pub)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key of %d bits", ErrBadKey, k.N.BitLen())
		}
	case ES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an EC key, have %T", ErrBadKey, alg, pub)
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: %s needs P-256, have %s", ErrBadKey, alg, k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("%w: %q", ErrAlgNotAllowed, alg)
	}
	return nil
}
