package web

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/clustertest"
	"github.com/wardhq/ward/edge/delivery"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

const tenant = "acme"

// env is the pages over a real one-node cluster (pebble, raft, the
// actors), with the dev mailbox and a capturing sender run synchronously
// after every enqueue.
type env struct {
	srv  *httptest.Server
	node *cluster.Node
}

var (
	shared     *env
	sharedOnce sync.Once
	sharedErr  error
)

func newEnv(t *testing.T) *env {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = startEnv() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func startEnv() (*env, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, _, err := clustertest.OneNode(session.Kind, usersessions.Kind, user.Kind, emailindex.Kind, outbox.Kind)
	if err != nil {
		return nil, err
	}
	hasher, err := password.New(password.Config{Params: password.Params{Memory: 8 << 10, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		return nil, err
	}
	e := &env{node: n}
	sender := &delivery.Sender{Actors: n, Tenants: []string{tenant}, Transport: delivery.Capture{}, Logger: log}
	var pages, mailbox http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == MailboxPath {
			mailbox.ServeHTTP(w, r)
			return
		}
		pages.ServeHTTP(w, r)
	}))
	var secret [32]byte
	copy(secret[:], "0123456789abcdef0123456789abcdef")
	cfg := Config{BaseURL: e.srv.URL, Actors: n, Passwords: hasher, Secret: secret, Tenant: tenant, Logger: log,
		Notify: func() { sender.Once(context.Background(), tenant) }}
	if pages, err = New(cfg); err != nil {
		return nil, err
	}
	if mailbox, err = Mailbox(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// browser keeps cookies the way a browser does for one host (paths are
// ignored: every test URL is under the cookies' paths or does not care).
type browser struct {
	t       *testing.T
	e       *env
	cookies map[string]*http.Cookie
}

func (e *env) browser(t *testing.T) *browser {
	return &browser{t: t, e: e, cookies: map[string]*http.Cookie{}}
}

type answer struct {
	status int
	header http.Header
	body   string
	loc    string
}

func (b *browser) do(method, path string, body io.Reader, ctype string) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(raw), loc: resp.Header.Get("Location")}
}

func (b *browser) get(path string) answer { return b.do(http.MethodGet, path, nil, "") }

func (b *browser) post(path string, form url.Values) answer {
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

var (
	csrfRE  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	linkRE2 = regexp.MustCompile(`class="link" href="([^"]+)"`)
	codeRE2 = regexp.MustCompile(`class="code">([0-9]{6})<`)
)

// csrf is the first CSRF token on a answer.
func (p answer) csrf(t *testing.T) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token on the answer (%d):\n%s", p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

func (p answer) has(s string) bool { return strings.Contains(html.UnescapeString(p.body), s) }

type person struct {
	first, last, email, phone, password string
}

var seq int
var seqMu sync.Mutex

func newPerson() person {
	seqMu.Lock()
	defer seqMu.Unlock()
	seq++
	return person{first: "Grace", last: "Hopper", email: "grace" + strings.Repeat("x", seq) + "@example.com",
		phone: "+41 79 555 00 " + string(rune('0'+seq/10%10)) + string(rune('0'+seq%10)), password: "tangerine-lighthouse-orbit-91"}
}

func (p person) form(csrf string) url.Values {
	return url.Values{"csrf": {csrf}, "first_name": {p.first}, "last_name": {p.last}, "email": {p.email}, "phone": {p.phone}, "password": {p.password}}
}

// register fills the registration form and returns the new user id.
func (b *browser) register(p person) string {
	b.t.Helper()
	form := b.get("/register")
	resp := b.post("/register", p.form(form.csrf(b.t)))
	if resp.status != http.StatusSeeOther || !strings.HasPrefix(resp.loc, "/verify-phone?") {
		b.t.Fatalf("register: %d %q\n%s", resp.status, resp.loc, resp.body)
	}
	u, _ := url.Parse(resp.loc)
	return u.Query().Get("u")
}

// mailbox returns the newest link or code sent to to.
func (b *browser) mailbox(to string, re *regexp.Regexp) string {
	b.t.Helper()
	p := b.get(MailboxPath + "?to=" + url.QueryEscape(to))
	m := re.FindStringSubmatch(p.body)
	if p.status != 200 || m == nil {
		b.t.Fatalf("mailbox for %s: %d\n%s", to, p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

func (e *env) profile(t *testing.T, uid string) *protocol.UserProfile {
	t.Helper()
	m, err := e.node.Request(context.Background(), user.KindName, user.ID(tenant, uid), &protocol.GetProfile{})
	if err != nil {
		t.Fatal(err)
	}
	return m.(*protocol.UserProfile)
}

// verify runs the e-mail link and the phone code for a registration made
// in b.
func (b *browser) verify(p person, uid string) {
	b.t.Helper()
	link := b.mailbox(p.email, linkRE2)
	lu, _ := url.Parse(link)
	confirm := b.get(lu.RequestURI())
	if confirm.status != 200 {
		b.t.Fatalf("verify-email answer: %d\n%s", confirm.status, confirm.body)
	}
	done := b.post("/verify-email", url.Values{"csrf": {confirm.csrf(b.t)}, "u": {lu.Query().Get("u")}, "t": {lu.Query().Get("t")}})
	if done.status != 200 || !done.has("e-mail address is confirmed") {
		b.t.Fatalf("confirm e-mail: %d\n%s", done.status, done.body)
	}
	code := b.mailbox(p.phone, codeRE2)
	form := b.get("/verify-phone?u=" + uid)
	res := b.post("/verify-phone", url.Values{"csrf": {form.csrf(b.t)}, "u": {uid}, "code": {code}})
	if res.status != 200 || !res.has("Your account is ready") {
		b.t.Fatalf("phone code: %d\n%s", res.status, res.body)
	}
}

func (b *browser) signIn(p person) answer {
	b.t.Helper()
	form := b.get("/account/login")
	return b.post("/account/login", url.Values{"csrf": {form.csrf(b.t)}, "email": {p.email}, "password": {p.password}})
}

// TestRegisterVerifyAndAccount is the whole path of a new person: register,
// the link (a GET alone verifies nothing), a wrong then the right code,
// sign in, see the profile and sessions, revoke one, log out.
func TestRegisterVerifyAndAccount(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	p := newPerson()
	uid := b.register(p)
	prof := e.profile(t, uid)
	if prof.GetEmail() != p.email || prof.GetPhone() != strings.ReplaceAll(p.phone, " ", "") || !prof.GetHasPassword() ||
		prof.GetStatus().GetState() != protocol.UserState_USER_STATE_PENDING_VERIFICATION {
		t.Fatalf("after registration: %v", prof)
	}
	if c := b.cookies[csrfCookie]; c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("CSRF cookie flags: %+v", c)
	}

	// The link's GET shows a button and verifies nothing.
	link := b.mailbox(p.email, linkRE2)
	lu, _ := url.Parse(link)
	if !strings.HasPrefix(link, e.srv.URL+"/verify-email?") {
		t.Fatalf("magic link %q", link)
	}
	pg := b.get(lu.RequestURI())
	if pg.status != 200 || e.profile(t, uid).GetStatus().GetEmailVerified() {
		t.Fatalf("GET of the magic link: %d, verified %v", pg.status, e.profile(t, uid).GetStatus().GetEmailVerified())
	}
	csp := pg.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "style-src 'nonce-") || !strings.Contains(csp, "default-src 'none'") || pg.header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("headers: %v", pg.header)
	}
	// A tampered token is refused and changes nothing.
	bad := b.post("/verify-email", url.Values{"csrf": {pg.csrf(t)}, "u": {uid}, "t": {strings.Repeat("A", 43)}})
	if bad.status != 400 || !bad.has("not valid") || e.profile(t, uid).GetStatus().GetEmailVerified() {
		t.Fatalf("tampered token: %d\n%s", bad.status, bad.body)
	}
	ok := b.post("/verify-email", url.Values{"csrf": {pg.csrf(t)}, "u": {uid}, "t": {lu.Query().Get("t")}})
	if ok.status != 200 || !ok.has("Now enter the code") {
		t.Fatalf("confirm: %d\n%s", ok.status, ok.body)
	}
	again := b.post("/verify-email", url.Values{"csrf": {pg.csrf(t)}, "u": {uid}, "t": {lu.Query().Get("t")}})
	if again.status != 200 || !again.has("already confirmed") {
		t.Fatalf("second confirm: %d\n%s", again.status, again.body)
	}

	// Phone: only from the registering browser; a wrong code costs a try.
	other := e.browser(t)
	if pg := other.get("/verify-phone?u=" + uid); pg.status != http.StatusForbidden {
		t.Fatalf("phone answer from another browser: %d", pg.status)
	}
	code := b.mailbox(p.phone, codeRE2)
	form := b.get("/verify-phone?u=" + uid)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	res := b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {wrong}})
	if res.status != 400 || !res.has("4 tries left") {
		t.Fatalf("wrong code: %d\n%s", res.status, res.body)
	}
	res = b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {"12ab"}})
	if res.status != 400 || !res.has("6-digit code") {
		t.Fatalf("malformed code: %d\n%s", res.status, res.body)
	}
	res = b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {code}})
	if res.status != 200 || !res.has("Your account is ready") {
		t.Fatalf("right code: %d\n%s", res.status, res.body)
	}
	if st := e.profile(t, uid).GetStatus(); st.GetState() != protocol.UserState_USER_STATE_ACTIVE {
		t.Fatalf("state after both checks: %v", st)
	}

	// The dev mailbox shows both, as captured.
	mb := b.get(MailboxPath + "?to=" + url.QueryEscape(p.email))
	if !mb.has("sent to dev mailbox") {
		t.Fatalf("mailbox: %s", mb.body)
	}

	// Account answer: sign in twice (two browsers), revoke the other one.
	if pg := b.get("/account"); pg.status != http.StatusSeeOther || pg.loc != "/account/login" {
		t.Fatalf("account without sign-in: %d %q", pg.status, pg.loc)
	}
	wrongPw := p
	wrongPw.password = "not-the-password-at-all"
	if res := b.signIn(wrongPw); res.status != http.StatusUnauthorized || !res.has("not right") {
		t.Fatalf("wrong password: %d\n%s", res.status, res.body)
	}
	if res := b.signIn(p); res.status != http.StatusSeeOther || res.loc != "/account" {
		t.Fatalf("sign in: %d %q\n%s", res.status, res.loc, res.body)
	}
	c := b.cookies[accountCookie]
	if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/account" {
		t.Fatalf("account cookie flags: %+v", c)
	}
	if res := other.signIn(p); res.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", res.status)
	}
	acc := b.get("/account")
	if acc.status != 200 || !acc.has(p.email) || !acc.has("Grace Hopper") || strings.Count(acc.body, `class="session"`) != 2 || !acc.has("(this browser)") {
		t.Fatalf("account answer: %d\n%s", acc.status, acc.body)
	}
	otherSid := strings.SplitN(other.cookies[accountCookie].Value, ".", 2)[0]
	// Forged CSRF: refused, nothing revoked.
	if res := b.post("/account/sessions/revoke", url.Values{"csrf": {"forged"}, "session": {otherSid}}); res.status != http.StatusForbidden {
		t.Fatalf("revoke with a forged token: %d", res.status)
	}
	// A token from the other browser's session does not work here.
	otherAcc := other.get("/account")
	if res := b.post("/account/sessions/revoke", url.Values{"csrf": {otherAcc.csrf(t)}, "session": {otherSid}}); res.status != http.StatusForbidden {
		t.Fatalf("revoke with another session's token: %d", res.status)
	}
	if res := b.post("/account/sessions/revoke", url.Values{"csrf": {acc.csrf(t)}, "session": {otherSid}}); res.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", res.status, res.body)
	}
	if pg := other.get("/account"); pg.status != http.StatusSeeOther {
		t.Fatalf("revoked browser still sees the account: %d", pg.status)
	}
	if acc := b.get("/account?done=revoked"); strings.Count(acc.body, `class="session"`) != 1 || !acc.has("That session is signed out") {
		t.Fatalf("after revoke:\n%s", acc.body)
	}
	// Logout revokes the session: the old cookie is worthless afterwards.
	stolen := *b.cookies[accountCookie]
	if res := b.post("/account/logout", url.Values{"csrf": {acc.csrf(t)}}); res.status != 200 || !res.has("signed out") {
		t.Fatalf("logout: %d\n%s", res.status, res.body)
	}
	if _, still := b.cookies[accountCookie]; still {
		t.Fatal("logout left the cookie")
	}
	b.cookies[accountCookie] = &stolen
	if pg := b.get("/account"); pg.status != http.StatusSeeOther {
		t.Fatalf("replayed cookie after logout: %d", pg.status)
	}
	// A forged cookie (someone else's session id, no valid MAC) is refused.
	b.cookies[accountCookie] = &http.Cookie{Name: accountCookie, Value: otherSid + ".AAAA"}
	if pg := b.get("/account"); pg.status != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", pg.status)
	}
}

func lookup(t *testing.T, e *env, email string) error {
	_, err := e.node.Request(context.Background(), emailindex.KindName, emailindex.ID(tenant, email), &protocol.EmailLookup{})
	return err
}

func outboxCount(t *testing.T, e *env, to string) int {
	m, err := e.node.Request(context.Background(), outbox.KindName, tenant, &protocol.OutboxListMessages{To: to, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(m.(*protocol.OutboxList).GetMessages())
}

// TestRegisterBadInput: each refusal has a clear message and creates
// nothing (no reservation, no mail).
func TestRegisterBadInput(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	taken := newPerson()
	b.register(taken)

	for _, tc := range []struct {
		name   string
		edit   func(*person, url.Values)
		status int
		want   string
	}{
		{"taken e-mail", func(p *person, f url.Values) { f.Set("email", strings.ToUpper(taken.email)) }, http.StatusConflict, "already exists"},
		{"weak password", func(p *person, f url.Values) { f.Set("password", "password1") }, http.StatusBadRequest, "stronger password"},
		{"password with the name", func(p *person, f url.Values) { f.Set("password", "Hopper-Hopper-2024") }, http.StatusBadRequest, "stronger password"},
		{"missing field", func(p *person, f url.Values) { f.Del("last_name") }, http.StatusBadRequest, "Fill in every field"},
		{"bad phone", func(p *person, f url.Values) { f.Set("phone", "079 123") }, http.StatusBadRequest, "E.164"},
		{"bad e-mail", func(p *person, f url.Values) { f.Set("email", "grace@@example") }, http.StatusBadRequest, "not a valid address"},
		{"bad CSRF", func(p *person, f url.Values) { f.Set("csrf", "forged") }, http.StatusForbidden, "Form expired"},
		{"no CSRF", func(p *person, f url.Values) { f.Del("csrf") }, http.StatusForbidden, "Form expired"},
		{"oversized form", func(p *person, f url.Values) { f.Set("first_name", strings.Repeat("x", maxForm)) }, http.StatusRequestEntityTooLarge, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPerson()
			form := b.get("/register")
			f := p.form(form.csrf(t))
			tc.edit(&p, f)
			res := b.post("/register", f)
			if res.status != tc.status || !res.has(tc.want) {
				t.Fatalf("%d, want %d with %q\n%s", res.status, tc.status, tc.want, res.body)
			}
			if tc.name == "taken e-mail" {
				if n := outboxCount(t, e, taken.email); n != 1 {
					t.Fatalf("taken e-mail: %d mails to it, want the first registration's 1", n)
				}
				return
			}
			if err := lookup(t, e, p.email); actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
				t.Fatalf("address reserved after a refused registration: %v", err)
			}
			if n := outboxCount(t, e, p.email); n != 0 {
				t.Fatalf("%d messages queued for a refused registration", n)
			}
			// What was typed (but the password) is kept in the form.
			if tc.status == http.StatusBadRequest && tc.name != "missing field" && !res.has(`value="Grace"`) {
				t.Fatalf("form not refilled:\n%s", res.body)
			}
		})
	}
	// A CSRF token of another form is refused.
	login := b.get("/account/login")
	if res := b.post("/register", newPerson().form(login.csrf(t))); res.status != http.StatusForbidden {
		t.Fatalf("login form's token on register: %d", res.status)
	}
	// A malformed or unknown link is refused without a form.
	for _, q := range []string{"u=x&t=y", "t=" + strings.Repeat("A", 43), "u=00000000-0000-4000-8000-000000000001&t=short"} {
		if pg := b.get("/verify-email?" + q); pg.status != 400 || strings.Contains(pg.body, "<form") {
			t.Fatalf("link %s: %d", q, pg.status)
		}
	}
	// Not a verified account: sign-in refused like a wrong password.
	pending := newPerson()
	b.register(pending)
	if res := b.signIn(pending); res.status != http.StatusUnauthorized {
		t.Fatalf("sign-in before verification: %d", res.status)
	}
}

// TestPhoneCodeResendAndBurn: five wrong codes burn the code; a new one
// works.
func TestPhoneCodeResendAndBurn(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	p := newPerson()
	uid := b.register(p)
	form := b.get("/verify-phone?u=" + uid)
	first := b.mailbox(p.phone, codeRE2)
	wrong := "000000"
	if first == wrong {
		wrong = "111111"
	}
	var res answer
	for i := 0; i < user.MaxPhoneAttempts; i++ {
		res = b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {wrong}})
	}
	if res.status != 400 || !res.has("last try") {
		t.Fatalf("fifth wrong code: %d\n%s", res.status, res.body)
	}
	res = b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {first}})
	if res.status != 400 || !res.has("expired or was used up") {
		t.Fatalf("the burnt code: %d\n%s", res.status, res.body)
	}
	resend := regexp.MustCompile(`id="resend">\s*<input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(form.body)
	if resend == nil {
		t.Fatalf("no resend form:\n%s", form.body)
	}
	res = b.post("/verify-phone/resend", url.Values{"csrf": {html.UnescapeString(resend[1])}, "u": {uid}})
	if res.status != 200 || !res.has("new code") {
		t.Fatalf("resend: %d\n%s", res.status, res.body)
	}
	if n := outboxCount(t, e, strings.ReplaceAll(p.phone, " ", "")); n != 2 {
		t.Fatalf("%d SMS after a resend, want 2", n)
	}
	// The new code is live: asking again at once sends nothing (429, the
	// account's resend rule) and says so.
	again := regexp.MustCompile(`id="resend">\s*<input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(res.body)
	if again == nil {
		t.Fatalf("no resend form after a resend:\n%s", res.body)
	}
	res = b.post("/verify-phone/resend", url.Values{"csrf": {html.UnescapeString(again[1])}, "u": {uid}})
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" || !res.has("No new code was sent") {
		t.Fatalf("resend while a code is live: %d Retry-After %q\n%s", res.status, res.header.Get("Retry-After"), res.body)
	}
	if n := outboxCount(t, e, strings.ReplaceAll(p.phone, " ", "")); n != 2 {
		t.Fatalf("%d SMS after a refused resend, want 2", n)
	}
	code := b.mailbox(p.phone, codeRE2)
	res = b.post("/verify-phone", url.Values{"csrf": {form.csrf(t)}, "u": {uid}, "code": {code}})
	if res.status != 200 || !res.has("Phone number is confirmed") && !res.has("phone number is confirmed") {
		t.Fatalf("new code: %d\n%s", res.status, res.body)
	}
}
