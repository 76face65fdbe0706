package user

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Personal data is sealed with AES-256-GCM under the user's own key, drawn
// from ctx.Entropy at registration. The nonce is drawn from ctx.Entropy too
// (96 random bits; an account seals a handful of values in its life, far
// below the birthday bound). The additional data binds each ciphertext to
// its account and field, so a sealed value cannot be moved between accounts
// or fields by someone who can write the store.

// KeyLen is the per-user data key length (AES-256).
const KeyLen = 32

// Sealed field names, used as additional data.
const (
	fieldFirstName = "first_name"
	fieldLastName  = "last_name"
	fieldPhone     = "phone"
	fieldEmail     = "email"
	fieldPHC       = "phc"
)

func aead(key []byte) (cipher.AEAD, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("user data key is %d bytes, want %d", len(key), KeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func additional(id, field string) []byte { return []byte(id + "\x00" + field) }

// seal encrypts plaintext as nonce || ciphertext || tag.
func seal(key []byte, entropy io.Reader, id, field, plaintext string) ([]byte, error) {
	g, err := aead(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	if _, err := io.ReadFull(entropy, nonce); err != nil {
		return nil, fmt.Errorf("draw nonce: %w", err)
	}
	return g.Seal(nonce, nonce, []byte(plaintext), additional(id, field)), nil
}

// open decrypts what seal produced. An empty sealed value opens to "".
func open(key []byte, id, field string, sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	g, err := aead(key)
	if err != nil {
		return "", err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return "", fmt.Errorf("sealed %s is too short", field)
	}
	n := g.NonceSize()
	pt, err := g.Open(nil, sealed[:n], sealed[n:], additional(id, field))
	if err != nil {
		return "", fmt.Errorf("open sealed %s: %w", field, err)
	}
	return string(pt), nil
}

// TokenLen is the e-mail magic-link token length (256 bits).
const TokenLen = 32

func newToken(entropy io.Reader) ([]byte, error) {
	t := make([]byte, TokenLen)
	if _, err := io.ReadFull(entropy, t); err != nil {
		return nil, fmt.Errorf("draw token: %w", err)
	}
	return t, nil
}

// tokenHash is a plain SHA-256: the token has 256 bits of entropy, so its
// hash cannot be reversed by search.
func tokenHash(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}

// newCode draws a uniform 6-digit code by rejection sampling (no modulo
// bias).
func newCode(entropy io.Reader) (string, error) {
	const limit = 4294000000 // largest multiple of 10^6 below 2^32
	var b [4]byte
	for {
		if _, err := io.ReadFull(entropy, b[:]); err != nil {
			return "", fmt.Errorf("draw code: %w", err)
		}
		if v := binary.BigEndian.Uint32(b[:]); v < limit {
			return fmt.Sprintf("%06d", v%1000000), nil
		}
	}
}

// codeHash is an HMAC under the user's key: a 6-digit code has a million
// values, so a plain hash in the log would give the code to anyone who can
// read the store or the event feed.
func codeHash(key []byte, code string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ward phone code\x00" + code))
	return m.Sum(nil)
}
