package tenant

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

func precondition(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, format, args...)
}

// validName checks a display name and returns it trimmed. Control
// characters are refused: names end up in page titles, logs and tokens.
func validName(field, v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", invalid("%s is not valid UTF-8", field)
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", invalid("%s is required", field)
	case len(v) > MaxNameLen:
		return "", invalid("%s is %d bytes, more than %d", field, len(v), MaxNameLen)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "", invalid("%s contains control characters", field)
	}
	return v, nil
}

// validSlug checks a DNS-label-shaped slug, so it can name a sub-domain.
func validSlug(v string) (string, error) {
	ok := v != "" && len(v) <= MaxSlugLen && v[0] != '-' && v[len(v)-1] != '-'
	for i := 0; ok && i < len(v); i++ {
		c := v[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return "", invalid("slug must be 1 to %d characters of a-z 0-9 and inner -", MaxSlugLen)
	}
	return v, nil
}

// validNodeID checks a node id: 1 to MaxNodeIDLen of [A-Za-z0-9._-], the
// tenant id's alphabet, since the root's id is the tenant id.
func validNodeID(field, v string) error {
	ok := v != "" && len(v) <= MaxNodeIDLen
	for i := 0; ok && i < len(v); i++ {
		c := v[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return invalid("%s must be 1 to %d characters of A-Z a-z 0-9 . _ -", field, MaxNodeIDLen)
	}
	return nil
}

// validUser checks a user subject: the lowercase uuid the user actor is
// named by (and the usertenants actor too).
func validUser(v string) error {
	if !emailindex.ValidUUID(v) {
		return invalid("user must be a lowercase uuid")
	}
	return nil
}

func typeName(t protocol.NodeType) string {
	switch t {
	case protocol.NodeType_NODE_TYPE_TENANT:
		return "tenant"
	case protocol.NodeType_NODE_TYPE_FACILITY:
		return "facility"
	case protocol.NodeType_NODE_TYPE_DEPARTMENT:
		return "department"
	case protocol.NodeType_NODE_TYPE_WARD:
		return "ward"
	default:
		return "node of no type"
	}
}

func article(t protocol.NodeType) string {
	if t == protocol.NodeType_NODE_TYPE_TENANT {
		return "the tenant root"
	}
	return "a " + typeName(t)
}

// parentRule says what a node of type t must hang off.
func parentRule(t protocol.NodeType) string {
	switch t {
	case protocol.NodeType_NODE_TYPE_FACILITY:
		return "the tenant root"
	case protocol.NodeType_NODE_TYPE_DEPARTMENT:
		return "a facility"
	default:
		return "a department"
	}
}
