package oidcbench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	passwordbench "github.com/wardhq/ward/bench/password"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/clustertest"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/oidc"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

// Run: go test ./bench/oidc -run '^$' -bench . -benchtime 1x [-tags openssl]
//
// Each benchmark is one fixed-duration load run (-load.d) after a warm-up,
// whatever b.N is; -benchtime 1x keeps the framework from repeating it.

var (
	loadDur    = flag.Duration("load.d", 10*time.Second, "measured duration of each load run")
	loadWarm   = flag.Duration("load.warmup", 2*time.Second, "warm-up before each load run, not counted")
	loadClient = flag.Int("load.c", 16, "concurrent clients for the token and refresh runs")
)

const (
	svcSecret    = "bench-secret-bench-secret-bench-secret"
	redirectURI  = "http://127.0.0.1:9/cb"
	pkceVerifier = "ward-bench-pkce-verifier-0123456789-abcdefghijklmnop"
	userPassword = "tangerine-oboe-47-violet"
)

var pkceChallenge = func() string {
	s := sha256.Sum256([]byte(pkceVerifier))
	return base64.RawURLEncoding.EncodeToString(s[:])
}()

// bench is a one-node cluster with two providers over it, one signing RS256
// and one ES256, each on its own loopback HTTP server, and a Hasher with the
// production parameters (argon2id m=64 MiB t=3 p=1).
type bench struct {
	node   *cluster.Node
	hasher *password.Hasher
	srv    map[protocol.KeyAlg]*httptest.Server
}

var (
	shared     *bench
	sharedOnce sync.Once
	sharedErr  error
)

// stopNode stops the shared node and removes its data.
var stopNode func()

func TestMain(m *testing.M) {
	flag.Parse()
	// op logs refused requests through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	code := m.Run()
	if stopNode != nil {
		stopNode()
	}
	if stopCluster3 != nil {
		stopCluster3()
	}
	os.Exit(code)
}

func provider(b *testing.B) *bench {
	b.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		b.Fatal(sharedErr)
	}
	return shared
}

func start() (*bench, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, stop, err := clustertest.OneNode(authrequest.Kind, session.Kind, usersessions.Kind, user.Kind, emailindex.Kind, consent.Kind, assertion.Kind)
	if err != nil {
		return nil, err
	}
	stopNode = stop
	ctx := context.Background()
	for _, c := range []*protocol.OIDCClient{
		{Id: "web", Public: true, DevMode: true, FirstParty: true, RedirectUris: []string{redirectURI}, GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}, Scopes: []string{"email"}},
		{Id: "svc", SecretSha256: oidcclient.HashSecret(svcSecret), GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}},
	} {
		b, _ := proto.Marshal(c)
		if err := n.PutMetaValue(ctx, oidcclient.Key(c.Id), b); err != nil {
			return nil, err
		}
	}
	hasher, err := password.New(password.Config{Params: password.DefaultParams()})
	if err != nil {
		return nil, err
	}
	bn := &bench{node: n, hasher: hasher, srv: map[protocol.KeyAlg]*httptest.Server{}}
	var secret [32]byte
	copy(secret[:], "0123456789abcdef0123456789abcdef")
	for _, alg := range []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_RS256, protocol.KeyAlg_KEY_ALG_ES256} {
		var h http.Handler
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
		h, err = oidc.New(oidc.Config{Issuer: srv.URL, Insecure: true, Actors: n, Meta: n, Keys: n, Passwords: hasher,
			Secret: secret, SigningAlg: alg, Logger: log})
		if err != nil {
			return nil, err
		}
		bn.srv[alg] = srv
	}
	return bn, nil
}

var algs = []struct {
	name  string
	proto protocol.KeyAlg
	jose  jose.Alg
}{
	{"RS256", protocol.KeyAlg_KEY_ALG_RS256, jose.RS256},
	{"ES256", protocol.KeyAlg_KEY_ALG_ES256, jose.ES256},
}

// signTime is the median time of one access-token signature (jose.Sign of
// a typical claim set) with a fresh key of alg on the compiled-in backend,
// one goroutine.
func signTime(b *testing.B, alg jose.Alg) time.Duration {
	var priv crypto.Signer
	var err error
	if alg == jose.RS256 {
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		b.Fatal(err)
	}
	key, err := jose.NewSigningKey("bound", alg, priv)
	if err != nil {
		b.Fatal(err)
	}
	defer key.Close()
	now := time.Now()
	claims := map[string]any{"iss": "http://127.0.0.1:1", "sub": "svc", "aud": []string{"svc"}, "client_id": "svc",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "jti": uuid.NewString(), "scope": "vitals.read"}
	n := 300
	if alg == jose.RS256 {
		n = 100
	}
	times := make([]time.Duration, 0, n)
	for range n + 10 {
		t := time.Now()
		if _, err := jose.Sign(key, jose.TypAccessToken, claims); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t))
	}
	times = times[10:] // warm-up
	slices.Sort(times)
	return Percentile(times, 0.5)
}

func report(b *testing.B, r Result, unit string, bound float64) {
	b.Helper()
	if r.OK == 0 || r.Failed > 0 {
		b.Fatalf("load run: %s", r)
	}
	b.ReportMetric(r.PerSecond(), unit+"/s")
	b.ReportMetric(float64(r.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.P99.Microseconds())/1000, "p99-ms")
	if r.Refused > 0 {
		b.ReportMetric(float64(r.Refused), "refused")
	}
	if bound > 0 {
		b.ReportMetric(bound, "bound-"+unit+"/s")
		b.ReportMetric(100*r.PerSecond()/bound, "%-of-bound")
	}
	b.ReportMetric(0, "ns/op") // one load run per benchmark: ns/op means nothing
	b.Logf("%s: %s", b.Name(), r)
}

// BenchmarkClientCredentials: client_credentials tokens from 16 clients
// over loopback HTTP (HTTP Basic client authentication, one kept-alive
// connection each), per signing alg, on the compiled-in RS256 backend
// (jose.Backend). The bound is cores / one signature's time.
func BenchmarkClientCredentials(b *testing.B) {
	p := provider(b)
	for _, a := range algs {
		b.Run(a.name+"/"+jose.Backend, func(b *testing.B) {
			srv := p.srv[a.proto]
			hc := Client(*loadClient)
			op := ClientCredentials(hc, srv.URL+"/oauth/token", "svc", svcSecret, url.Values{"scope": {"vitals.read"}})
			checkTokenAlg(b, hc, srv.URL+"/oauth/token", a.name)
			sign := signTime(b, a.jose)
			bound := float64(runtime.NumCPU()) / sign.Seconds()
			r := Run(context.Background(), *loadClient, *loadWarm, *loadDur, op)
			b.ReportMetric(float64(sign.Nanoseconds())/1000, "sign-µs")
			report(b, r, "tokens", bound)
		})
	}
}

func checkTokenAlg(b *testing.B, hc *http.Client, tokenURL, want string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader("grant_type=client_credentials&scope=vitals.read"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", svcSecret)
	out, err := PostJSON(hc, req)
	if err != nil {
		b.Fatal(err)
	}
	if got := TokenAlg(out["access_token"].(string)); got != want {
		b.Fatalf("access token alg %q, want %q", got, want)
	}
}

// registerUser creates an active user with a password (production argon2id
// parameters) in the default tenant, as a registration does.
func registerUser(ctx context.Context, p *bench, email string) error {
	sub := uuid.NewString()
	id := user.ID("default", sub)
	if _, err := p.node.Request(ctx, emailindex.KindName, emailindex.ID("default", email), &protocol.EmailReserve{UserId: sub}); err != nil {
		return err
	}
	m, err := p.node.Request(ctx, user.KindName, id, &protocol.RegisterUser{FirstName: "Ada", LastName: "Bench", Phone: "+4930123456", Email: email})
	if err != nil {
		return err
	}
	if _, err := p.node.Request(ctx, user.KindName, id, &protocol.VerifyEmail{Token: m.(*protocol.UserRegistration).GetEmailVerification().GetToken()}); err != nil {
		return err
	}
	m, err = p.node.Request(ctx, user.KindName, id, &protocol.StartPhoneVerification{})
	if err != nil {
		return err
	}
	if _, err := p.node.Request(ctx, user.KindName, id, &protocol.VerifyPhone{Code: m.(*protocol.PhoneVerificationIssued).GetCode()}); err != nil {
		return err
	}
	phc, err := p.hasher.Hash(ctx, userPassword)
	if err != nil {
		return err
	}
	_, err = p.node.Request(ctx, user.KindName, id, &protocol.SetPassword{Phc: phc})
	return err
}

var (
	usersOnce sync.Once
	usersErr  error
)

const nUsers = 16

func userEmail(i int) string { return fmt.Sprintf("bench%02d@example.test", i) }

func users(b *testing.B, p *bench) {
	b.Helper()
	usersOnce.Do(func() {
		for i := range nUsers {
			if usersErr = registerUser(context.Background(), p, userEmail(i)); usersErr != nil {
				return
			}
		}
	})
	if usersErr != nil {
		b.Fatal(usersErr)
	}
}

// loginForm is an authorization request's login form: its fields and the
// CSRF cookie, as a browser holds them after GET /authorize and GET /login.
type loginForm struct {
	form   url.Values
	cookie string
}

func location(base string, resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("status %d without Location", resp.StatusCode)
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	return u.Parse(loc)
}

func openLoginForm(hc *http.Client, base string) (loginForm, error) {
	q := url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid offline_access"}, "redirect_uri": {redirectURI},
		"code_challenge": {pkceChallenge}, "code_challenge_method": {"S256"}, "state": {"s"}}
	resp, err := hc.Get(base + "/authorize?" + q.Encode())
	if err != nil {
		return loginForm{}, err
	}
	resp.Body.Close()
	loc, err := location(base, resp)
	if err != nil {
		return loginForm{}, fmt.Errorf("authorize: %w", err)
	}
	id := loc.Query().Get("authRequestID")
	resp, err = hc.Get(base + "/login?authRequestID=" + url.QueryEscape(id))
	if err != nil {
		return loginForm{}, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "ward_csrf" {
			cookie = c.Name + "=" + c.Value
		}
	}
	_, rest, _ := strings.Cut(string(body), `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	if cookie == "" || csrf == "" {
		return loginForm{}, fmt.Errorf("login form %d without CSRF pair", resp.StatusCode)
	}
	return loginForm{form: url.Values{"authRequestID": {id}, "csrf": {csrf}}, cookie: cookie}, nil
}

// submitLogin posts the form and returns the callback URL it redirects to.
func submitLogin(hc *http.Client, base string, f loginForm, email string) (*url.URL, error) {
	form := url.Values{"email": {email}, "password": {userPassword}}
	for k, v := range f.form {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", f.cookie)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil, fmt.Errorf("POST /login: %w", ErrRefused)
	}
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("POST /login: status %d", resp.StatusCode)
	}
	return location(base, resp)
}

// codeFlow signs in through the whole authorization code flow and returns
// the refresh token.
func codeFlow(hc *http.Client, base, email string) (string, error) {
	f, err := openLoginForm(hc, base)
	if err != nil {
		return "", err
	}
	cb, err := submitLogin(hc, base, f, email)
	for i := 0; errors.Is(err, ErrRefused) && i < 10; i++ {
		// The Hasher is busy (another process loads the machine): retry
		// the same form after a pause, as a person would.
		time.Sleep(time.Second)
		cb, err = submitLogin(hc, base, f, email)
	}
	if err != nil {
		return "", err
	}
	resp, err := hc.Get(cb.String())
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	loc, err := location(base, resp)
	if err != nil {
		return "", fmt.Errorf("callback: %w", err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		return "", fmt.Errorf("callback redirect without code: %s", loc)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
		"client_id": {"web"}, "code_verifier": {pkceVerifier}}
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out, err := PostJSON(hc, req)
	if err != nil {
		return "", fmt.Errorf("code exchange: %w", err)
	}
	rt, _ := out["refresh_token"].(string)
	if rt == "" {
		return "", errors.New("code exchange without refresh_token")
	}
	return rt, nil
}

// codeFlows signs in n sessions with flow, at most 4×cores at once (the
// Hasher's slots plus its queue, so admission control refuses none),
// reports codeflows/s and the p50 of one flow, and returns the refresh
// tokens.
func codeFlows(b *testing.B, n int, flow func(i int) (string, error)) []string {
	tokens := make([]string, n)
	flows := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4*runtime.NumCPU())
	t0 := time.Now()
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t := time.Now()
			tokens[i], errs[i] = flow(i)
			flows[i] = time.Since(t)
		}()
	}
	wg.Wait()
	all := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	slices.Sort(flows)
	b.ReportMetric(float64(len(flows))/all.Seconds(), "codeflows/s")
	b.ReportMetric(float64(Percentile(flows, 0.5).Microseconds())/1000, "codeflow-p50-ms")
	return tokens
}

// BenchmarkRefreshRotation: 16 sessions are made through the authorization
// code flow (authorize, login form, POST /login with argon2id, callback,
// code exchange with PKCE), 4×cores at a time, reported as codeflow-*; then 16
// clients each rotate their own refresh token (refresh_token grant: one
// session actor step committed through raft and pebble, a new access token
// and ID token signed) for the load duration.
func BenchmarkRefreshRotation(b *testing.B) {
	p := provider(b)
	users(b, p)
	for _, a := range algs {
		b.Run(a.name+"/"+jose.Backend, func(b *testing.B) {
			base := p.srv[a.proto].URL
			hc := Client(*loadClient)
			tokens := codeFlows(b, *loadClient, func(i int) (string, error) { return codeFlow(hc, base, userEmail(i%nUsers)) })
			var mu sync.Mutex
			op := func(_ context.Context, c int) error {
				mu.Lock()
				rt := tokens[c]
				mu.Unlock()
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"web"}}
				req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				out, err := PostJSON(hc, req)
				if err != nil {
					return err
				}
				next, _ := out["refresh_token"].(string)
				if next == "" || next == rt || out["access_token"] == nil {
					return errors.New("refresh answer without a new refresh token")
				}
				mu.Lock()
				tokens[c] = next
				mu.Unlock()
				return nil
			}
			r := Run(context.Background(), *loadClient, *loadWarm, *loadDur, op)
			report(b, r, "rotations", 0)
		})
	}
}

// BenchmarkPasswordLogin: POST /login with the right password (e-mail
// lookup, credentials read, argon2id m=64 MiB t=3 p=1 verification through
// the Hasher's admission control, login recorded, authorization request
// completed, redirect), each on a fresh authorization request whose form
// (GET /authorize, GET /login) is opened before the timed run. clients=cores
// shows the unqueued latency; clients=4×cores keeps every hash slot busy
// while staying inside the Hasher's queue (MaxQueue 4×cores), so nothing
// should be refused (a 503 counts as refused, not as a login, and is
// reported). The bound is the sum over CPUs of 1 / that CPU's single-hash
// time (cores / one hash's time on equal CPUs), measured just before.
// parallel-hashes/s is bare hashing on every core at once, measured just
// before and just after; %-of-parallel-hashing is the login rate against it.
func BenchmarkPasswordLogin(b *testing.B) {
	p := provider(b)
	users(b, p)
	base := p.srv[protocol.KeyAlg_KEY_ALG_ES256].URL
	cores := runtime.NumCPU()
	for _, clients := range []int{cores, 4 * cores} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			perCPU, err := passwordbench.MeasurePerCPU(password.DefaultParams(), 3)
			if err != nil {
				b.Fatal(err)
			}
			bound := passwordbench.PerCPUBound(perCPU)
			hc := Client(clients)
			// Forms for 20 logins/s per core in warm-up and run, far above
			// any argon2id m=64 MiB rate (the measured single hash can be
			// slow when it is a fresh process's first).
			n := int(float64(20*cores)*(*loadDur+*loadWarm).Seconds()) + 4*clients
			forms := make(chan loginForm, n)
			for range n {
				f, err := openLoginForm(hc, base)
				if err != nil {
					b.Fatal(err)
				}
				forms <- f
			}
			op := func(ctx context.Context, c int) error {
				select {
				case f := <-forms:
					_, err := submitLogin(hc, base, f, userEmail(c%nUsers))
					return err
				default:
					<-ctx.Done() // no spinning: one failure per client
					return errors.New("out of prepared login forms")
				}
			}
			// What the cores sustain hashing together, just before and
			// just after the run (the machine's speed drifts), for the
			// share of the gap to the bound that is the machine's own.
			parallel := func() float64 {
				rate, err := passwordbench.MeasureParallel(password.DefaultParams(), cores, 8*cores)
				if err != nil {
					b.Fatal(err)
				}
				return rate
			}
			before := parallel()
			r := Run(context.Background(), clients, *loadWarm, *loadDur, op)
			hashing := (before + parallel()) / 2
			passwordbench.ReportPerCPU(b, perCPU)
			report(b, r, "logins", bound)
			b.ReportMetric(hashing, "parallel-hashes/s")
			b.ReportMetric(100*hashing/bound, "parallel-hashing-%-of-bound")
			b.ReportMetric(100*r.PerSecond()/hashing, "%-of-parallel-hashing")
		})
	}
}
