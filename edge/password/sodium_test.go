//go:build sodium && cgo

package password

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/argon2"
)

// The libsodium backend must produce x/crypto's hashes bit for bit, or a
// node rebuilt with the other backend would lock every user out.
func TestSodiumMatchesXCrypto(t *testing.T) {
	if Backend != "libsodium" || !sodiumReady {
		t.Fatalf("Backend = %q, sodium_init ok = %v", Backend, sodiumReady)
	}
	salt16 := []byte("0123456789abcdef")
	cases := []struct {
		name     string
		password string
		salt     []byte
		p        Params
	}{
		{"defaults", "tangerine-oboe-47", salt16, DefaultParams()},
		{"smallest", "x", salt16, Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 16}},
		{"long key", "correct horse", salt16, Params{Memory: 1024, Time: 4, Threads: 1, SaltLen: 16, KeyLen: 64}},
		{"empty password", "", salt16, Params{Memory: 64, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}},
		{"non-ascii", "pässwörd-ß-密码", salt16, Params{Memory: 256, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}},
		// Shapes crypto_pwhash cannot express go through x/crypto.
		{"8-byte salt", "x", []byte("saltsalt"), Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 8, KeyLen: 32}},
		{"two lanes", "x", salt16, Params{Memory: 64, Time: 1, Threads: 2, SaltLen: 16, KeyLen: 32}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := argon2.IDKey([]byte(c.password), c.salt, c.p.Time, c.p.Memory, c.p.Threads, c.p.KeyLen)
			got := idKey([]byte(c.password), c.salt, c.p)
			if !bytes.Equal(got, want) {
				t.Fatalf("libsodium %x, x/crypto %x", got, want)
			}
		})
	}
	// A stored PHC made by x/crypto verifies through the Hasher.
	h, err := New(Config{Params: Params{Memory: 64, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	phc := PHC{Params: h.Params(), Salt: salt16,
		Key: argon2.IDKey([]byte("s3cret"), salt16, 2, 64, 1, 32)}.String()
	if ok, _, err := h.Verify(t.Context(), phc, "s3cret"); err != nil || !ok {
		t.Fatalf("verify x/crypto hash: ok=%v err=%v", ok, err)
	}
	if ok, _, err := h.Verify(t.Context(), phc, "s3cres"); err != nil || ok {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
}
