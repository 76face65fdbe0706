package password

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// ErrMalformedHash is matched (errors.Is) by every error ParsePHC returns.
var ErrMalformedHash = errors.New("password: malformed hash")

// ErrParamsOutOfRange is matched, in addition to ErrMalformedHash, when a
// stored hash is well-formed but its parameters exceed the bounds in
// params.go.
var ErrParamsOutOfRange = errors.New("password: hash parameters out of range")

// HashError says why a stored hash string was refused.
type HashError struct {
	Reason     string
	OutOfRange bool
}

func (e *HashError) Error() string { return "password: malformed hash: " + e.Reason }

// Is makes errors.Is(err, ErrMalformedHash) hold for every HashError, and
// errors.Is(err, ErrParamsOutOfRange) for those refused for their bounds.
func (e *HashError) Is(target error) bool {
	return target == ErrMalformedHash || (e.OutOfRange && target == ErrParamsOutOfRange)
}

func malformed(format string, args ...any) error {
	return &HashError{Reason: fmt.Sprintf(format, args...)}
}

// PHC is a parsed argon2id hash string. Params.SaltLen and Params.KeyLen
// equal len(Salt) and len(Key).
type PHC struct {
	Params Params
	Salt   []byte
	Key    []byte
}

var b64 = base64.RawStdEncoding.Strict()

const phcPrefix = "$argon2id$"

// String encodes h in the reference format
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>.
func (h PHC) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.Params.Memory, h.Params.Time, h.Params.Threads,
		b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// ParsePHC parses an argon2id PHC string strictly: only argon2id, only
// version 19, parameters exactly m,t,p in that order as canonical decimals,
// salt and key in unpadded canonical standard base64, no optional keyid or
// data fields, and every parameter within bounds. Any accepted string
// re-encodes to itself. Errors match ErrMalformedHash.
func ParsePHC(s string) (PHC, error) {
	const maxLen = 512 // far above the longest valid string (~230 bytes)
	if len(s) > maxLen {
		return PHC{}, malformed("%d bytes long, more than %d", len(s), maxLen)
	}
	if !strings.HasPrefix(s, "$") {
		return PHC{}, malformed("does not start with '$'")
	}
	fields := strings.Split(s[1:], "$")
	if fields[0] != "argon2id" {
		return PHC{}, malformed("algorithm %q is not argon2id", clip(fields[0]))
	}
	if len(fields) != 5 {
		return PHC{}, malformed("has %d '$'-separated fields, want 5 (algorithm, version, parameters, salt, key)", len(fields))
	}
	version, params, salt, key := fields[1], fields[2], fields[3], fields[4]

	v, ok := strings.CutPrefix(version, "v=")
	if !ok {
		return PHC{}, malformed("version field %q is not v=<number>", clip(version))
	}
	if n, err := decimal(v); err != nil || n != argon2.Version {
		return PHC{}, malformed("version %q is not %d", clip(v), argon2.Version)
	}

	var p PHC
	kv := strings.Split(params, ",")
	if len(kv) != 3 {
		return PHC{}, malformed("parameter field %q is not m=<KiB>,t=<passes>,p=<lanes>", clip(params))
	}
	var vals [3]uint32
	for i, name := range [3]string{"m", "t", "p"} {
		raw, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok {
			return PHC{}, malformed("parameter %d is %q, want %s=<number>", i+1, clip(kv[i]), name)
		}
		n, err := decimal(raw)
		if err != nil {
			return PHC{}, malformed("parameter %s: %v", name, err)
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return PHC{}, &HashError{Reason: fmt.Sprintf("parameters out of range: parallelism p=%d outside 1..%d", vals[2], MaxThreads), OutOfRange: true}
	}
	p.Params = Params{Memory: vals[0], Time: vals[1], Threads: uint8(vals[2])}

	var err error
	if p.Salt, err = decodeB64(salt); err != nil {
		return PHC{}, malformed("salt: %v", err)
	}
	if p.Key, err = decodeB64(key); err != nil {
		return PHC{}, malformed("key: %v", err)
	}
	p.Params.SaltLen, p.Params.KeyLen = uint32(len(p.Salt)), uint32(len(p.Key))
	if err := p.Params.Validate(); err != nil {
		return PHC{}, &HashError{Reason: "parameters out of range: " + err.Error(), OutOfRange: true}
	}
	return p, nil
}

// decimal parses a canonical unsigned 32-bit decimal: digits only, no sign,
// no leading zero.
func decimal(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", clip(s))
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", clip(s))
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q does not fit in 32 bits", clip(s))
	}
	return uint32(n), nil
}

// decodeB64 decodes unpadded standard base64, refusing what Go's decoder
// would otherwise skip (CR, LF) and non-zero trailing bits, so decoding is
// one-to-one.
func decodeB64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, fmt.Errorf("byte %q at offset %d is not unpadded standard base64", c, i)
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not canonical base64: %v", err)
	}
	return b, nil
}

// clip keeps error messages short when the input is long or hostile.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
