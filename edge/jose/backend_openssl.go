//go:build openssl && cgo

package jose

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/ec.h>
#include <stdlib.h>
#include <string.h>

// The helpers keep pointer-to-pointer arguments (d2i's **pp, the size_t
// out-parameter) on the C side, where cgo's pointer rules do not reach.

// Errors are taken off OpenSSL's thread-local queue inside the same C call:
// back in Go the goroutine may already run on another thread.
static unsigned long ward_last_err(void) {
	unsigned long e = ERR_peek_last_error();
	ERR_clear_error();
	return e == 0 ? 1 : e;
}

// ward_load_key reads a type-specific DER private key: PKCS#1 for
// EVP_PKEY_RSA, SEC 1 for EVP_PKEY_EC.
static EVP_PKEY *ward_load_key(int type, const unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PrivateKey(type, NULL, &p, len);
	*err = k == NULL ? ward_last_err() : 0;
	return k;
}

// ward_ec_ctx makes a signing context for pkey. OpenSSL 3 looks the
// algorithm up in its provider tables on every EVP_PKEY_CTX_new and
// sign_init, which costs a good part of a P-256 signature; an initialised
// context signs any number of digests, so the Go side keeps a pool.
static EVP_PKEY_CTX *ward_ec_ctx(EVP_PKEY *pkey, unsigned long *err) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0) {
		*err = ward_last_err();
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	*err = 0;
	return ctx;
}

// ward_ec_sign signs a digest with ECDSA. With jose set it writes the
// fixed-width r||s of JWS (RFC 7518 3.4) to out (64 bytes) and sets *outlen
// to 64; otherwise the ASN.1 DER of crypto.Signer (at most 72 bytes).
static unsigned long ward_ec_sign(EVP_PKEY_CTX *ctx, const unsigned char *digest, size_t dlen,
                                  int jose, unsigned char *out, size_t *outlen) {
	unsigned char der[80];
	size_t derlen = sizeof der;
	if (EVP_PKEY_sign(ctx, der, &derlen, digest, dlen) <= 0) {
		return ward_last_err();
	}
	if (!jose) {
		if (derlen > *outlen) {
			return 1;
		}
		memcpy(out, der, derlen);
		*outlen = derlen;
		return 0;
	}
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (sig == NULL) {
		return ward_last_err();
	}
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(sig, &r, &s);
	int ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	if (!ok) {
		return ward_last_err();
	}
	*outlen = 64;
	return 0;
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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"unsafe"
)

// Backend names the RS256 and ES256 signing implementation compiled in.
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
	pkey := C.ward_load_key(C.EVP_PKEY_RSA, (*C.uchar)(cder), C.long(len(der)), &code)
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

// opensslEC is a crypto.Signer for P-256 over an EVP_PKEY made once per
// key, with a pool of initialised signing contexts (see ward_ec_ctx).
type opensslEC struct {
	pub *ecdsa.PublicKey
	// mu makes Close wait for signatures in flight, as for opensslRSA.
	mu      sync.RWMutex
	pkey    *C.EVP_PKEY
	ctxs    chan *C.EVP_PKEY_CTX
	cleanup runtime.Cleanup
}

// ecNative is what the cleanup of a dropped key frees; it must not point
// back at the opensslEC.
type ecNative struct {
	pkey *C.EVP_PKEY
	ctxs chan *C.EVP_PKEY_CTX
}

func (n ecNative) free() {
	for {
		select {
		case ctx := <-n.ctxs:
			C.EVP_PKEY_CTX_free(ctx)
		default:
			C.EVP_PKEY_free(n.pkey)
			return
		}
	}
}

func newECSigner(k *ecdsa.PrivateKey) (crypto.Signer, func() error, error) {
	if k.Curve != elliptic.P256() {
		return k, func() error { return nil }, nil
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("openssl: encode EC key: %w", err)
	}
	cder := C.CBytes(der)
	clear(der)
	var code C.ulong
	pkey := C.ward_load_key(C.EVP_PKEY_EC, (*C.uchar)(cder), C.long(len(der)), &code)
	C.OPENSSL_cleanse(cder, C.size_t(len(der)))
	C.free(cder)
	if pkey == nil {
		return nil, nil, fmt.Errorf("openssl: load EC key: %w", opensslError(code))
	}
	// More contexts than threads that can run C at once would only sit idle.
	s := &opensslEC{pub: &k.PublicKey, pkey: pkey, ctxs: make(chan *C.EVP_PKEY_CTX, 2*runtime.GOMAXPROCS(0))}
	s.cleanup = runtime.AddCleanup(s, ecNative.free, ecNative{pkey, s.ctxs})
	return s, s.close, nil
}

func (s *opensslEC) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer: an ASN.1 ECDSA signature of a SHA-256
// digest, with OpenSSL's own randomness (rand is unused).
func (s *opensslEC) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("openssl: only ECDSA with SHA-256 is supported")
	}
	return s.sign(digest, false)
}

// signJOSE returns the r||s form JWS wants, without an ASN.1 round trip.
func (s *opensslEC) signJOSE(digest []byte) ([]byte, error) { return s.sign(digest, true) }

func (s *opensslEC) sign(digest []byte, jose bool) ([]byte, error) {
	if len(digest) != 32 {
		return nil, fmt.Errorf("openssl: digest of %d bytes, want 32", len(digest))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.pkey == nil {
		return nil, errors.New("openssl: signing key is closed")
	}
	var ctx *C.EVP_PKEY_CTX
	select {
	case ctx = <-s.ctxs:
	default:
		var code C.ulong
		if ctx = C.ward_ec_ctx(s.pkey, &code); ctx == nil {
			return nil, fmt.Errorf("openssl: EC signing context: %w", opensslError(code))
		}
	}
	out := make([]byte, 80)
	outlen := C.size_t(len(out))
	jflag := C.int(0)
	if jose {
		jflag = 1
	}
	code := C.ward_ec_sign(ctx, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)), jflag,
		(*C.uchar)(unsafe.Pointer(&out[0])), &outlen)
	select {
	case s.ctxs <- ctx:
	default:
		C.EVP_PKEY_CTX_free(ctx)
	}
	if code != 0 {
		return nil, fmt.Errorf("openssl: ECDSA sign: %w", opensslError(code))
	}
	return out[:outlen], nil
}

func (s *opensslEC) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pkey != nil {
		s.cleanup.Stop()
		ecNative{s.pkey, s.ctxs}.free()
		s.pkey = nil
	}
	return nil
}
