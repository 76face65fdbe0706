//go:build sodium && cgo

package password

/*
#cgo LDFLAGS: -lsodium
#include <sodium.h>
*/
import "C"

import (
	"unsafe"

	"golang.org/x/crypto/argon2"
)

// Backend names the argon2id implementation compiled in: "libsodium" here,
// "go" (golang.org/x/crypto/argon2) without -tags sodium or without cgo.
//
// Why a second implementation: libsodium picks an AVX2/AVX-512 block
// function at run time where x/crypto has SSE4.1 assembly. With 4 KiB pages
// both spend their time on TLB misses (argon2 reads 1 KiB blocks at random
// across 64 MiB) and take about as long; on a host with transparent huge
// pages set to "always", libsodium's hash takes about half the time
// (bench/RESULTS.md). The hashes are identical (tested).
const Backend = "libsodium"

var sodiumReady = C.sodium_init() >= 0

// idKey uses libsodium where its API can express the parameters (one lane,
// a 16-byte salt: crypto_pwhash's only shape) and x/crypto otherwise, so
// every stored hash verifies whichever backend a node was built with.
func idKey(password, salt []byte, p Params) []byte {
	if !sodiumReady || p.Threads != 1 || len(salt) != C.crypto_pwhash_argon2id_SALTBYTES {
		return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	}
	out := make([]byte, p.KeyLen)
	// libsodium reads password and salt only during the call, and both
	// hold no Go pointers, so passing them directly is within cgo's rules.
	var pw *C.char
	if len(password) > 0 {
		pw = (*C.char)(unsafe.Pointer(&password[0]))
	}
	rc := C.crypto_pwhash_argon2id(
		(*C.uchar)(unsafe.Pointer(&out[0])), C.ulonglong(len(out)),
		pw, C.ulonglong(len(password)),
		(*C.uchar)(unsafe.Pointer(&salt[0])),
		C.ulonglong(p.Time), C.size_t(p.Memory)*1024,
		C.crypto_pwhash_ALG_ARGON2ID13)
	if rc != 0 {
		// Params were validated against bounds libsodium accepts, so this
		// is a failed 64 MiB-class allocation; x/crypto gives the same
		// answer if the memory is there a moment later.
		return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	}
	return out
}
