package web

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/edge/signin"
	"github.com/wardhq/ward/protocol"
)

func hmacEqual(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// maxListed bounds the sessions the account page looks up, one request
// each.
const maxListed = 50

type loginPage struct {
	page
	Email string
}

func (s *server) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.signedIn(r); ok {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	p := &loginPage{page: page{Title: "Sign in to your account", Nonce: nonce()}}
	p.CSRF = s.csrfToken(s.csrfSecret(w, r), "login")
	s.render(w, http.StatusOK, "login.html", p, &p.page)
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, "login", cookieBinding(r)) {
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	pw := r.PostForm.Get("password")
	p := &loginPage{page: page{Title: "Sign in to your account", Nonce: nonce(), CSRF: r.PostForm.Get("csrf")}, Email: email}
	fail := func(status int, msg string) {
		p.Error = msg
		s.render(w, status, "login.html", p, &p.page)
	}
	if email == "" || len(email) > maxEmail || pw == "" || len(pw) > maxPassword {
		fail(http.StatusBadRequest, "Enter your e-mail address and password.")
		return
	}
	ctx := r.Context()
	uid, err := signin.Password(ctx, s.cfg.Actors, s.cfg.Passwords, s.cfg.Tenant, email, pw)
	if err != nil {
		var busy *password.BusyError
		var locked *signin.LockedError
		switch {
		case errors.As(err, &busy):
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, busy.RetryAfter().Round(time.Second).Seconds()))))
			fail(http.StatusServiceUnavailable, "We are busy right now; please try again in a moment.")
		case errors.As(err, &locked):
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, locked.RetryAfter.Round(time.Second).Seconds()))))
			fail(http.StatusTooManyRequests, "Too many failed attempts. This account is locked for a while; try again later.")
		case errors.Is(err, signin.ErrBadCredentials):
			fail(http.StatusUnauthorized, "The e-mail address or password is not right, or the account is not verified yet.")
		default:
			s.internal(w, "account sign-in", err)
		}
		return
	}
	sid := uuid.NewString()
	_, err = s.cfg.Actors.Request(ctx, session.KindName, sid, &protocol.CreateSession{
		Subject: uid, ClientId: AccountClient, TtlNanos: int64(s.cfg.SessionTTL), Tenant: s.cfg.Tenant,
		Amr: []string{"pwd"}, Acr: "L1",
	})
	if err != nil {
		s.internal(w, "create account session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: accountCookie, Value: sid + "." + mac(s.sessKey, sid), Path: "/account", HttpOnly: true,
		Secure: s.secure, SameSite: http.SameSiteStrictMode, MaxAge: int(s.cfg.SessionTTL.Seconds())})
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// signedIn returns the browser's live account session: the cookie's MAC
// proves Ward issued it, the session actor that it is still active.
func (s *server) signedIn(r *http.Request) (*protocol.SessionInfo, bool) {
	c, err := r.Cookie(accountCookie)
	if err != nil {
		return nil, false
	}
	sid, sig, ok := strings.Cut(c.Value, ".")
	if !ok || uuid.Validate(sid) != nil || !hmacEqual(sig, mac(s.sessKey, sid)) {
		return nil, false
	}
	m, err := s.cfg.Actors.Request(r.Context(), session.KindName, sid, &protocol.GetSession{})
	if err != nil {
		return nil, false
	}
	info := m.(*protocol.SessionInfo)
	if info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE || info.GetClientId() != AccountClient || info.GetTenant() != s.cfg.Tenant {
		return nil, false
	}
	return info, true
}

func (s *server) clearAccountCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: accountCookie, Value: "", Path: "/account", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

type sessionRow struct {
	ID, Client, Created, Expires string
	Current                      bool
}

type accountPage struct {
	page
	Profile  *protocol.UserProfile
	Sessions []sessionRow
}

func when(unixNano int64) string {
	if unixNano == 0 {
		return ""
	}
	return time.Unix(0, unixNano).UTC().Format("2006-01-02 15:04 UTC")
}

func (s *server) account(w http.ResponseWriter, r *http.Request) {
	cur, ok := s.signedIn(r)
	if !ok {
		s.clearAccountCookie(w)
		http.Redirect(w, r, "/account/login", http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	sub := cur.GetSubject()
	m, err := s.cfg.Actors.Request(ctx, user.KindName, user.ID(s.cfg.Tenant, sub), &protocol.GetProfile{})
	if err != nil {
		s.internal(w, "account profile", err)
		return
	}
	p := &accountPage{page: page{Title: "Your account", Nonce: nonce(), Wide: true, Notice: noticeFor(r.URL.Query().Get("done"))},
		Profile: m.(*protocol.UserProfile)}
	p.CSRF = s.csrfToken(cur.GetId(), "account")
	m, err = s.cfg.Actors.Request(ctx, usersessions.KindName, usersessions.ID(s.cfg.Tenant, sub), &protocol.ListUserSessions{})
	if err != nil {
		s.internal(w, "list sessions", err)
		return
	}
	entries := m.(*protocol.UserSessionList).GetSessions()
	// Newest first, and at most maxListed of them.
	for i := len(entries) - 1; i >= 0 && len(p.Sessions) < maxListed; i-- {
		sid := entries[i].GetSessionId()
		m, err := s.cfg.Actors.Request(ctx, session.KindName, sid, &protocol.GetSession{})
		if err != nil {
			continue
		}
		info := m.(*protocol.SessionInfo)
		if info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
			continue
		}
		client := info.GetClientId()
		if client == AccountClient {
			client = "Ward account page"
		}
		p.Sessions = append(p.Sessions, sessionRow{ID: sid, Client: client, Created: when(info.GetCreatedUnixNano()),
			Expires: when(info.GetExpiresUnixNano()), Current: sid == cur.GetId()})
	}
	s.render(w, http.StatusOK, "account.html", p, &p.page)
}

func noticeFor(done string) string {
	if done == "revoked" {
		return "That session is signed out."
	}
	return ""
}

// accountForm reads a signed-in form; its CSRF token is bound to the
// session, so it dies with it.
func (s *server) accountForm(w http.ResponseWriter, r *http.Request) (*protocol.SessionInfo, bool) {
	cur, ok := s.signedIn(r)
	if !ok {
		// Read (bounded) before answering, as every form is.
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		_ = r.ParseForm()
		s.clearAccountCookie(w)
		s.message(w, http.StatusUnauthorized, "Signed out", "You are not signed in any more.", "/account/login", "Sign in")
		return nil, false
	}
	if !s.readForm(w, r, "account", func() (string, bool) { return cur.GetId(), true }) {
		return nil, false
	}
	return cur, true
}

func (s *server) revoke(w http.ResponseWriter, r *http.Request) {
	cur, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	sid := r.PostForm.Get("session")
	if uuid.Validate(sid) != nil {
		s.message(w, http.StatusBadRequest, "No such session", "That session does not exist.", "/account", "Back to your account")
		return
	}
	ctx := r.Context()
	m, err := s.cfg.Actors.Request(ctx, session.KindName, sid, &protocol.GetSession{})
	// Someone else's session answers exactly like a missing one.
	if err != nil || m.(*protocol.SessionInfo).GetSubject() != cur.GetSubject() || m.(*protocol.SessionInfo).GetTenant() != s.cfg.Tenant {
		s.message(w, http.StatusNotFound, "No such session", "That session does not exist or has already ended.", "/account", "Back to your account")
		return
	}
	if _, err := s.cfg.Actors.Request(ctx, session.KindName, sid, &protocol.RevokeSession{Reason: "revoked_by_user"}); err != nil &&
		actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
		s.internal(w, "revoke session", err)
		return
	}
	if sid == cur.GetId() {
		s.clearAccountCookie(w)
		s.message(w, http.StatusOK, "Signed out", "You are signed out.", "/account/login", "Sign in again")
		return
	}
	http.Redirect(w, r, "/account?done=revoked", http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	cur, ok := s.accountForm(w, r)
	if !ok {
		return
	}
	if _, err := s.cfg.Actors.Request(r.Context(), session.KindName, cur.GetId(), &protocol.RevokeSession{Reason: "logout"}); err != nil &&
		actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
		s.internal(w, "logout", err)
		return
	}
	s.clearAccountCookie(w)
	s.message(w, http.StatusOK, "Signed out", "You are signed out.", "/account/login", "Sign in again")
}
