//go:build !sodium || !cgo

package password

import "golang.org/x/crypto/argon2"

// Backend names the argon2id implementation compiled in: "go"
// (golang.org/x/crypto/argon2) here, "libsodium" when built with
// -tags sodium and cgo.
const Backend = "go"

func idKey(password, salt []byte, p Params) []byte {
	return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
}
