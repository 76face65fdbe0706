package main

// The registration pages end to end: a real `ward dev` process, Debian's
// Chromium driven by chromedp through registration, the dev mailbox, the
// magic link and the SMS code, then an OpenID Connect sign-in of the new
// account by a real relying party.

import (
	"context"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestWebRegistrationWithBrowser(t *testing.T) {
	base, demo := devNode(t)
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("needs Debian's chromium: ", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath("chromium"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// Lowercase: the user actor stores addresses lowercased.
	email := "ada.x" + strings.ToLower(randomToken(6)) + "@example.com"
	phone := "+41 79 555 12 34"
	pw := "orbit-" + randomToken(12)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}

	// Register.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/register"),
		chromedp.WaitVisible(chromedp.ID("first_name")),
		chromedp.SendKeys(chromedp.ID("first_name"), "Ada"),
		chromedp.SendKeys(chromedp.ID("last_name"), "Lovelace"),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("phone"), phone),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("code")),
	)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	phonePage, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}

	// The magic link from the dev mailbox; the landing page only verifies
	// on the button.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/dev/mailbox?to="+url.QueryEscape(email)),
		chromedp.WaitVisible(chromedp.CSS("a.link")),
	)
	if err != nil {
		t.Fatalf("mailbox: %v", err)
	}
	href, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("a.link"), "href"))
	link := href.Value
	if err != nil || !strings.HasPrefix(link, base+"/verify-email?") {
		t.Fatalf("mailbox link %q: %v", link, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("message")),
	)
	if err != nil {
		t.Fatalf("confirm e-mail: %v", err)
	}
	if m := text("#message"); !strings.Contains(m, "e-mail address is confirmed") {
		t.Fatalf("after the link: %q", m)
	}

	// The SMS code from the dev mailbox; a wrong one first.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/dev/mailbox?to="+url.QueryEscape(phone)),
		chromedp.WaitVisible(chromedp.CSS(".code")),
	)
	if err != nil {
		t.Fatalf("mailbox code: %v", err)
	}
	code := text(".code")
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Fatalf("code %q", code)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(phonePage),
		chromedp.WaitVisible(chromedp.ID("code")),
		chromedp.SendKeys(chromedp.ID("code"), wrong),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if err != nil {
		t.Fatalf("wrong code: %v", err)
	}
	if e := text("#error"); !strings.Contains(e, "not right") {
		t.Fatalf("wrong code answer: %q", e)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("message")),
	)
	if err != nil {
		t.Fatalf("right code: %v", err)
	}
	if m := text("#message"); !strings.Contains(m, "Your account is ready") {
		t.Fatalf("after the code: %q", m)
	}

	// The account page shows the new person.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/account/login"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("profile")),
	)
	if err != nil {
		t.Fatalf("account sign-in: %v", err)
	}
	if n := text("#name"); n != "Ada Lovelace" {
		t.Fatalf("account name %q", n)
	}

	// And the new account signs in to a relying party through the provider.
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	web := demo.client("demo-web")
	conf := &oauth2.Config{ClientID: web.ID, Endpoint: provider.Endpoint(), RedirectURL: web.RedirectURIs[0],
		Scopes: []string{gooidc.ScopeOpenID, "email"}}
	verifier := oauth2.GenerateVerifier()
	cb := browserLogin(t, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), web.RedirectURIs[0], email, pw)
	tok, err := conf.Exchange(context.Background(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	ui, err := provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok))
	if err != nil || ui.Email != email {
		t.Fatalf("userinfo %+v: %v", ui, err)
	}
}
