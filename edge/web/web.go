// Package web serves Ward's own pages for people: registration, the
// e-mail and phone verification pages, and the account page (profile and
// sessions). Like the provider's login page (edge/oidc) they are plain
// html/template pages embedded in the binary, with a per-response nonce CSP,
// no script at all, CSRF tokens on every form, bounded form sizes and
// Secure/HttpOnly/SameSite cookies.
//
// The pages translate; the actors decide: emailindex keeps addresses
// unique, user issues and checks the magic link and the phone code, outbox
// queues the mail and SMS, session and usersessions hold the sign-ins.
//
// Routes:
//
//	GET  /register, POST /register          create an account
//	GET  /verify-email?u=&t=, POST           confirm the magic link (the GET
//	                                         only shows a button, so mail
//	                                         scanners that prefetch links
//	                                         verify nothing)
//	GET  /verify-phone?u=, POST              enter the SMS code
//	POST /verify-phone/resend                send a new code
//	GET  /account/login, POST                sign in to the account page
//	GET  /account                            profile and sessions
//	POST /account/sessions/revoke            sign out one session
//	POST /account/logout                     sign out this browser
//	GET  /dev/mailbox                        captured mail and SMS (Mailbox;
//	                                         ward dev only)
//
// Account sign-in. The account page is a first-party page of the identity
// provider, so it has its own small sign-in rather than being an OAuth
// client of itself: the password is checked exactly as the provider's login
// checks it (same actors, same lockout, same admission-controlled hasher),
// and a session actor is created for client "ward-account". The browser gets
// a cookie holding the session id and a MAC over it (so only Ward can mint
// one; a session id seen elsewhere, e.g. in a token's sid claim, is not
// enough), and every request checks that the session is still active, so
// revoking it anywhere (this page, revoke-all, the session cap) signs the
// browser out at once.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// Config configures the pages.
type Config struct {
	// BaseURL is the external URL the links in mail point to (the issuer).
	BaseURL   string
	Actors    Requester
	Passwords *password.Hasher
	// Secret keys the pages' MACs (CSRF tokens, cookies): the same 32 bytes
	// on every node, so any node accepts what another issued.
	Secret [32]byte
	// Tenant is the tenant people register in and sign in to.
	Tenant string
	// SessionTTL is an account-page sign-in's lifetime; default 1 hour.
	SessionTTL time.Duration
	// Notify, if set, is called after messages are queued, to wake a
	// sender in this process.
	Notify func()
	Logger *slog.Logger
}

// AccountClient is the client id of account-page sessions.
const AccountClient = "ward-account"

// Paths are the path patterns New's handler serves, for the node's mux.
var Paths = []string{"/register", "/verify-email", "/verify-phone", "/verify-phone/", "/account", "/account/"}

// MailboxPath is where Mailbox is mounted.
const MailboxPath = "/dev/mailbox"

const (
	csrfCookie    = "ward_web_csrf"
	regCookie     = "ward_reg"
	accountCookie = "ward_account"
	maxForm       = 16 << 10
	maxPassword   = password.MaxLength
	maxEmail      = 254
	maxName       = 256
	maxPhone      = 32
)

// Server holds the pages' state.
type server struct {
	cfg     Config
	secure  bool
	csrfKey [32]byte
	regKey  [32]byte
	sessKey [32]byte
}

func newServer(cfg Config) (*server, error) {
	if cfg.BaseURL == "" || cfg.Actors == nil || cfg.Tenant == "" {
		return nil, errors.New("web: BaseURL, Actors and Tenant are required")
	}
	if cfg.Secret == ([32]byte{}) {
		return nil, errors.New("web: Secret is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("web: base URL %q is not absolute", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	// As edge/oidc: browsers treat loopback http as secure, so only a
	// plain-http non-loopback base goes without Secure cookies.
	h := u.Hostname()
	secure := u.Scheme == "https" || h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
	return &server{cfg: cfg, secure: secure, csrfKey: subKey(cfg.Secret, "csrf"), regKey: subKey(cfg.Secret, "registration"),
		sessKey: subKey(cfg.Secret, "account-session")}, nil
}

// New returns the pages' handler; mount it on Paths.
func New(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Passwords == nil {
		return nil, errors.New("web: Passwords is required")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /register", s.registerForm)
	mux.HandleFunc("POST /register", s.register)
	mux.HandleFunc("GET /verify-email", s.verifyEmailForm)
	mux.HandleFunc("POST /verify-email", s.verifyEmail)
	mux.HandleFunc("GET /verify-phone", s.verifyPhoneForm)
	mux.HandleFunc("POST /verify-phone", s.verifyPhone)
	mux.HandleFunc("POST /verify-phone/resend", s.resendCode)
	mux.HandleFunc("GET /account/login", s.loginForm)
	mux.HandleFunc("POST /account/login", s.login)
	mux.HandleFunc("GET /account", s.account)
	mux.HandleFunc("POST /account/sessions/revoke", s.revoke)
	mux.HandleFunc("POST /account/logout", s.logout)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.message(w, http.StatusNotFound, "Not found", "There is no page here.", "", "")
	})
	return headers(mux), nil
}

// subKey derives a purpose-specific key, distinct from edge/oidc's keys
// ("ward/oidc/...") drawn from the same secret.
func subKey(secret [32]byte, purpose string) [32]byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte("ward/web/" + purpose))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

func mac(key [32]byte, parts ...string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// headers sets what every page carries: no framing, no sniffing, no
// referrer (verification links carry secrets in their query).
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// ---- CSRF ----

// csrfSecret returns the browser's CSRF secret, setting a fresh one when
// it has none. The cookie is Lax, not Strict: a magic link opened from a
// mail client is a cross-site navigation, and a Strict cookie would be
// missing on it and be replaced, breaking forms open in other tabs.
func (s *server) csrfSecret(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	v := randomString(32)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int((24 * time.Hour).Seconds())})
	return v
}

// csrfToken binds a form to the browser's secret and to the form's
// purpose, so a token for one form does not work for another.
func (s *server) csrfToken(secret, form string) string { return mac(s.csrfKey, secret, form) }

// readForm parses a POST form within maxForm and checks its CSRF token
// against binding (the browser's secret or the signed-in session). It
// answers the request itself when the form is refused.
func (s *server) readForm(w http.ResponseWriter, r *http.Request, form string, binding func() (string, bool)) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.message(w, http.StatusRequestEntityTooLarge, "Form too large", fmt.Sprintf("The form is larger than %d KiB. Shorten what you entered and try again.", maxForm>>10), "", "")
			return false
		}
		s.message(w, http.StatusBadRequest, "Bad request", "The form could not be read.", "", "")
		return false
	}
	b, ok := binding()
	if !ok || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(s.csrfToken(b, form))) {
		s.message(w, http.StatusForbidden, "Form expired", "This form was not issued for this browser, or it expired. Go back, reload the page and try again.", "", "")
		return false
	}
	return true
}

// cookieBinding is the CSRF binding of pages for people not signed in.
func cookieBinding(r *http.Request) func() (string, bool) {
	return func() (string, bool) {
		c, err := r.Cookie(csrfCookie)
		if err != nil || c.Value == "" {
			return "", false
		}
		return c.Value, true
	}
}

// ---- rendering ----

// page is what every template gets.
type page struct {
	Title, Nonce, Error, Notice, CSRF string
	Wide                              bool
	Data                              any
	// message.html
	Message, Link, LinkText string
}

func nonce() string { return randomString(16) }

func (s *server) render(w http.ResponseWriter, status int, name string, data any, p *page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+p.Nonce+"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		s.cfg.Logger.Error("render page", "page", name, "err", err)
	}
}

func (s *server) message(w http.ResponseWriter, status int, title, msg, link, linkText string) {
	p := &page{Title: title, Nonce: nonce(), Message: msg, Link: link, LinkText: linkText}
	s.render(w, status, "message.html", p, p)
}

// internal logs err (never a secret: errors name actors and codes, not
// form values) and answers a generic page.
func (s *server) internal(w http.ResponseWriter, what string, err error) {
	s.cfg.Logger.Error(what, "err", err)
	s.message(w, http.StatusInternalServerError, "Something went wrong", "Please try again in a moment.", "", "")
}
