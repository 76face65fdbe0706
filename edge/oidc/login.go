package oidc

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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/edge/signin"
	"github.com/wardhq/ward/protocol"
)

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

const (
	csrfCookie   = "ward_csrf"
	maxLoginForm = 16 << 10
	// maxPassword bounds what is hashed: argon2 takes any length, an
	// attacker's megabyte password should not reach it.
	maxPassword = 1024
	maxEmail    = 254
)

// login serves /login: the password form of an authorization request.
type login struct {
	cfg      *Config
	st       *storage
	callback func(context.Context, string) string
	csrfKey  [32]byte
	secure   bool
}

func newLogin(cfg *Config, st *storage, callback func(context.Context, string) string) (*login, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: issuer: %w", err)
	}
	// Secure cookies need https; browsers treat loopback http as secure
	// too, so only a plain-http non-loopback dev issuer goes without.
	h := u.Hostname()
	secure := u.Scheme == "https" || h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
	return &login{cfg: cfg, st: st, callback: callback, csrfKey: cfg.subKey("csrf"), secure: secure}, nil
}

type loginPage struct {
	Nonce, Action, ID, CSRF, Client, Email, Error string
}

func (l *login) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		l.show(w, r)
	case http.MethodPost:
		l.submit(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		l.message(w, http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST.")
	}
}

func (l *login) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("authRequestID")
	ar, err := l.request(r.Context(), id)
	if err != nil {
		l.linkInvalid(w)
		return
	}
	// A fresh CSRF secret per form, bound to this request by the MAC.
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		l.message(w, http.StatusInternalServerError, "Error", "Please try again.")
		return
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: secret, Path: "/login", HttpOnly: true, Secure: l.secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(l.cfg.AuthRequestTTL / time.Second)})
	l.render(w, http.StatusOK, ar, loginPage{ID: id, CSRF: l.csrfToken(secret, id), Client: ar.GetData().GetClientId(),
		Email: r.URL.Query().Get("login_hint")})
}

func (l *login) csrfToken(secret, id string) string {
	m := hmac.New(sha256.New, l.csrfKey[:])
	m.Write([]byte(secret + "|" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (l *login) request(ctx context.Context, id string) (*protocol.AuthRequestInfo, error) {
	if uuid.Validate(id) != nil {
		return nil, errors.New("malformed authorization request id")
	}
	m, err := l.cfg.Actors.Request(ctx, authrequest.KindName, id, &protocol.GetAuthRequest{})
	if err != nil {
		return nil, err
	}
	return m.(*protocol.AuthRequestInfo), nil
}

// readForm reads a bounded form post, checks its CSRF token against the
// browser's cookie and loads its authorization request; on failure it has
// answered.
func (l *login) readForm(w http.ResponseWriter, r *http.Request) (string, *protocol.AuthRequestInfo, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		l.message(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return "", nil, false
	}
	id := r.PostForm.Get("authRequestID")
	c, err := r.Cookie(csrfCookie)
	if err != nil || !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(l.csrfToken(c.Value, id))) {
		l.message(w, http.StatusForbidden, "Form expired", "This form was not issued for this browser, or it expired. Go back and sign in again.")
		return "", nil, false
	}
	ar, err := l.request(r.Context(), id)
	if err != nil {
		l.linkInvalid(w)
		return "", nil, false
	}
	return id, ar, true
}

func (l *login) submit(w http.ResponseWriter, r *http.Request) {
	id, ar, ok := l.readForm(w, r)
	if !ok {
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	pw := r.PostForm.Get("password")
	page := loginPage{ID: id, CSRF: r.PostForm.Get("csrf"), Client: ar.GetData().GetClientId(), Email: email}
	if email == "" || len(email) > maxEmail || pw == "" || len(pw) > maxPassword {
		page.Error = "Enter your e-mail address and password."
		l.render(w, http.StatusBadRequest, ar, page)
		return
	}
	subject, err := signin.Password(r.Context(), l.cfg.Actors, l.cfg.Passwords, l.cfg.Tenant, email, pw)
	if err != nil {
		var busy *password.BusyError
		var locked *signin.LockedError
		switch {
		case errors.As(err, &busy):
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, busy.RetryAfter().Round(time.Second).Seconds()))))
			page.Error = "We are busy right now; please try again in a moment."
			l.render(w, http.StatusServiceUnavailable, ar, page)
		case errors.As(err, &locked):
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, locked.RetryAfter.Round(time.Second).Seconds()))))
			page.Error = "Too many failed attempts. This account is locked for a while; try again later."
			l.render(w, http.StatusTooManyRequests, ar, page)
		case errors.Is(err, signin.ErrBadCredentials):
			page.Error = "The e-mail address or password is not right."
			l.render(w, http.StatusUnauthorized, ar, page)
		default:
			l.cfg.Logger.Error("login failed", "err", err)
			page.Error = "Something went wrong; please try again."
			l.render(w, http.StatusInternalServerError, ar, page)
		}
		return
	}
	need, err := l.consentNeeded(r.Context(), ar, subject)
	if err != nil {
		l.cfg.Logger.Error("consent lookup failed", "err", err)
		page.Error = "Something went wrong; please try again."
		l.render(w, http.StatusInternalServerError, ar, page)
		return
	}
	info, err := l.cfg.Actors.Request(r.Context(), authrequest.KindName, id, &protocol.CompleteAuthRequest{Subject: subject, Amr: []string{"pwd"}, Acr: "L1", ConsentRequired: need})
	if err != nil {
		l.linkInvalid(w)
		return
	}
	if info.(*protocol.AuthRequestInfo).GetDone() {
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusSeeOther)
		return
	}
	l.showConsent(w, ar, page.CSRF)
}

// consentNeeded: first-party clients never ask; others ask once per scope
// the user has not allowed them yet.
func (l *login) consentNeeded(ctx context.Context, ar *protocol.AuthRequestInfo, subject string) (bool, error) {
	c, err := l.st.client(ar.GetData().GetClientId())
	if err != nil {
		return false, err
	}
	if !oidcclient.NeedsConsent(c, nil, ar.GetData().GetScopes()) {
		return false, nil // first party, or nothing to consent to
	}
	m, err := l.cfg.Actors.Request(ctx, consent.KindName, consent.ID(l.cfg.Tenant, subject, c.GetId()), &protocol.GetConsent{})
	if err != nil {
		return false, err
	}
	return oidcclient.NeedsConsent(c, m.(*protocol.ConsentState).GetScopes(), ar.GetData().GetScopes()), nil
}

type consentPage struct {
	Nonce, Action, ID, CSRF, Client string
	Scopes                          []string
}

func (l *login) showConsent(w http.ResponseWriter, ar *protocol.AuthRequestInfo, csrf string) {
	name := ar.GetData().GetClientId()
	if c, err := l.st.client(name); err == nil && c.GetName() != "" {
		name = c.GetName()
	}
	var scopes []string
	for _, s := range ar.GetData().GetScopes() {
		if s != "openid" {
			scopes = append(scopes, scopeText(s))
		}
	}
	p := consentPage{Nonce: l.nonce(), Action: l.cfg.loginPath + "/consent", ID: ar.GetId(), CSRF: csrf, Client: name, Scopes: scopes}
	formTo := formAction(ar)
	l.page(w, http.StatusOK, "consent.html", p.Nonce, formTo, p)
}

// formAction is the CSP form-action of a page posting within ar: ourselves,
// and the client's origin, because Chromium applies form-action to the
// redirects that follow a form submission.
func formAction(ar *protocol.AuthRequestInfo) string {
	if u, err := url.Parse(ar.GetData().GetRedirectUri()); err == nil && u.Scheme != "" {
		return "'self' " + u.Scheme + "://" + u.Host
	}
	return "'self'"
}

// scopeText says what a scope lets the client do.
func scopeText(s string) string {
	switch s {
	case "profile":
		return "see your name"
	case "email":
		return "see your e-mail address"
	case "phone":
		return "see your phone number"
	case "offline_access":
		return "stay signed in when you are away (refresh tokens)"
	}
	return "use the scope " + s
}

// decide serves POST /login/consent: the user allows or denies the
// client's scopes. Allowing is remembered per user and client.
func (l *login) decide(w http.ResponseWriter, r *http.Request) {
	id, ar, ok := l.readForm(w, r)
	if !ok {
		return
	}
	if !ar.GetAuthenticated() {
		l.linkInvalid(w)
		return
	}
	switch r.PostForm.Get("decision") {
	case "allow":
		var scopes []string
		for _, s := range ar.GetData().GetScopes() {
			if s != "openid" {
				scopes = append(scopes, s)
			}
		}
		cid := consent.ID(l.cfg.Tenant, ar.GetSubject(), ar.GetData().GetClientId())
		if _, err := l.cfg.Actors.Request(r.Context(), consent.KindName, cid, &protocol.GrantConsent{Scopes: scopes}); err != nil {
			l.cfg.Logger.Error("record consent", "err", err)
			l.message(w, http.StatusInternalServerError, "Error", "Please try again.")
			return
		}
		if _, err := l.cfg.Actors.Request(r.Context(), authrequest.KindName, id, &protocol.ApproveAuthRequest{}); err != nil {
			l.linkInvalid(w)
			return
		}
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusSeeOther)
	case "deny":
		// RFC 6749 §4.1.2.1: access_denied, back to the (registered,
		// exactly matched) redirect URI with the client's state.
		u, err := url.Parse(ar.GetData().GetRedirectUri())
		if err != nil {
			l.message(w, http.StatusBadRequest, "Bad request", "The application's address is not valid.")
			return
		}
		q := u.Query()
		q.Set("error", "access_denied")
		q.Set("error_description", "the user denied access")
		if st := ar.GetData().GetState(); st != "" {
			q.Set("state", st)
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusSeeOther)
	default:
		l.message(w, http.StatusBadRequest, "Bad request", "Choose Allow or Deny.")
	}
}

func (l *login) nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// render shows the login form. Its CSP allows posting to ourselves and
// following the redirect chain to the client's redirect URI (Chromium
// applies form-action to redirects after a form submission).
func (l *login) render(w http.ResponseWriter, status int, ar *protocol.AuthRequestInfo, p loginPage) {
	p.Nonce = l.nonce()
	p.Action = l.cfg.loginPath
	formTo := formAction(ar)
	l.page(w, status, "login.html", p.Nonce, formTo, p)
}

// linkInvalid answers a form or link whose authorization request is gone.
func (l *login) linkInvalid(w http.ResponseWriter) {
	l.message(w, http.StatusBadRequest, "Sign-in link not valid", "This sign-in link has expired or was already used. Go back to the application and start again.")
}

func (l *login) message(w http.ResponseWriter, status int, title, msg string) {
	n := l.nonce()
	l.page(w, status, "message.html", n, "'none'", map[string]string{"Title": title, "Message": msg, "Nonce": n})
}

func (l *login) loggedOut(w http.ResponseWriter, r *http.Request) {
	l.message(w, http.StatusOK, "Signed out", "You are signed out.")
}

func (l *login) page(w http.ResponseWriter, status int, name, nonce, formAction string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		l.cfg.Logger.Error("render page", "page", name, "err", err)
	}
}
