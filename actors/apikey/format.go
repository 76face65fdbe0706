package apikey

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// Prefix starts every API key, so that secret scanners and people can tell
// one apart from other tokens.
const Prefix = "ward_"

// IDLen is a key id's length: 24 characters of a-z 0-9 (120 bits), drawn
// by whoever creates the key. An id has no "_" so the secret, whose
// base64url may contain one, follows the second "_" unambiguously.
const IDLen = 24

// MaxKeyLen bounds what Parse reads.
const MaxKeyLen = len(Prefix) + IDLen + 1 + 43

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

var b64 = base64.RawURLEncoding.Strict()

// ErrMalformed: the string is not an API key.
var ErrMalformed = errors.New("apikey: malformed key")

// NewID draws a key id from r (crypto/rand at the edge).
func NewID(r io.Reader) (string, error) {
	b := make([]byte, IDLen)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("api key id: %w", err)
	}
	for i := range b {
		// 252 = 7*36: rejection keeps the characters uniform.
		for b[i] >= 252 {
			var one [1]byte
			if _, err := io.ReadFull(r, one[:]); err != nil {
				return "", fmt.Errorf("api key id: %w", err)
			}
			b[i] = one[0]
		}
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b), nil
}

// ValidID checks a key id's shape.
func ValidID(id string) error {
	ok := len(id) == IDLen
	for i := 0; ok && i < len(id); i++ {
		ok = strings.IndexByte(idAlphabet, id[i]) >= 0
	}
	if !ok {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "API key id must be %d characters of a-z 0-9", IDLen)
	}
	return nil
}

// Format is the key as shown to its creator, once.
func Format(id string, secret []byte) string {
	return Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
}

// Parse splits a presented key into its id and secret. It accepts exactly
// what Format produces (canonical base64url of SecretLen bytes), so one key
// has one spelling.
func Parse(key string) (id string, secret []byte, err error) {
	if len(key) > MaxKeyLen || !strings.HasPrefix(key, Prefix) {
		return "", nil, ErrMalformed
	}
	id, enc, ok := strings.Cut(key[len(Prefix):], "_")
	if !ok || ValidID(id) != nil {
		return "", nil, ErrMalformed
	}
	secret, err = b64.DecodeString(enc)
	if err != nil || len(secret) != SecretLen {
		return "", nil, ErrMalformed
	}
	return id, secret, nil
}

// HashSecret is what VerifyAPIKey takes.
func HashSecret(secret []byte) []byte {
	h := sha256.Sum256(secret)
	return h[:]
}
