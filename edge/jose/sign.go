package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/wardhq/ward/protocol"
)

var b64 = base64.RawURLEncoding

// SigningKey signs JWTs under one kid and alg. It is safe for concurrent use.
// Keys made from an *rsa.PrivateKey or *ecdsa.PrivateKey hold OpenSSL
// memory in the openssl build: Close frees it at once (a cleanup frees it otherwise).
type SigningKey struct {
	kid    string
	alg    Alg
	signer crypto.Signer
	close  func() error
}

// NewSigningKey wraps a private key. An *rsa.PrivateKey or a P-256
// *ecdsa.PrivateKey goes to the compiled-in backend; any other
// crypto.Signer (an HSM, a KMS) is called as it is.
func NewSigningKey(kid string, alg Alg, priv crypto.Signer) (*SigningKey, error) {
	if kid == "" {
		return nil, fmt.Errorf("new %s signing key: %w: empty kid", alg, ErrBadKey)
	}
	if priv == nil {
		return nil, fmt.Errorf("new %s signing key %q: %w: no key", alg, kid, ErrBadKey)
	}
	if err := checkKey(alg, priv.Public()); err != nil {
		return nil, fmt.Errorf("new signing key %q: %w", kid, err)
	}
	k := &SigningKey{kid: kid, alg: alg, signer: priv, close: func() error { return nil }}
	var (
		native  crypto.Signer
		closeFn func() error
		err     error
	)
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		native, closeFn, err = newRSASigner(p)
	case *ecdsa.PrivateKey:
		native, closeFn, err = newECSigner(p)
	default:
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("new signing key %q: %w", kid, err)
	}
	k.signer, k.close = native, closeFn
	return k, nil
}

// ParseSigningKey reads a PKCS#8 DER private key.
func ParseSigningKey(kid string, alg Alg, pkcs8 []byte) (*SigningKey, error) {
	priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("parse signing key %q: %w: %w", kid, ErrBadKey, err)
	}
	s, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse signing key %q: %w: %T cannot sign", kid, ErrBadKey, priv)
	}
	return NewSigningKey(kid, alg, s)
}

// SigningKeyFromProto loads a key from the key state (actors/keyring).
func SigningKeyFromProto(k *protocol.SigningKey) (*SigningKey, error) {
	alg, err := algFromProto(k.GetAlg())
	if err != nil {
		return nil, fmt.Errorf("signing key %q: %w", k.GetKid(), err)
	}
	return ParseSigningKey(k.GetKid(), alg, k.GetPrivateKey())
}

func algFromProto(a protocol.KeyAlg) (Alg, error) {
	switch a {
	case protocol.KeyAlg_KEY_ALG_RS256:
		return RS256, nil
	case protocol.KeyAlg_KEY_ALG_ES256:
		return ES256, nil
	}
	return "", fmt.Errorf("%w: %v", ErrAlgNotAllowed, a)
}

func (k *SigningKey) Kid() string              { return k.kid }
func (k *SigningKey) Alg() Alg                 { return k.alg }
func (k *SigningKey) Public() crypto.PublicKey { return k.signer.Public() }

// Close releases native memory; the key must not be used afterwards.
func (k *SigningKey) Close() error { return k.close() }

// PublicKey is the verifying half, for a KeySet.
func (k *SigningKey) PublicKey() PublicKey {
	return PublicKey{Kid: k.kid, Alg: k.alg, Key: k.signer.Public()}
}

type header struct {
	Alg Alg    `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ,omitempty"`
}

// Sign makes a compact JWS. claims is marshalled as JSON unless it is a
// []byte or json.RawMessage, which must already hold a JSON object. typ is
// the typ header (TypJWT, TypAccessToken).
func Sign(key *SigningKey, typ string, claims any) (string, error) {
	var (
		payload []byte
		err     error
	)
	switch c := claims.(type) {
	case []byte:
		payload, err = c, rawObject(c)
	case json.RawMessage:
		payload, err = c, rawObject(c)
	default:
		payload, err = marshalObject(claims)
	}
	if err != nil {
		return "", err
	}
	h, err := json.Marshal(header{Alg: key.alg, Kid: key.kid, Typ: typ})
	if err != nil {
		return "", fmt.Errorf("sign: marshal header: %w", err)
	}
	hl, pl := b64.EncodedLen(len(h)), b64.EncodedLen(len(payload))
	buf := make([]byte, hl+1+pl, hl+1+pl+1+b64.EncodedLen(512))
	b64.Encode(buf, h)
	buf[hl] = '.'
	b64.Encode(buf[hl+1:], payload)
	sig, err := key.sign(buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// Verify only accepts objects; refusing them here keeps us from minting
// tokens nobody can read.
var errNotObject = fmt.Errorf("sign: claims are not a JSON object: %w", ErrMalformed)

// rawObject checks claims the caller encoded.
func rawObject(b []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return errNotObject
	}
	return nil
}

// marshalObject encodes claims. encoding/json emits valid JSON (a
// Marshaler's output included) with no insignificant leading space, so one
// byte tells an object, without parsing it again; a nil map gives null.
func marshalObject(claims any) ([]byte, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("sign: marshal claims: %w", err)
	}
	if b[0] != '{' {
		return nil, errNotObject
	}
	return b, nil
}

// SignInput signs a JWS signing input (base64url header "." base64url
// payload) and returns the JOSE-format signature, for JOSE libraries that
// build the token themselves and take an external signer.
func (k *SigningKey) SignInput(input []byte) ([]byte, error) { return k.sign(input) }

// joseSigner is a backend that can return ECDSA signatures as r||s
// directly, saving the ASN.1 round trip.
type joseSigner interface {
	signJOSE(digest []byte) ([]byte, error)
}

func (k *SigningKey) sign(input []byte) ([]byte, error) {
	digest := sha256.Sum256(input)
	if js, ok := k.signer.(joseSigner); ok && k.alg == ES256 {
		sig, err := js.signJOSE(digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign with %s key %q: %w", k.alg, k.kid, err)
		}
		return sig, nil
	}
	sig, err := k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign with %s key %q: %w", k.alg, k.kid, err)
	}
	if k.alg == ES256 {
		// crypto.Signer speaks ASN.1; JWS wants fixed-width r||s (RFC 7518
		// 3.4).
		if sig, err = ecdsaASN1ToJOSE(sig); err != nil {
			return nil, fmt.Errorf("sign with %s key %q: %w", k.alg, k.kid, err)
		}
	}
	return sig, nil
}

func ecdsaASN1ToJOSE(der []byte) ([]byte, error) {
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &rs)
	if err != nil || len(rest) != 0 {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, errors.New("signer returned an out-of-range ECDSA signature")
	}
	out := make([]byte, 64)
	rs.R.FillBytes(out[:32])
	rs.S.FillBytes(out[32:])
	return out, nil
}

// ecdsaVerifyJOSE checks a 64-byte r||s signature.
func ecdsaVerifyJOSE(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest, r, s)
}
