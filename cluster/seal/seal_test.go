package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
)

func newKey(t testing.TB) *Key {
	t.Helper()
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k, other := newKey(t), newKey(t)
	plain := []byte("-----BEGIN PRIVATE KEY----- not really")
	s, err := k.Seal("keyring/keys", plain)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(s) || bytes.Contains(s, plain[:16]) {
		t.Fatalf("sealed value %q", s)
	}
	if s2, _ := k.Seal("keyring/keys", plain); bytes.Equal(s, s2) {
		t.Fatal("two seals of one value are equal: the nonce is not random")
	}
	got, err := Open(k, "keyring/keys", s)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open: %q %v", got, err)
	}
	for name, tc := range map[string]struct {
		k    *Key
		key  string
		b    []byte
		want error
	}{
		"no key":               {nil, "keyring/keys", s, ErrNoKey},
		"another key":          {other, "keyring/keys", s, ErrWrongKey},
		"moved to another key": {k, "oidc/secret", s, ErrWrongKey},
		"truncated":            {k, "keyring/keys", s[:len(prefix)+5], ErrWrongKey},
		"bit flipped":          {k, "keyring/keys", flip(s, len(s)-1), ErrWrongKey},
	} {
		if _, err := Open(tc.k, tc.key, tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Plaintext (written before the cluster was sealed) passes through.
	if got, err := Open(k, "x", []byte("plain")); err != nil || string(got) != "plain" {
		t.Errorf("plaintext: %q %v", got, err)
	}
	if k.ID() == other.ID() || len(k.ID()) != 16 {
		t.Errorf("IDs %q %q", k.ID(), other.ID())
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestParseKeyFile(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, KeySize)
	k, err := ParseKeyFile([]byte("  " + base64.StdEncoding.EncodeToString(raw) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKey(raw)
	if k.ID() != k2.ID() {
		t.Error("same bytes, different IDs")
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(raw[:16]), base64.StdEncoding.EncodeToString(append(raw, 1))} {
		if _, err := ParseKeyFile([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzOpen: no input makes Open panic, and whatever opens was sealed by k.
func FuzzOpen(f *testing.F) {
	k := newKey(f)
	s, _ := k.Seal("n", []byte("secret"))
	f.Add(s)
	f.Add([]byte("wardseal1"))
	f.Add([]byte("plain"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Open(k, "n", b)
		if err == nil && IsSealed(b) && !bytes.Equal(got, []byte("secret")) {
			t.Fatalf("forged value opened: %q", got)
		}
	})
}
