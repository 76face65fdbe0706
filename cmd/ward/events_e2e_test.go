package main

// The domain event feed end to end on a real `ward dev` node: what the demo
// seeding did is in the tenant's feed, read by a real OAuth2 client's
// service token; the stream delivers a live event and resumes after
// Last-Event-ID without repeating or skipping.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wardhq/ward/actors/user"
)

type feedEvent struct {
	Seq     uint64         `json:"seq"`
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Tenant  string         `json:"tenant"`
	Subject string         `json:"subject"`
	Data    map[string]any `json:"data"`
}

// sseEvent is one event read off a stream: its id line and its JSON.
type sseEvent struct {
	id   string
	name string
	ev   feedEvent
}

// readSSE reads events off an event stream until stop says so or ctx ends.
func readSSE(t *testing.T, body io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name == "" && cur.id == "" {
				continue
			}
			out = append(out, cur)
			if stop(cur) {
				return out
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.ev); err != nil && cur.name != "gap" {
				t.Fatalf("stream data %q: %v", line, err)
			}
		}
	}
	t.Fatalf("stream ended before the expected events (err %v); read %d", sc.Err(), len(out))
	return nil
}

func TestEventFeedEndToEnd(t *testing.T) {
	base, demo := devNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	svc := demo.client("demo-service")
	reader := (&clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: provider.Endpoint().TokenURL,
		Scopes: []string{"events:read"}}).Client(ctx)
	noScope := (&clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: provider.Endpoint().TokenURL,
		Scopes: []string{"vitals.read"}}).Client(ctx)

	get := func(c *http.Client, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := get(noScope, "/identity/events"); code != http.StatusForbidden {
		t.Fatalf("token without events:read: %d %s", code, b)
	}
	if code, b := get(http.DefaultClient, "/identity/events"); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", code, b)
	}

	// The seeding's events reach the feed (relayed from the partitions):
	// the tenant, every demo user's registration, their roles.
	var page struct {
		Events []feedEvent `json:"events"`
		Head   uint64      `json:"head"`
	}
	want := map[string]bool{"identity.tenant.created.v1 " + demo.Tenant: false}
	for _, u := range demo.Users {
		want["identity.user.registered.v1 "+u.Subject] = false
		want["identity.membership.granted.v1 "+u.Subject] = false
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := get(reader, "/identity/events?limit=500")
		if code != 200 {
			t.Fatalf("events: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i, e := range page.Events {
			if e.Tenant != demo.Tenant || e.Seq != page.Events[0].Seq+uint64(i) {
				t.Fatalf("event %d out of shape or order: %+v", i, e)
			}
			seen[e.Type+" "+e.Subject] = true
		}
		missing := []string{}
		for k := range want {
			if !seen[k] {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("feed lacks %v after 30s (has %d events)", missing, len(page.Events))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Live: a stream from the head sees the events of a user locked out by
	// failed sign-ins on the account page.
	stream := func(lastID string) (*http.Response, context.CancelFunc) {
		sctx, scancel := context.WithTimeout(ctx, 45*time.Second)
		req, _ := http.NewRequestWithContext(sctx, http.MethodGet, base+"/identity/events/stream", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := reader.Do(req)
		if err != nil {
			scancel()
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			scancel()
			t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return resp, scancel
	}
	resp, scancel := stream(strconv.FormatUint(page.Head, 10))
	user := demo.user("nurse")
	lockOut(t, ctx, base, user.Email)
	got := readSSE(t, resp.Body, func(e sseEvent) bool {
		return e.name == "identity.user.locked.v1" && e.ev.Subject == user.Subject
	})
	resp.Body.Close()
	scancel()
	for _, e := range got {
		if n, err := strconv.ParseUint(e.id, 10, 64); err != nil || n <= page.Head || e.ev.Seq != n {
			t.Fatalf("stream event id %q (seq %d) not after head %d", e.id, e.ev.Seq, page.Head)
		}
	}

	locked := got[len(got)-1]
	if locked.ev.Data["user_id"] != user.Subject || locked.ev.Data["reason"] != "failed_logins" {
		t.Fatalf("locked event data: %v", locked.ev.Data)
	}

	// Resume: Last-Event-ID one before the locked event: the stream starts
	// with exactly that event, nothing repeated, nothing skipped.
	seq, _ := strconv.ParseUint(locked.id, 10, 64)
	resp, scancel = stream(strconv.FormatUint(seq-1, 10))
	next := readSSE(t, resp.Body, func(sseEvent) bool { return true })
	resp.Body.Close()
	scancel()
	if next[0].id != locked.id || next[0].ev.ID != locked.ev.ID {
		t.Fatalf("resumed after %d at %s (%s), want %s (%s)", seq-1, next[0].id, next[0].ev.ID, locked.id, locked.ev.ID)
	}
}

// lockOut fails the account page's sign-in for email until the account
// locks (user.LockAfter wrong passwords).
func lockOut(t *testing.T, ctx context.Context, base, email string) {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i := range user.LockAfter {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/account/login", nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, rest, _ := strings.Cut(string(body), `name="csrf" value="`)
		csrf, _, _ := strings.Cut(rest, `"`)
		form := url.Values{"csrf": {csrf}, "email": {email}, "password": {"not the password"}}
		post, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/account/login", strings.NewReader(form.Encode()))
		post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		// The CSRF cookie is Secure; a cookie jar would not send it over
		// plain http to loopback.
		for _, c := range resp.Cookies() {
			post.AddCookie(c)
		}
		presp, err := noFollow.Do(post)
		if err != nil {
			t.Fatal(err)
		}
		presp.Body.Close()
		if presp.StatusCode != http.StatusUnauthorized && presp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("wrong password %d: %d", i+1, presp.StatusCode)
		}
	}
}
