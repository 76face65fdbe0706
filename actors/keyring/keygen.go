package keyring

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/wardhq/ward/protocol"
)

// KeyGen makes a new private key for alg: RSA of at least 2048 bits for
// RS256, P-256 for ES256. Key generation is the host's: since Go 1.26
// crypto/rsa and crypto/ecdsa draw from the system's randomness whatever
// reader they are given, so this pure package cannot make keys itself, and
// generating RSA primes by hand is not code to own. A simulation passes a
// generator over a fixed pool.
type KeyGen func(alg protocol.KeyAlg) (crypto.Signer, error)

// minRSABits is the smallest RSA modulus accepted from a KeyGen.
const minRSABits = 2048

// checkGenerated refuses a generated key that does not fit alg.
func checkGenerated(alg protocol.KeyAlg, priv crypto.Signer) error {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if alg == protocol.KeyAlg_KEY_ALG_RS256 && k.N.BitLen() >= minRSABits {
			return nil
		}
	case *ecdsa.PrivateKey:
		if alg == protocol.KeyAlg_KEY_ALG_ES256 && k.Curve == elliptic.P256() {
			return nil
		}
	}
	return fmt.Errorf("generated key: %w: %T for %v", ErrBadKey, priv, alg)
}

// newKey generates and encodes a key for alg.
func newKey(alg protocol.KeyAlg, gen KeyGen, created int64) (*protocol.SigningKey, error) {
	if alg != protocol.KeyAlg_KEY_ALG_RS256 && alg != protocol.KeyAlg_KEY_ALG_ES256 {
		return nil, fmt.Errorf("generate key: %w: %v", ErrBadAlg, alg)
	}
	if gen == nil {
		return nil, errors.New("generate key: no key generator")
	}
	priv, err := gen(alg)
	if err != nil {
		return nil, fmt.Errorf("generate %v key: %w", alg, err)
	}
	if err := checkGenerated(alg, priv); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode %v private key: %w", alg, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encode %v public key: %w", alg, err)
	}
	kid, err := Thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &protocol.SigningKey{
		Kid:             kid,
		Alg:             alg,
		PrivateKey:      der,
		PublicKey:       pub,
		CreatedUnixNano: created,
	}, nil
}

// Thumbprint is the RFC 7638 JWK thumbprint of pub (SHA-256, base64url):
// a kid any verifier can recompute from the JWK it was served.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var canonical string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		canonical = `{"e":"` + b64(big.NewInt(int64(k.E)).Bytes()) + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("thumbprint: %w: curve %s", ErrBadKey, k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			return "", fmt.Errorf("thumbprint: %w", err)
		}
		// raw is 0x04 || X || Y with fixed-width coordinates, as RFC 7518
		// wants them.
		canonical = `{"crv":"P-256","kty":"EC","x":"` + b64(raw[1:33]) + `","y":"` + b64(raw[33:65]) + `"}`
	default:
		return "", fmt.Errorf("thumbprint: %w: %T", ErrBadKey, pub)
	}
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:]), nil
}
