package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

type registerFields struct{ FirstName, LastName, Email, Phone string }

type registerPage struct {
	page
	Form registerFields
}

func (s *server) registerForm(w http.ResponseWriter, r *http.Request) {
	p := &registerPage{page: page{Title: "Create your account", Nonce: nonce()}}
	p.CSRF = s.csrfToken(s.csrfSecret(w, r), "register")
	s.render(w, http.StatusOK, "register.html", p, &p.page)
}

// normalizePhone turns what people type ("+41 79 123-45-67", "0041 79...")
// into the E.164 form the user actor accepts; the actor has the last word.
func normalizePhone(v string) string {
	v = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -().\u00a0", r) {
			return -1
		}
		return r
	}, strings.TrimSpace(v))
	if strings.HasPrefix(v, "00") {
		v = "+" + v[2:]
	}
	return v
}

func (s *server) register(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, "register", cookieBinding(r)) {
		return
	}
	f := registerFields{
		FirstName: strings.TrimSpace(r.PostForm.Get("first_name")),
		LastName:  strings.TrimSpace(r.PostForm.Get("last_name")),
		Email:     strings.TrimSpace(r.PostForm.Get("email")),
		Phone:     strings.TrimSpace(r.PostForm.Get("phone")),
	}
	pw := r.PostForm.Get("password")
	p := &registerPage{page: page{Title: "Create your account", Nonce: nonce(), CSRF: r.PostForm.Get("csrf")}, Form: f}
	fail := func(status int, msg string) {
		p.Error = msg
		s.render(w, status, "register.html", p, &p.page)
	}
	switch {
	case f.FirstName == "" || f.LastName == "" || f.Email == "" || f.Phone == "" || pw == "":
		fail(http.StatusBadRequest, "Fill in every field.")
		return
	case len(f.FirstName) > maxName || len(f.LastName) > maxName:
		fail(http.StatusBadRequest, fmt.Sprintf("Names can be at most %d characters long.", maxName))
		return
	case len(f.Email) > maxEmail || !strings.Contains(f.Email, "@"):
		fail(http.StatusBadRequest, "Enter a valid e-mail address.")
		return
	case len(f.Phone) > maxPhone:
		fail(http.StatusBadRequest, "Enter your mobile number in international format, e.g. +41 79 123 45 67.")
		return
	}
	if err := password.Check(pw, f.FirstName, f.LastName, f.Email); err != nil {
		var weak *password.WeakPasswordError
		if errors.As(err, &weak) {
			fail(http.StatusBadRequest, "Choose a stronger password: it "+weak.Reason+".")
			return
		}
		s.internal(w, "password check", err)
		return
	}
	// Hash first: it is the step most likely to be refused (admission
	// control), and nothing is reserved yet when it is.
	phc, err := s.cfg.Passwords.Hash(r.Context(), pw)
	if err != nil {
		var busy *password.BusyError
		if errors.As(err, &busy) {
			w.Header().Set("Retry-After", strconv.Itoa(int(max(1, busy.RetryAfter().Round(time.Second).Seconds()))))
			fail(http.StatusServiceUnavailable, "We are busy right now; please try again in a moment.")
			return
		}
		s.internal(w, "hash password", err)
		return
	}
	uid := uuid.NewString()
	ctx := r.Context()
	tenant := s.cfg.Tenant
	indexID := emailindex.ID(tenant, f.Email)
	if _, err := s.cfg.Actors.Request(ctx, emailindex.KindName, indexID, &protocol.EmailReserve{UserId: uid}); err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
			fail(http.StatusConflict, "An account with this e-mail address already exists. Sign in, or use another address.")
		case protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			fail(http.StatusBadRequest, "Enter a valid e-mail address.")
		default:
			s.internal(w, "reserve e-mail", err)
		}
		return
	}
	actorID := user.ID(tenant, uid)
	m, err := s.cfg.Actors.Request(ctx, user.KindName, actorID, &protocol.RegisterUser{
		FirstName: f.FirstName, LastName: f.LastName, Phone: normalizePhone(f.Phone), Email: f.Email,
	})
	if err != nil {
		// Free the address again: nothing was created.
		if _, rerr := s.cfg.Actors.Request(context.WithoutCancel(ctx), emailindex.KindName, indexID, &protocol.EmailRelease{UserId: uid}); rerr != nil {
			s.cfg.Logger.Error("release e-mail after a failed registration", "err", rerr)
		}
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			fail(http.StatusBadRequest, "Please check your details: "+userMessage(err)+".")
			return
		}
		s.internal(w, "register user", err)
		return
	}
	reg := m.(*protocol.UserRegistration)
	// The user actor takes a password while verification is pending, so
	// the account is complete as soon as both checks pass.
	if _, err := s.cfg.Actors.Request(ctx, user.KindName, actorID, &protocol.SetPassword{Phc: phc}); err != nil {
		s.internal(w, "set password", err)
		return
	}
	if err := s.sendEmailLink(ctx, uid, f.Email, reg.GetEmailVerification()); err != nil {
		s.internal(w, "queue verification mail", err)
		return
	}
	if err := s.sendPhoneCode(ctx, uid); err != nil {
		s.internal(w, "queue phone code", err)
		return
	}
	// Only this browser may enter the phone code: the page is bound to a
	// signed cookie, so knowing a user id is not enough to guess codes.
	http.SetCookie(w, &http.Cookie{Name: regCookie, Value: uid + "." + mac(s.regKey, uid), Path: "/verify-phone", HttpOnly: true,
		Secure: s.secure, SameSite: http.SameSiteLaxMode, MaxAge: int((24 * time.Hour).Seconds())})
	http.Redirect(w, r, "/verify-phone?sent=1&u="+uid, http.StatusSeeOther)
}

// userMessage is an actor's INVALID_ARGUMENT text, which names the field
// and the rule and is written for people ("phone must be in E.164 form").
func userMessage(err error) string {
	var e *actors.Error
	if errors.As(err, &e) {
		return strings.ReplaceAll(strings.ReplaceAll(e.Msg, "first_name", "first name"), "last_name", "last name")
	}
	return "invalid input"
}

func (s *server) enqueue(ctx context.Context, m *protocol.OutboxEnqueue) error {
	if _, err := s.cfg.Actors.Request(ctx, outbox.KindName, s.cfg.Tenant, m); err != nil {
		return err
	}
	s.cfg.Notify()
	return nil
}

// sendEmailLink queues the magic-link mail. The message id is the
// token's expiry: one mail per issued token, however often this is retried.
func (s *server) sendEmailLink(ctx context.Context, uid, to string, v *protocol.EmailVerificationIssued) error {
	link := s.cfg.BaseURL + "/verify-email?" + url.Values{"u": {uid}, "t": {base64.RawURLEncoding.EncodeToString(v.GetToken())}}.Encode()
	body := "Hello,\n\nplease confirm your e-mail address for your Ward account by opening this link:\n\n" + link +
		"\n\nThe link works for " + user.EmailTokenTTL.String() + ". If you did not create an account, ignore this mail.\n"
	return s.enqueue(ctx, &protocol.OutboxEnqueue{Id: fmt.Sprintf("verify-email/%s/%d", uid, v.GetExpiresUnixNano()),
		Channel: protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL, To: to, Subject: "Confirm your e-mail address", Body: body})
}

// sendPhoneCode asks the user actor for a code and queues the SMS.
func (s *server) sendPhoneCode(ctx context.Context, uid string) error {
	actorID := user.ID(s.cfg.Tenant, uid)
	m, err := s.cfg.Actors.Request(ctx, user.KindName, actorID, &protocol.StartPhoneVerification{})
	if err != nil {
		return err
	}
	issued := m.(*protocol.PhoneVerificationIssued)
	pm, err := s.cfg.Actors.Request(ctx, user.KindName, actorID, &protocol.GetProfile{})
	if err != nil {
		return err
	}
	return s.enqueue(ctx, &protocol.OutboxEnqueue{Id: fmt.Sprintf("phone-code/%s/%d", uid, issued.GetExpiresUnixNano()),
		Channel: protocol.OutboxChannel_OUTBOX_CHANNEL_SMS, To: pm.(*protocol.UserProfile).GetPhone(),
		Body: "Your Ward code is " + issued.GetCode() + ". It expires in " + user.PhoneCodeTTL.String() + "."})
}

// ---- e-mail verification ----

type verifyEmailPage struct {
	page
	User, Token string
}

// emailLink checks the link's shape before any actor is asked.
func emailLink(u, t string) ([]byte, bool) {
	if uuid.Validate(u) != nil || u != strings.ToLower(u) || len(t) > 64 {
		return nil, false
	}
	tok, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(tok) != user.TokenLen {
		return nil, false
	}
	return tok, true
}

func (s *server) badLink(w http.ResponseWriter) {
	s.message(w, http.StatusBadRequest, "Link not valid", "This confirmation link is not valid. Open the newest link we sent you, and copy it whole if your mail program split it.", "", "")
}

func (s *server) verifyEmailForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, ok := emailLink(q.Get("u"), q.Get("t")); !ok {
		s.badLink(w)
		return
	}
	p := &verifyEmailPage{page: page{Title: "Confirm your e-mail", Nonce: nonce()}, User: q.Get("u"), Token: q.Get("t")}
	p.CSRF = s.csrfToken(s.csrfSecret(w, r), "verify-email")
	s.render(w, http.StatusOK, "verify_email.html", p, &p.page)
}

func (s *server) verifyEmail(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, "verify-email", cookieBinding(r)) {
		return
	}
	uid := r.PostForm.Get("u")
	tok, ok := emailLink(uid, r.PostForm.Get("t"))
	if !ok {
		s.badLink(w)
		return
	}
	ctx := r.Context()
	m, err := s.cfg.Actors.Request(ctx, user.KindName, user.ID(s.cfg.Tenant, uid), &protocol.VerifyEmail{Token: tok})
	if err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			if s.alreadyVerified(ctx, w, uid, (*protocol.UserStatus).GetEmailVerified, "Your e-mail address is already confirmed.") {
				return
			}
			s.message(w, http.StatusBadRequest, "Link expired", "This confirmation link has expired or was replaced by a newer one.", "", "")
		case protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, protocol.ErrorCode_ERROR_CODE_NOT_FOUND:
			s.badLink(w)
		default:
			s.internal(w, "verify e-mail", err)
		}
		return
	}
	s.verified(w, m.(*protocol.UserStatus), "Your e-mail address is confirmed.")
}

func (s *server) status(ctx context.Context, uid string) (*protocol.UserStatus, error) {
	m, err := s.cfg.Actors.Request(ctx, user.KindName, user.ID(s.cfg.Tenant, uid), &protocol.GetProfile{})
	if err != nil {
		return nil, err
	}
	return m.(*protocol.UserProfile).GetStatus(), nil
}

// verified tells where the registration stands after one check passed.
// alreadyVerified answers the verified page when a refused verification
// was refused because it had already succeeded (a second click, a
// resubmitted form), and reports whether it did.
func (s *server) alreadyVerified(ctx context.Context, w http.ResponseWriter, uid string, done func(*protocol.UserStatus) bool, msg string) bool {
	st, err := s.status(ctx, uid)
	if err != nil || !done(st) {
		return false
	}
	s.verified(w, st, msg)
	return true
}

func (s *server) verified(w http.ResponseWriter, st *protocol.UserStatus, done string) {
	switch {
	case st.GetState() == protocol.UserState_USER_STATE_ACTIVE:
		s.message(w, http.StatusOK, "Account ready", done+" Your account is ready.", "/account/login", "Sign in")
	case !st.GetPhoneVerified():
		s.message(w, http.StatusOK, "Almost done", done+" Now enter the code we sent to your phone.", "/verify-phone?u="+st.GetUserId(), "Enter the code")
	default:
		s.message(w, http.StatusOK, "Almost done", done+" Now open the link we sent to your e-mail address.", "", "")
	}
}

// ---- phone verification ----

type verifyPhonePage struct {
	page
	User, ResendCSRF string
	Sent             bool
}

// registrant returns the user id of the registration this browser made, if
// it is uid.
func (s *server) registrant(r *http.Request, uid string) bool {
	c, err := r.Cookie(regCookie)
	if err != nil {
		return false
	}
	id, sig, ok := strings.Cut(c.Value, ".")
	return ok && id == uid && hmacEqual(sig, mac(s.regKey, id))
}

func (s *server) notRegistrant(w http.ResponseWriter) {
	s.message(w, http.StatusForbidden, "Wrong browser", "Enter the phone code in the browser you registered with. If that is not possible, sign in later to finish the verification.", "", "")
}

func (s *server) phonePage(w http.ResponseWriter, r *http.Request, status int, uid, csrfSecret string, p *verifyPhonePage) {
	p.Title, p.Nonce, p.User = "Confirm your phone", nonce(), uid
	p.CSRF = s.csrfToken(csrfSecret, "verify-phone")
	p.ResendCSRF = s.csrfToken(csrfSecret, "resend-code")
	s.render(w, status, "verify_phone.html", p, &p.page)
}

func (s *server) verifyPhoneForm(w http.ResponseWriter, r *http.Request) {
	uid := r.URL.Query().Get("u")
	if !s.registrant(r, uid) {
		s.notRegistrant(w)
		return
	}
	s.phonePage(w, r, http.StatusOK, uid, s.csrfSecret(w, r), &verifyPhonePage{Sent: r.URL.Query().Get("sent") == "1"})
}

func (s *server) verifyPhone(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, "verify-phone", cookieBinding(r)) {
		return
	}
	uid := r.PostForm.Get("u")
	if !s.registrant(r, uid) {
		s.notRegistrant(w)
		return
	}
	secret, _ := cookieBinding(r)()
	code := strings.TrimSpace(r.PostForm.Get("code"))
	retry := func(status int, msg string) {
		s.phonePage(w, r, status, uid, secret, &verifyPhonePage{page: page{Error: msg}})
	}
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		retry(http.StatusBadRequest, "Enter the 6-digit code from the SMS.")
		return
	}
	ctx := r.Context()
	m, err := s.cfg.Actors.Request(ctx, user.KindName, user.ID(s.cfg.Tenant, uid), &protocol.VerifyPhone{Code: code})
	if err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			if s.alreadyVerified(ctx, w, uid, (*protocol.UserStatus).GetPhoneVerified, "Your phone is already confirmed.") {
				return
			}
			retry(http.StatusBadRequest, "This code has expired or was used up. Send a new code and try again.")
		case protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			retry(http.StatusBadRequest, "Enter the 6-digit code from the SMS.")
		default:
			s.internal(w, "verify phone", err)
		}
		return
	}
	res := m.(*protocol.PhoneVerificationResult)
	if !res.GetVerified() {
		if res.GetAttemptsLeft() == 0 {
			retry(http.StatusBadRequest, "That code is not right, and it was the last try for this code. Send a new code.")
			return
		}
		retry(http.StatusBadRequest, fmt.Sprintf("That code is not right. %d tries left.", res.GetAttemptsLeft()))
		return
	}
	s.verified(w, res.GetStatus(), "Your phone number is confirmed.")
}

func (s *server) resendCode(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, "resend-code", cookieBinding(r)) {
		return
	}
	uid := r.PostForm.Get("u")
	if !s.registrant(r, uid) {
		s.notRegistrant(w)
		return
	}
	secret, _ := cookieBinding(r)()
	if err := s.sendPhoneCode(r.Context(), uid); err != nil {
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED {
			// The account's rule (actors/user): a minute between codes
			// while one is live, five per registration.
			w.Header().Set("Retry-After", strconv.Itoa(int(user.PhoneResendInterval.Seconds())))
			s.phonePage(w, r, http.StatusTooManyRequests, uid, secret, &verifyPhonePage{page: page{
				Error: "No new code was sent: please use the last one, wait a minute before asking again, or contact support if codes never arrive."}})
			return
		}
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
			if st, serr := s.status(r.Context(), uid); serr == nil && st.GetPhoneVerified() {
				s.verified(w, st, "Your phone is already confirmed.")
				return
			}
		}
		s.internal(w, "resend phone code", err)
		return
	}
	s.phonePage(w, r, http.StatusOK, uid, secret, &verifyPhonePage{page: page{Notice: "We sent you a new code."}})
}
