// Package jwks serves the public half of the cluster's signing keys at
// /.well-known/jwks.json: the keys keyring.Published lists at the time of
// the request, as RFC 7517 JWKs. Which keys those are is the keyring's
// decision; this package only translates.
package jwks

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// Path is where verifiers fetch the key set (the OIDC jwks_uri).
const Path = "/.well-known/jwks.json"

// DefaultMaxAge is how long verifiers may cache the document.
//
// Caching cannot hide a key too early or drop one too soon as long as
// max-age is well below the keyring's lead time (at least the token
// lifetime, 8 h by default): a successor is published that long before it
// signs, and a retired key stays published until its last token expired,
// so every cached copy already holds the keys current tokens need. What
// max-age does bound is how long a forcibly withdrawn (compromised) key
// stays trusted by caching verifiers, and how soon they see a new key
// after an operator's rotation; five minutes keeps that short while a busy
// relying party still fetches at most a few hundred times a day.
const DefaultMaxAge = 5 * time.Minute

// Source is the key state: the cluster node's replica of it.
type Source interface {
	KeySet() (*protocol.KeySet, error)
}

// Options tune Handler.
type Options struct {
	// MaxAge is the Cache-Control max-age; zero means DefaultMaxAge. Keep
	// it below the keyring's lead time (see DefaultMaxAge).
	MaxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler serves Path.
func Handler(src Source, opts Options) http.Handler {
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cacheControl := "public, max-age=" + strconv.Itoa(int(opts.MaxAge/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Write(w, http.StatusMethodNotAllowed, "method not allowed", r.Method+" "+Path+": only GET and HEAD")
			return
		}
		set, err := src.KeySet()
		if err != nil {
			// Not an empty set: a verifier would cache that and refuse
			// every token until max-age ran out.
			w.Header().Set("Retry-After", "1")
			problem.Write(w, http.StatusServiceUnavailable, "signing keys unavailable", err.Error())
			return
		}
		doc, err := jose.JWKSFromProto(keyring.Published(set, opts.Now()))
		if err != nil {
			problem.Write(w, http.StatusInternalServerError, "signing keys unusable", err.Error())
			return
		}
		b, err := json.Marshal(doc)
		if err != nil {
			problem.Write(w, http.StatusInternalServerError, "signing keys unusable", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", cacheControl)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	})
}
