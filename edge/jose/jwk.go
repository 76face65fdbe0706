package jose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/big"

	"github.com/wardhq/ward/protocol"
)

// JWK is a public key as RFC 7517/7518 spell it.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg Alg    `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	// RSA
	N string `json:"n,omitempty"`
	E string `json:"e,omitempty"`
	// EC
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// JWKS is the document served at the jwks_uri.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// NewJWK describes k for a JWKS, as a signature key pinned to its alg.
func NewJWK(k PublicKey) (JWK, error) {
	if err := checkKey(k.Alg, k.Key); err != nil {
		return JWK{}, fmt.Errorf("jwk %q: %w", k.Kid, err)
	}
	j := JWK{Use: "sig", Alg: k.Alg, Kid: k.Kid}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		j.Kty = "RSA"
		j.N = b64.EncodeToString(pub.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			return JWK{}, fmt.Errorf("jwk %q: %w", k.Kid, err)
		}
		// Coordinates keep their full 32 bytes (RFC 7518 6.2.1.2).
		j.Kty, j.Crv = "EC", "P-256"
		j.X = b64.EncodeToString(raw[1:33])
		j.Y = b64.EncodeToString(raw[33:65])
	}
	return j, nil
}

// PublicKey reads j back. It insists on an alg: a key without one could be
// used with any algorithm, which is what pinning forbids.
func (j JWK) PublicKey() (PublicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return PublicKey{}, fmt.Errorf("jwk %q: %w: use %q", clip(j.Kid), ErrBadKey, clip(j.Use))
	}
	if j.Alg == "" {
		return PublicKey{}, fmt.Errorf("jwk %q: %w: no alg", clip(j.Kid), ErrBadKey)
	}
	k := PublicKey{Kid: j.Kid, Alg: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err := b64.Strict().DecodeString(j.N)
		if err != nil {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: n: %v", clip(j.Kid), ErrBadKey, err)
		}
		e, err := b64.Strict().DecodeString(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: e", clip(j.Kid), ErrBadKey)
		}
		ev := new(big.Int).SetBytes(e).Int64()
		if ev < 3 || ev%2 == 0 || ev > 1<<31-1 {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: e = %d", clip(j.Kid), ErrBadKey, ev)
		}
		k.Key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}
	case "EC":
		if j.Crv != "P-256" {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: crv %q", clip(j.Kid), ErrBadKey, clip(j.Crv))
		}
		x, errX := b64.Strict().DecodeString(j.X)
		y, errY := b64.Strict().DecodeString(j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: coordinates", clip(j.Kid), ErrBadKey)
		}
		// ParseUncompressedPublicKey refuses points off the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return PublicKey{}, fmt.Errorf("jwk %q: %w: %v", clip(j.Kid), ErrBadKey, err)
		}
		k.Key = pub
	default:
		return PublicKey{}, fmt.Errorf("jwk %q: %w: kty %q", clip(j.Kid), ErrBadKey, clip(j.Kty))
	}
	if err := checkKey(k.Alg, k.Key); err != nil {
		return PublicKey{}, fmt.Errorf("jwk %q: %w", clip(j.Kid), err)
	}
	return k, nil
}

// KeySet builds a KeyFinder from a fetched JWKS.
func (s JWKS) KeySet() (*KeySet, error) {
	keys := make([]PublicKey, 0, len(s.Keys))
	for _, j := range s.Keys {
		k, err := j.PublicKey()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewKeySet(keys...)
}

// PublicKeyFromProto reads the public half of a key from the key state.
func PublicKeyFromProto(k *protocol.SigningKey) (PublicKey, error) {
	alg, err := algFromProto(k.GetAlg())
	if err != nil {
		return PublicKey{}, fmt.Errorf("key %q: %w", k.GetKid(), err)
	}
	pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
	if err != nil {
		return PublicKey{}, fmt.Errorf("key %q: %w: %w", k.GetKid(), ErrBadKey, err)
	}
	if err := checkKey(alg, pub); err != nil {
		return PublicKey{}, fmt.Errorf("key %q: %w", k.GetKid(), err)
	}
	return PublicKey{Kid: k.GetKid(), Alg: alg, Key: pub}, nil
}

// JWKSFromProto is the JWKS for keys, e.g. keyring.Published(set, now).
func JWKSFromProto(keys []*protocol.SigningKey) (JWKS, error) {
	out := JWKS{Keys: make([]JWK, 0, len(keys))}
	for _, k := range keys {
		pk, err := PublicKeyFromProto(k)
		if err != nil {
			return JWKS{}, fmt.Errorf("jwks: %w", err)
		}
		j, err := NewJWK(pk)
		if err != nil {
			return JWKS{}, fmt.Errorf("jwks: %w", err)
		}
		out.Keys = append(out.Keys, j)
	}
	return out, nil
}
