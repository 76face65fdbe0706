package session

import (
	"encoding/base64"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// MaxIDLen bounds a session id inside a refresh token.
const MaxIDLen = 128

// secretEncoding is strict so that one secret has exactly one spelling: a
// token string then names one (session, secret) pair and nothing else.
var secretEncoding = base64.RawURLEncoding.Strict()

// FormatRefreshToken is the refresh token a client holds:
// "<session id>.<secret, base64url without padding>". The id comes first so
// the edge can route the token to its session without a lookup.
func FormatRefreshToken(sessionID string, secret []byte) string {
	return sessionID + "." + secretEncoding.EncodeToString(secret)
}

// ParseRefreshToken splits a refresh token from a client. It is the one
// decoder of untrusted token bytes, so it checks everything it can without
// state: the id's alphabet and length and the secret's exact size.
func ParseRefreshToken(token string) (sessionID string, secret []byte, err error) {
	// The id may itself hold dots; the secret's alphabet has none.
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return "", nil, badToken("refresh token must be <session id>.<secret>")
	}
	sessionID, enc := token[:i], token[i+1:]
	if err := ValidTokenID(sessionID); err != nil {
		return "", nil, err
	}
	if len(enc) != secretEncoding.EncodedLen(SecretLen) {
		return "", nil, badToken("refresh token secret must be %d bytes of base64url", SecretLen)
	}
	secret, err = secretEncoding.DecodeString(enc)
	if err != nil || len(secret) != SecretLen {
		return "", nil, badToken("refresh token secret must be %d bytes of base64url", SecretLen)
	}
	return sessionID, secret, nil
}

// ValidTokenID checks that a session id can travel in a refresh token: 1 to
// MaxIDLen characters of A-Z a-z 0-9 . _ -.
func ValidTokenID(id string) error {
	ok := id != "" && len(id) <= MaxIDLen
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return badToken("refresh token session id must be 1 to %d characters of A-Z a-z 0-9 . _ -", MaxIDLen)
	}
	return nil
}

func badToken(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}
