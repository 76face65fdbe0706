//go:build openssl && cgo

package jose

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <stdlib.h>

// The helpers keep pointer-to-pointer arguments (d2i's **pp, the size_t
// out-parameter) on the C side, where cgo's pointer rules do not reach.

// Errors are taken off OpenSSL's thread-local queue inside the same C call:
// back in Go the goroutine may already run on another thread.
static unsigned long ward_last_err(void) {
	unsigned long e = ERR_peek_last_error();
	ERR_clear_error();
	return e == 0 ? 1 : e;
}

static EVP_PKEY *ward_load_rsa(const unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	*err = k == NULL ? ward_last_err() : 0;
	return k;
}

// ward_rsa_sign signs a SHA-256 digest with PKCS#1 v1.5 padding and returns
// 0 or an OpenSSL error code. A fresh EVP_PKEY_CTX per call is what makes
// one EVP_PKEY usable from many threads at once: the key itself is only read.
static unsigned long ward_rsa_sign(EVP_PKEY *pkey, const unsigned char *digest, size_t dlen,
                                   unsigned char *sig, size_t *siglen) {
	unsigned long err = 0;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL
	    || EVP_PKEY_sign_init(ctx) <= 0
	    || EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0
	    || EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0
	    || EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) <= 0) {
		err = ward_last_err();
	}
	EVP_PKEY_CTX_free(ctx);
	return err;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"unsafe"
)

// Backend names the RS256 signing implementation compiled in.
const Backend = "openssl"

// opensslRSA is a crypto.Signer over an EVP_PKEY made once per key.
type opensslRSA struct {
	pub  *rsa.PublicKey
	size int
	// mu makes Close wait for signatures in flight; readers do not
	// exclude each other, so signing stays parallel.
	mu      sync.RWMutex
	pkey    *C.EVP_PKEY
	cleanup runtime.Cleanup
}

func newRSASigner(k *rsa.PrivateKey) (crypto.Signer, func() error, error) {
	der := x509.MarshalPKCS1PrivateKey(k)
	cder := C.CBytes(der)
	clear(der)
	var code C.ulong
	pkey := C.ward_load_rsa((*C.uchar)(cder), C.long(len(der)), &code)
	// The C copy holds the private key: wipe it before freeing.
	C.OPENSSL_cleanse(cder, C.size_t(len(der)))
	C.free(cder)
	if pkey == nil {
		return nil, nil, fmt.Errorf("openssl: load RSA key: %w", opensslError(code))
	}
	s := &opensslRSA{pub: &k.PublicKey, size: k.Size(), pkey: pkey}
	// The cleanup catches keys dropped without Close; it gets the C pointer,
	// not s, so s can still become unreachable.
	s.cleanup = runtime.AddCleanup(s, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	return s, s.close, nil
}

func (s *opensslRSA) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer for PKCS#1 v1.5 over SHA-256 only, which is
// all RS256 needs; the randomness argument is unused as that padding is
// deterministic.
func (s *opensslRSA) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("openssl: only PKCS#1 v1.5 with SHA-256 is supported")
	}
	if len(digest) != 32 {
		return nil, fmt.Errorf("openssl: digest of %d bytes, want 32", len(digest))
	}
	sig := make([]byte, s.size)
	siglen := C.size_t(len(sig))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.pkey == nil {
		return nil, errors.New("openssl: signing key is closed")
	}
	code := C.ward_rsa_sign(s.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &siglen)
	if code != 0 {
		return nil, fmt.Errorf("openssl: RSA sign: %w", opensslError(code))
	}
	return sig[:siglen], nil
}

func (s *opensslRSA) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pkey != nil {
		s.cleanup.Stop()
		C.EVP_PKEY_free(s.pkey)
		s.pkey = nil
	}
	return nil
}

func opensslError(code C.ulong) error {
	buf := make([]byte, 256)
	C.ERR_error_string_n(code, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return errors.New(C.GoString((*C.char)(unsafe.Pointer(&buf[0]))))
}
