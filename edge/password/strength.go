package password

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nbutton23/zxcvbn-go"
)

// Length bounds of the strength policy, in bytes of UTF-8.
const (
	MinLength = 8
	MaxLength = 1024
)

// MinScore is the lowest zxcvbn score (0..4) Check accepts: 3 means "safely
// unguessable: moderate protection from offline slow-hash scenario"
// (about 10^8 guesses or more).
const MinScore = 3

// zxcvbnMaxInput bounds the bytes given to zxcvbn: its matching is
// super-linear (a 1024-byte input takes seconds), so longer passwords are
// judged by their first 100 bytes, the cut zxcvbn's authors recommend.
const zxcvbnMaxInput = 100

// minInputRunes is the shortest user input (name, e-mail local part, or a
// token of one) that a password may not contain, as in Windows' password
// complexity rule: shorter tokens are left to zxcvbn, which gets them all.
const minInputRunes = 3

// ErrWeakPassword is matched (errors.Is) by every *WeakPasswordError.
var ErrWeakPassword = errors.New("password: does not meet the password policy")

// WeakPasswordError says why Check refused a password. Reason is written for
// the user; Code is stable for programs and translations.
type WeakPasswordError struct {
	Code   string // too_short, too_long, invalid_utf8, contains_personal_data, too_guessable
	Reason string
}

func (e *WeakPasswordError) Error() string { return "password: " + e.Reason }

// Is makes errors.Is(err, ErrWeakPassword) hold.
func (e *WeakPasswordError) Is(target error) bool { return target == ErrWeakPassword }

// Check applies the password policy to a new password: 8 to 1024 bytes of
// valid UTF-8; it must not contain the user's names or e-mail address (nor
// its local part), given as userInputs, compared case-insensitively; and it
// must not be guessable: its zxcvbn score, with userInputs as extra
// dictionary words, must be at least MinScore. zxcvbn's dictionaries hold
// the commonest leaked passwords, English words, names and surnames, and it
// detects keyboard walks, repeats, sequences, dates and l33t substitutions.
func Check(password string, userInputs ...string) error {
	switch {
	case len(password) < MinLength:
		return &WeakPasswordError{Code: "too_short", Reason: fmt.Sprintf("must be at least %d characters long", MinLength)}
	case len(password) > MaxLength:
		return &WeakPasswordError{Code: "too_long", Reason: fmt.Sprintf("must be at most %d bytes long", MaxLength)}
	case !utf8.ValidString(password):
		return &WeakPasswordError{Code: "invalid_utf8", Reason: "contains bytes that are not valid UTF-8 text"}
	}

	tokens := personalTokens(userInputs)
	lower := strings.ToLower(password)
	for _, tok := range tokens {
		if strings.Contains(lower, tok) {
			return &WeakPasswordError{Code: "contains_personal_data", Reason: "must not contain your name or e-mail address"}
		}
	}

	if s, ok := score(password, tokens); ok && s < MinScore {
		return &WeakPasswordError{Code: "too_guessable", Reason: "is too easy to guess: it is common, or built from words, names, dates or keyboard patterns; a few unrelated words or a longer password work better"}
	}
	return nil
}

// personalTokens lowercases the user inputs and splits them into the words a
// password must not contain: each input whole, an e-mail's local part, and
// the parts of names and local parts split at spaces and punctuation, keeping
// those of at least minInputRunes runes.
func personalTokens(inputs []string) []string {
	var out []string
	add := func(s string) {
		if utf8.RuneCountInString(s) >= minInputRunes {
			out = append(out, s)
		}
	}
	for _, in := range inputs {
		in = strings.ToLower(strings.TrimSpace(in))
		if in == "" {
			continue
		}
		add(in)
		if at := strings.LastIndexByte(in, '@'); at >= 0 {
			in = in[:at]
			add(in)
		}
		parts := strings.FieldsFunc(in, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
		})
		if len(parts) > 1 {
			for _, p := range parts {
				add(p)
			}
		}
	}
	return out
}

// score returns the zxcvbn score of the password's first zxcvbnMaxInput
// bytes. ok is false if zxcvbn failed (it is third-party code fed untrusted
// input); the length and personal-data rules still apply then.
func score(password string, inputs []string) (s int, ok bool) {
	if len(password) > zxcvbnMaxInput {
		cut := zxcvbnMaxInput
		for cut > 0 && !utf8.RuneStart(password[cut]) {
			cut--
		}
		password = password[:cut]
	}
	defer func() {
		if recover() != nil {
			s, ok = 0, false
		}
	}()
	return zxcvbn.PasswordStrength(password, inputs).Score, true
}
