//go:build !openssl || !cgo

package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
)

// Backend names the RS256 and ES256 signing implementation compiled in:
// "go" (crypto/rsa, crypto/ecdsa) here, "openssl" when built with -tags
// openssl and cgo.
const Backend = "go"

func newRSASigner(k *rsa.PrivateKey) (crypto.Signer, func() error, error) {
	// Precompute once so concurrent signers never race to fill the CRT
	// values lazily.
	k.Precompute()
	return k, func() error { return nil }, nil
}

func newECSigner(k *ecdsa.PrivateKey) (crypto.Signer, func() error, error) {
	return k, func() error { return nil }, nil
}
