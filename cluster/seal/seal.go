// Package seal encrypts the cluster's secrets at rest under an operator's
// master key: the token signing keys, the provider secret and the operator
// token live in the meta group, so without it a copy of any node's data
// directory (a backup, a disk sent for repair) would let its holder sign
// tokens. The master key itself is kept outside the data directory
// (--master-key-file), as ZITADEL's masterkey and Hydra's system secret are.
//
// A sealed value is "wardseal1" || nonce (12 bytes) || AES-256-GCM
// ciphertext and tag, with the value's meta key as additional data, so a
// sealed value cannot be moved to another key. Values without the prefix
// are plaintext: written before the cluster was sealed.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the master key's length: AES-256.
const KeySize = 32

// prefix starts every sealed value; the digit is the format's version.
var prefix = []byte("wardseal1")

const nonceSize = 12

var (
	// ErrNoKey: a sealed value, and no master key to open it.
	ErrNoKey = errors.New("seal: value is sealed and no master key was given")
	// ErrWrongKey: the value was sealed under another master key (or for
	// another name), or it was altered.
	ErrWrongKey = errors.New("seal: value does not open with this master key")
)

// Key is a master key.
type Key struct {
	aead cipher.AEAD
	id   string
}

// NewKey makes a Key from KeySize random bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("seal: master key is %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("ward master key id"))
	return &Key{aead: aead, id: hex.EncodeToString(m.Sum(nil)[:8])}, nil
}

// ParseKeyFile reads a master key file: the standard base64 of KeySize
// random bytes, surrounding white space allowed (head -c 32 /dev/urandom |
// base64 makes one).
func ParseKeyFile(b []byte) (*Key, error) {
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("seal: master key file is not base64: %w", err)
	}
	return NewKey(raw)
}

// ID names the key without revealing it (an HMAC of a constant under it):
// nodes compare IDs to know they hold the same key.
func (k *Key) ID() string { return k.id }

// Seal encrypts plain for the meta key name.
func (k *Key) Seal(name string, plain []byte) ([]byte, error) {
	out := make([]byte, len(prefix)+nonceSize, len(prefix)+nonceSize+len(plain)+k.aead.Overhead())
	copy(out, prefix)
	if _, err := rand.Read(out[len(prefix):]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return k.aead.Seal(out, out[len(prefix):], plain, []byte(name)), nil
}

// IsSealed reports whether b is a sealed value.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, prefix) }

// Open returns the plaintext of b stored under name: b itself when it is
// not sealed, else its decryption under k (nil k: ErrNoKey).
func Open(k *Key, name string, b []byte) ([]byte, error) {
	if !IsSealed(b) {
		return b, nil
	}
	if k == nil {
		return nil, ErrNoKey
	}
	rest := b[len(prefix):]
	if len(rest) < nonceSize+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrWrongKey, len(b))
	}
	plain, err := k.aead.Open(nil, rest[:nonceSize], rest[nonceSize:], []byte(name))
	if err != nil {
		return nil, ErrWrongKey
	}
	return plain, nil
}
