package identity

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/protocol"
)

// eventsKey creates an API key of tenant tid with scopes (by its admin) and
// returns it.
func (e *env) eventsKey(t *testing.T, tid, admin string, scopes ...string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"name": "feed", "scopes": scopes})
	a := e.call(t, "POST", "/identity/tenants/"+tid+"/api-keys", e.token(t, admin, tid, e.login(t, admin, tid), nil), strings.NewReader(string(b)))
	if a.status != 201 {
		t.Fatalf("create key: %d %s", a.status, a.raw)
	}
	var issued IssuedKey
	_ = json.Unmarshal(a.raw, &issued)
	return issued.Key
}

// appendEvents hands tid's eventlog entries at positions from..from+n-1 of
// source, in batches, as a partition relay would.
func (e *env) appendEvents(t *testing.T, tid, source string, from, n int) {
	t.Helper()
	for done := 0; done < n; {
		m := &protocol.EventLogAppend{Source: source}
		for ; done < n && len(m.Entries) < eventlog.MaxBatch; done++ {
			pos := from + done
			data, _ := protocol.Pack(&protocol.UserEventData{UserId: fmt.Sprintf("u%d", pos)})
			m.Entries = append(m.Entries, &protocol.FeedEntry{Position: uint64(pos), Event: &protocol.EventEnvelope{
				Id: fmt.Sprintf("%s-%s-%d", tid, source, pos), Type: "identity.user.registered.v1", Tenant: tid,
				Subject: fmt.Sprintf("u%d", pos), TimeUnixNano: time.Now().UnixNano(), Data: data,
			}})
		}
		e.request(t, eventlog.KindName, tid, m)
	}
}

func eventPage(t *testing.T, a answer) EventPage {
	t.Helper()
	if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("events: %d %s", a.status, a.raw)
	}
	var p EventPage
	if err := json.Unmarshal(a.raw, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEventsPage(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "p1", 1, 3)
	e.appendEvents(t, tid, "p2", 1, 2)
	e.appendEvents(t, tid, "p1", 2, 2) // a relay re-sends p1 2..3: duplicates, skipped

	p := eventPage(t, e.call(t, "GET", "/identity/events?limit=2", key, nil))
	if len(p.Events) != 2 || p.Head != 5 || p.Oldest != 1 || p.Gap || p.Next != 2 {
		t.Fatalf("first page: %+v", p)
	}
	ev := p.Events[0]
	if ev.Seq != 1 || ev.ID != tid+"-p1-1" || ev.Type != "identity.user.registered.v1" || ev.Tenant != tid || ev.Subject != "u1" ||
		time.Since(ev.Time) > time.Minute || string(ev.Data) != `{"user_id":"u1"}` {
		t.Fatalf("event: %+v data %s", ev, ev.Data)
	}
	p = eventPage(t, e.call(t, "GET", fmt.Sprintf("/identity/events?after=%d", p.Next), key, nil))
	if len(p.Events) != 3 || p.Events[0].Seq != 3 || p.Events[2].ID != tid+"-p2-2" || p.Next != 5 {
		t.Fatalf("second page: %+v", p)
	}
	// At the head: empty, and the cursor stays.
	p = eventPage(t, e.call(t, "GET", "/identity/events?after=5", key, nil))
	if len(p.Events) != 0 || p.Next != 5 || p.Head != 5 {
		t.Fatalf("at the head: %+v", p)
	}
	if a := e.call(t, "GET", "/identity/events?after=5", key, nil); !strings.Contains(string(a.raw), `"events":[]`) {
		t.Fatalf("empty page is not an empty list: %s", a.raw)
	}

	// The tenant's admin (a user token) and a service account with the
	// scope may read; the token's own tenant only.
	adminTok := e.token(t, admin, tid, e.login(t, admin, tid), nil)
	svc := e.token(t, "svc-client", tid, "", map[string]any{"sid": nil, "scope": "vitals.read " + EventsScope})
	for name, cred := range map[string]string{"admin": adminTok, "service account": svc} {
		if p := eventPage(t, e.call(t, "GET", "/identity/events", cred, nil)); len(p.Events) != 5 {
			t.Fatalf("%s: %+v", name, p)
		}
	}
}

func TestEventsRefused(t *testing.T) {
	e := newEnv(t)
	tid, admin, doctor := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	stranger := uuid.NewString()

	a := e.call(t, "GET", "/identity/events", "", nil)
	wantProblem(t, "no credential", a, http.StatusUnauthorized)
	if ch := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
		t.Fatalf("no credential: WWW-Authenticate %q", ch)
	}
	wantInvalidToken(t, "bad token", e.call(t, "GET", "/identity/events", "not-a-token", nil))
	wantInvalidToken(t, "bad token on the stream", e.call(t, "GET", "/identity/events/stream", "not-a-token", nil))

	for name, cred := range map[string]string{
		"key without the scope":     e.eventsKey(t, tid, admin, "vitals.read"),
		"service without the scope": e.token(t, "svc-client", tid, "", map[string]any{"sid": nil, "scope": "vitals.read"}),
		"service, no scope claim":   e.token(t, "svc-client", tid, "", map[string]any{"sid": nil}),
		"service, no tenant":        e.token(t, "svc-client", "", "", map[string]any{"sid": nil, "tid": nil, "scope": EventsScope}),
		"doctor (not admin)":        e.token(t, doctor, tid, e.login(t, doctor, tid), nil),
		"user of no tenant":         e.token(t, stranger, tid, e.login(t, stranger, tid), nil),
	} {
		wantProblem(t, name, e.call(t, "GET", "/identity/events", cred, nil), http.StatusForbidden)
		wantProblem(t, name+" on the stream", e.call(t, "GET", "/identity/events/stream", cred, nil), http.StatusForbidden)
	}

	for _, q := range []string{"after=abc", "after=-1", "limit=0", "limit=x", "limit=501", "limit=99999999999"} {
		wantProblem(t, q, e.call(t, "GET", "/identity/events?"+q, key, nil), http.StatusBadRequest)
	}
	wantProblem(t, "bad Last-Event-ID", e.call(t, "GET", "/identity/events/stream", key, nil, "Last-Event-ID", "x1"), http.StatusBadRequest)
	wantProblem(t, "bad after on the stream", e.call(t, "GET", "/identity/events/stream?after=x", key, nil), http.StatusBadRequest)
}

func TestEventsTenantIsolation(t *testing.T) {
	e := newEnv(t)
	tidA, adminA, _ := e.tenantWith(t)
	tidB, adminB, _ := e.tenantWith(t)
	keyA := e.eventsKey(t, tidA, adminA, EventsScope)
	keyB := e.eventsKey(t, tidB, adminB, EventsScope)
	e.appendEvents(t, tidA, "p1", 1, 2)
	e.appendEvents(t, tidB, "p3", 1, 3)

	for _, tc := range []struct {
		key, tid string
		n        int
	}{{keyA, tidA, 2}, {keyB, tidB, 3}} {
		p := eventPage(t, e.call(t, "GET", "/identity/events", tc.key, nil))
		if len(p.Events) != tc.n || p.Head != uint64(tc.n) {
			t.Fatalf("tenant %s: %+v", tc.tid, p)
		}
		for _, ev := range p.Events {
			if ev.Tenant != tc.tid || !strings.HasPrefix(ev.ID, tc.tid+"-") {
				t.Fatalf("tenant %s sees %+v", tc.tid, ev)
			}
		}
	}
	// A's admin token names tenant A: B's log is out of reach whatever the
	// query says, and B's events never appear in A's stream.
	events := readStream(t, e, keyA, "", 2, time.Second)
	for _, ev := range events {
		if ev.event != "identity.user.registered.v1" || !strings.Contains(ev.data, `"tenant":"`+tidA+`"`) {
			t.Fatalf("A's stream: %+v", ev)
		}
	}
}

func TestEventsGap(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "p1", 1, eventlog.MaxEvents+10)

	p := eventPage(t, e.call(t, "GET", "/identity/events?limit=1", key, nil))
	if !p.Gap || p.Oldest != 11 || p.Head != eventlog.MaxEvents+10 || len(p.Events) != 1 || p.Events[0].Seq != 11 || p.Next != 11 {
		t.Fatalf("behind the window: %+v", p)
	}
	p = eventPage(t, e.call(t, "GET", "/identity/events?after=10&limit=1", key, nil))
	if p.Gap || p.Events[0].Seq != 11 {
		t.Fatalf("at the window: %+v", p)
	}

	// The stream says gap first, then goes on from the oldest kept event.
	got := readStream(t, e, key, "?after=3", 3, 2*time.Second)
	if got[0].event != "gap" || !strings.Contains(got[0].data, `"oldest":11`) || got[0].id != "" || got[1].id != "11" || got[2].id != "12" {
		t.Fatalf("stream behind the window: %+v", got[:3])
	}
}

func TestEventsStream(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "p1", 1, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, e, key, "", "")
	defer s.close()
	if s.resp.StatusCode != 200 || s.resp.Header.Get("Content-Type") != "text/event-stream" || s.resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream answer: %d %v", s.resp.StatusCode, s.resp.Header)
	}
	for i := 1; i <= 3; i++ {
		ev := s.next(t)
		var body Event
		if err := json.Unmarshal([]byte(ev.data), &body); err != nil {
			t.Fatalf("event %d data: %q", i, ev.data)
		}
		if ev.id != fmt.Sprint(i) || ev.event != "identity.user.registered.v1" || body.Seq != uint64(i) || body.Tenant != tid || string(body.Data) != fmt.Sprintf(`{"user_id":"u%d"}`, i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	// New events reach a connected reader without it asking again.
	e.appendEvents(t, tid, "p2", 1, 2)
	if ev := s.next(t); ev.id != "4" {
		t.Fatalf("live event: %+v", ev)
	}
	if ev := s.next(t); ev.id != "5" {
		t.Fatalf("live event: %+v", ev)
	}
	// Idle: heartbeats.
	if ev := s.next(t); ev.comment != "ping" {
		t.Fatalf("idle stream: %+v", ev)
	}
	// The connection ends by itself (EventStreamMax) so clients reconnect.
	start := time.Now()
	for {
		ev, ok := s.read()
		if !ok {
			break
		}
		if ev.comment != "ping" {
			t.Fatalf("unexpected while idle: %+v", ev)
		}
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("stream did not end by itself within its bound")
	}

	// Resume with Last-Event-ID: only what came after.
	e.appendEvents(t, tid, "p1", 4, 1)
	r := openStream(t, ctx, e, key, "", "4")
	defer r.close()
	if ev := r.next(t); ev.id != "5" {
		t.Fatalf("resumed: %+v", ev)
	}
	if ev := r.next(t); ev.id != "6" || !strings.Contains(ev.data, `"id":"`+tid+`-p1-4"`) {
		t.Fatalf("resumed: %+v", ev)
	}
}

// sse is one Server-Sent Events message.
type sse struct{ id, event, data, comment string }

type stream struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openStream(t *testing.T, ctx context.Context, e *env, key, query, lastID string) *stream {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/identity/events/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return &stream{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

func (s *stream) close() { s.resp.Body.Close() }

// read returns the next message (skipping the retry hint), false at the
// end of the stream.
func (s *stream) read() (sse, bool) {
	var ev sse
	seen := false
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			if seen {
				return ev, true
			}
			continue
		}
		name, val, _ := strings.Cut(line, ":")
		val = strings.TrimPrefix(val, " ")
		switch name {
		case "":
			ev.comment = val
		case "id":
			ev.id = val
		case "event":
			ev.event = val
		case "data":
			ev.data = val
		case "retry":
			continue
		}
		seen = true
	}
	return ev, false
}

func (s *stream) next(t *testing.T) sse {
	t.Helper()
	ev, ok := s.read()
	if !ok {
		t.Fatalf("stream ended: %v", s.sc.Err())
	}
	return ev
}

// readStream reads n messages (not heartbeats) of a fresh stream within d.
func readStream(t *testing.T, e *env, key, query string, n int, d time.Duration) []sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	s := openStream(t, ctx, e, key, query, "")
	defer s.close()
	var out []sse
	for len(out) < n {
		ev := s.next(t)
		if ev.comment == "" {
			out = append(out, ev)
		}
	}
	return out
}
