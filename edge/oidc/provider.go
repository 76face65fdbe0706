// Package oidc is Ward's OpenID Connect provider edge: zitadel/oidc's op
// serves the protocol (discovery, authorize, token, userinfo,
// introspection, revocation, end_session, JWKS), its Storage is Ward's
// actors and key state (storage.go), and the login page (login.go) is ours,
// as is the client_credentials grant (client_credentials.go), the hot path
// of service accounts and gateways.
//
// Paths (all under the issuer):
//
//	/.well-known/openid-configuration   discovery
//	/authorize, /authorize/callback     authorization code + PKCE (S256)
//	/oauth/token                        authorization_code, refresh_token,
//	                                    client_credentials, JWT bearer
//	/userinfo, /oauth/introspect, /revoke, /end_session, /keys
//	/login                              the password login form
//
// Access tokens are RS256 JWTs with Ward's claims (tid tids amr acr
// context_node_id sid); refresh tokens are the session actor's
// "<session>.<secret>" and rotate on every use.
package oidc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// MetaKV reads the meta group's key state (client registrations).
type MetaKV interface {
	MetaValue(key string) ([]byte, bool)
}

// KeySource is the signing key state.
type KeySource interface {
	KeySet() (*protocol.KeySet, error)
}

// Config configures the provider.
type Config struct {
	// Issuer is the external URL, e.g. https://id.example.com; http only
	// with Insecure (development).
	Issuer   string
	Insecure bool
	Actors   Requester
	Meta     MetaKV
	Keys     KeySource
	// Passwords verifies login passwords (admission-controlled argon2id).
	Passwords *password.Hasher
	// Secret keys the provider's own MACs and op's code encryption; the
	// same 32 bytes on every node (from the meta key state).
	Secret [32]byte
	// Tenant is the tenant logins and sessions belong to until tenant
	// selection comes with multi-tenant login.
	Tenant string

	AuthRequestTTL     time.Duration // default 10m
	AccessTTL          time.Duration // service-account tokens; default 15m
	RefreshTTL         time.Duration // default 8h
	RefreshGrace       time.Duration // default 10s; negative disables
	MaxSessionsPerUser int           // default 10

	// SigningAlg signs ID and access tokens: RS256 (default, what every
	// relying party supports) or ES256.
	SigningAlg protocol.KeyAlg

	Logger *slog.Logger
	Now    func() time.Time

	loginPath string
	// opClientCredentials leaves the client_credentials grant to op, for
	// the test that holds Ward's own path to op's tokens.
	opClientCredentials bool
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) signingAlg() protocol.KeyAlg {
	if c.SigningAlg == protocol.KeyAlg_KEY_ALG_UNSPECIFIED {
		return protocol.KeyAlg_KEY_ALG_RS256
	}
	return c.SigningAlg
}

func (c *Config) defaults() error {
	if c.Issuer == "" || c.Actors == nil || c.Meta == nil || c.Keys == nil || c.Passwords == nil {
		return errors.New("oidc: Issuer, Actors, Meta, Keys and Passwords are required")
	}
	if c.Secret == ([32]byte{}) {
		return errors.New("oidc: Secret is required")
	}
	if !c.Insecure && !strings.HasPrefix(c.Issuer, "https://") {
		return fmt.Errorf("oidc: issuer %q is not https (set Insecure for development)", c.Issuer)
	}
	if c.Tenant == "" {
		c.Tenant = "default"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AuthRequestTTL, 10*time.Minute)
	def(&c.AccessTTL, 15*time.Minute)
	def(&c.RefreshTTL, 8*time.Hour)
	def(&c.RefreshGrace, 10*time.Second)
	if c.RefreshGrace < 0 {
		c.RefreshGrace = 0
	}
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.loginPath = strings.TrimSuffix(c.Issuer, "/") + "/login"
	return nil
}

// subKey derives a purpose-specific key from the provider secret, so that
// no two uses share a key.
func (c *Config) subKey(purpose string) [32]byte {
	m := hmac.New(sha256.New, c.Secret[:])
	m.Write([]byte("ward/oidc/" + purpose))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// New returns the provider's HTTP handler. Mount it at the issuer's root.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	codeKey := cfg.subKey("codes")
	// One AES-256-GCM instance encrypts codes (op) and decrypts them
	// (storage.AuthRequestByCode): the code names its request.
	codes := op.NewAES256GCMCrypto(codeKey, "ward-codes-1")
	st := &storage{cfg: &cfg, crypto: codes}
	opts := []op.Option{op.WithLogger(cfg.Logger), op.WithCrypto(codes)}
	if cfg.Insecure {
		opts = append(opts, op.WithAllowInsecure())
	}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                codeKey,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		AuthMethodPrivateKeyJWT:  true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
		DefaultLogoutRedirectURI: "/logged-out",
	}, st, op.StaticIssuer(cfg.Issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("oidc: provider: %w", err)
	}
	l, err := newLogin(&cfg, st, op.AuthCallbackURL(provider))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/login", l)
	mux.HandleFunc("POST /login/consent", l.decide)
	mux.HandleFunc("GET /logged-out", l.loggedOut)
	mux.Handle("/", provider)
	return securityHeaders(tokenGuard(st, mux)), nil
}

// maxTokenForm bounds a token, introspection or revocation request body.
const maxTokenForm = 64 << 10

// tokenGuard bounds the body of the OAuth endpoints and refuses a JWT
// bearer grant whose assertion is not a compact JWS of JSON objects before
// op sees it: op answers such input with a server_error, and bad input is
// the client's error (RFC 7523 §3.1: invalid_grant). The client_credentials
// grant it answers itself (client_credentials.go); on the other endpoints
// where clients authenticate it spends signed assertions (private_key_jwt
// and the JWT bearer grant's) in the client's assertion ledger first.
func tokenGuard(st *storage, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/oauth/") && r.URL.Path != "/revoke" {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
		if r.URL.RawQuery != "" && r.Method == http.MethodPost {
			// RFC 6749 §2.3.1, §3.2: parameters (a client secret among
			// them) belong in the body; op would also read them from the
			// URL, which proxies and access logs keep.
			oauthError(w, "invalid_request", "parameters must be sent in the request body, not the URL")
			return
		}
		if r.Method != http.MethodPost || !slices.Contains(clientAuthPaths, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			oauthError(w, "invalid_request", "the request body could not be read")
			return
		}
		bearerGrant := r.URL.Path == "/oauth/token" && r.PostForm.Get("grant_type") == string(zoidc.GrantTypeBearer)
		if bearerGrant && !isCompactJWS(r.PostForm.Get("assertion")) {
			oauthError(w, "invalid_grant", "assertion is not a signed JWT")
			return
		}
		if r.URL.Path == "/oauth/token" && isClientCredentials(r) && !st.cfg.opClientCredentials {
			st.clientCredentials(w, r)
			return
		}
		// Signed assertions are single use on every path (RFC 7523 §3
		// point 7), as on ours above; op verifies them again, but would
		// accept each one again until it expires.
		now := st.cfg.now()
		if hasClientAssertion(r.PostForm) {
			if _, ok := st.authenticateClient(w, r, now); !ok {
				return
			}
		}
		if bearerGrant {
			if err := st.grantByAssertion(r.Context(), r.PostForm.Get("assertion"), now); err != nil {
				st.tokenFailure(w, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// clientAuthPaths are op's endpoints where a client authenticates.
var clientAuthPaths = []string{"/oauth/token", "/oauth/introspect", "/revoke"}

// isCompactJWS: three base64url parts, the first two JSON objects.
func isCompactJWS(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[2] == "" {
		return false
	}
	for _, p := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			return false
		}
		var obj map[string]any
		if json.Unmarshal(b, &obj) != nil {
			return false
		}
	}
	return true
}

// oauthError writes an RFC 6749 §5.2 error with status 400.
func oauthError(w http.ResponseWriter, code, description string) {
	oauthErrorStatus(w, http.StatusBadRequest, code, description)
}

func oauthErrorStatus(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// Paths lists the path prefixes the provider serves, for the node's mux.
var Paths = []string{
	"/.well-known/openid-configuration", "/authorize", "/authorize/", "/oauth/", "/userinfo",
	"/revoke", "/end_session", "/keys", "/login", "/login/consent", "/logged-out",
}

// securityHeaders sets what every provider answer carries: no framing, no
// sniffing, no referrer leaking codes, no caching of token answers.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// RFC 6749 §5.1: token answers must not be cached.
		if strings.HasPrefix(r.URL.Path, "/oauth/") || r.URL.Path == "/userinfo" {
			h.Set("Cache-Control", "no-store")
			h.Set("Pragma", "no-cache")
		}
		if h.Get("Content-Security-Policy") == "" {
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		}
		next.ServeHTTP(w, r)
	})
}
