package user

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// Input limits. Every field is bounded so that one request cannot bloat an
// event log that is replayed on every activation.
const (
	// MaxFieldLen bounds every free-text field, in characters.
	MaxFieldLen = 256
	// MaxPHCLen bounds a PHC string in bytes; argon2id strings are ~100.
	MaxPHCLen   = 512
	maxEmailLen = 254 // RFC 5321 path limit
	maxLocalLen = 64
)

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

// parseID splits the actor id "<tenant>/<user-uuid>".
// ID is the actor id of user uuid (its token subject) in tenant.
func ID(tenant, uuid string) string { return tenant + "/" + uuid }

func parseID(id string) (tenant, uuid string, err error) {
	tenant, uuid, ok := strings.Cut(id, "/")
	if !ok || emailindex.ValidTenant(tenant) != nil || !emailindex.ValidUUID(uuid) {
		return "", "", invalid("user id must be <tenant>/<lowercase uuid>, got %q", clip(id))
	}
	return tenant, uuid, nil
}

// text checks a free-text field and returns it trimmed. Control characters
// are refused: they have no place in a name and break logs and mail headers.
func text(field, v string, required bool) (string, error) {
	if !utf8.ValidString(v) {
		return "", invalid("%s is not valid UTF-8", field)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		if required {
			return "", invalid("%s is required", field)
		}
		return "", nil
	}
	if n := utf8.RuneCountInString(v); n > MaxFieldLen {
		return "", invalid("%s is %d characters, more than %d", field, n, MaxFieldLen)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return "", invalid("%s contains control characters", field)
	}
	return v, nil
}

// phone checks E.164: "+", then 7 to 15 digits, the first not 0. The edge
// normalises what people type; the actor stores only the canonical form so
// that SMS delivery and later comparisons agree.
func phone(v string) (string, error) {
	v, err := text("phone", v, true)
	if err != nil {
		return "", err
	}
	d := strings.TrimPrefix(v, "+")
	ok := len(d) == len(v)-1 && len(d) >= 7 && len(d) <= 15 && d[0] != '0'
	for i := 0; ok && i < len(d); i++ {
		ok = d[i] >= '0' && d[i] <= '9'
	}
	if !ok {
		return "", invalid("phone must be in E.164 form, e.g. +41791234567")
	}
	return v, nil
}

// email checks the address's syntax (dot-atom local part, a dotted host
// name with an alphabetic top-level label) and lowercases it: the address is
// the uniqueness key, and mailbox case is not significant in practice.
// Quoted local parts, address literals and non-ASCII addresses are refused.
func email(v string) (string, error) {
	v, err := text("email", v, true)
	if err != nil {
		return "", err
	}
	v = strings.ToLower(v)
	bad := invalid("email is not a valid address")
	if len(v) > maxEmailLen {
		return "", bad
	}
	local, domain, ok := strings.Cut(v, "@")
	if !ok || local == "" || len(local) > maxLocalLen || !dotAtom(local) {
		return "", bad
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "", bad
	}
	for _, l := range labels {
		if !hostLabel(l) {
			return "", bad
		}
	}
	tld := labels[len(labels)-1]
	if len(tld) < 2 || strings.Trim(tld, "abcdefghijklmnopqrstuvwxyz") != "" {
		return "", bad
	}
	return v, nil
}

func dotAtom(s string) bool {
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(".!#$%&'*+/=?^_`{|}~-", c) >= 0) {
			return false
		}
	}
	return true
}

func hostLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// phc checks that a password hash looks like a PHC string: "$" then
// printable ASCII without spaces, at most MaxPHCLen bytes. Parsing it is the
// edge's job (edge/password.ParsePHC); the actor only refuses what cannot be
// one, so a plaintext password sent by mistake is not stored.
func phc(v string) error {
	switch {
	case v == "":
		return invalid("password hash is required")
	case len(v) > MaxPHCLen:
		return invalid("password hash is %d bytes, more than %d", len(v), MaxPHCLen)
	case v[0] != '$':
		return invalid("password hash must be a PHC string ($alg$...)")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return invalid("password hash must be a PHC string ($alg$...)")
		}
	}
	return nil
}

// clip shortens attacker-supplied text before it goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
