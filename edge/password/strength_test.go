package password

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		password string
		inputs   []string
		code     string // "" = accepted
	}{
		{"short", nil, "too_short"},
		{"1234567", nil, "too_short"},
		{strings.Repeat("x", 1025), nil, "too_long"},
		{"abcdefg\xff", nil, "invalid_utf8"},
		{"password", nil, "too_guessable"},
		{"P@ssw0rd123", nil, "too_guessable"},
		{"iloveyou2", nil, "too_guessable"},
		{"qwertyuiop", nil, "too_guessable"},
		{"1qaz2wsx3edc", nil, "too_guessable"},
		{"summer2024", nil, "too_guessable"},
		{"aaaaaaaaaaaa", nil, "too_guessable"},
		{"abcdefghijkl", nil, "too_guessable"},
		{strings.Repeat("a", 1024), nil, "too_guessable"},
		{"mary.jones.1984!", []string{"Mary", "Jones", "mary.jones@example.com"}, "contains_personal_data"},
		{"Zebra-JONES-kettle", []string{"Mary", "Jones"}, "contains_personal_data"},
		{"xx-mjones77-quartz", []string{"mjones77@example.com"}, "contains_personal_data"},
		{"Lab-Van-Der-Berg", []string{"Anna", "van der Berg"}, "contains_personal_data"},
		{"correct horse battery staple", nil, ""},
		{"Tr0ub4dor&3", nil, ""},
		{"kj3!fQz9pL", nil, ""},
		{"tangerine-oboe-47-drift", []string{"Al", "Li", "al@example.com"}, ""}, // short names are left to zxcvbn
		{"Zebra-JONES-kettle", []string{"Mary", "Smith"}, ""},
		{"Grüße-aus-Köln-8472", nil, ""},
		{strings.Repeat("xK9#mq2!", 128), nil, ""}, // 1024 bytes, judged by its first 100
	}
	for _, c := range cases {
		start := time.Now()
		err := Check(c.password, c.inputs...)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Check(%.20q...) took %v", c.password, d)
		}
		if c.code == "" {
			if err != nil {
				t.Errorf("Check(%.40q) = %v, want accepted", c.password, err)
			}
			continue
		}
		var weak *WeakPasswordError
		if !errors.As(err, &weak) || !errors.Is(err, ErrWeakPassword) {
			t.Errorf("Check(%.40q) = %v, want %s", c.password, err, c.code)
			continue
		}
		if weak.Code != c.code {
			t.Errorf("Check(%.40q) code %s (%s), want %s", c.password, weak.Code, weak.Reason, c.code)
		}
		if weak.Reason == "" || strings.Contains(weak.Reason, "zxcvbn") {
			t.Errorf("reason %q is not for a user", weak.Reason)
		}
	}
}
