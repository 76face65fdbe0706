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

// Test batches use sources ta, tb, tc: the partitions' relays use p<N>.
// The host relays the events the actors emit (tenant created, roles
// granted, sessions, keys) into the same logs, asynchronously; the tests
// pick out the events they appended by id (<tid>-<source>-<pos>) and check
// the rest only for order and tenant.
func mine(tid string, evs []Event) []string {
	var ids []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.ID, tid+"-") {
			ids = append(ids, strings.TrimPrefix(ev.ID, tid+"-"))
		}
	}
	return ids
}

// readAll pages through tid's log with limit until a page comes back empty.
func readAll(t *testing.T, e *env, cred, tid string, limit int) []Event {
	t.Helper()
	var all []Event
	var after uint64
	for {
		p := eventPage(t, e.call(t, "GET", fmt.Sprintf("/identity/events?after=%d&limit=%d", after, limit), cred, nil))
		if len(p.Events) > limit || p.Gap {
			t.Fatalf("page after %d: %+v", after, p)
		}
		for _, ev := range p.Events {
			if ev.Seq != after+1 || ev.Tenant != tid || ev.Seq > p.Head || p.Oldest != 1 {
				t.Fatalf("after %d: %+v in %+v", after, ev, p)
			}
			after = ev.Seq
			all = append(all, ev)
		}
		if p.Next != after {
			t.Fatalf("next %d, want %d", p.Next, after)
		}
		if len(p.Events) == 0 {
			return all
		}
	}
}

func TestEventsPage(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "ta", 1, 3)
	e.appendEvents(t, tid, "tb", 1, 2)
	e.appendEvents(t, tid, "ta", 2, 2) // a relay re-sends ta 2..3: duplicates, skipped

	all := readAll(t, e, key, tid, 2)
	if got := strings.Join(mine(tid, all), ","); got != "ta-1,ta-2,ta-3,tb-1,tb-2" {
		t.Fatalf("appended events read back as %s", got)
	}
	for _, ev := range all {
		if ev.ID == tid+"-ta-1" && (ev.Type != "identity.user.registered.v1" || ev.Subject != "u1" ||
			time.Since(ev.Time) > time.Minute || string(ev.Data) != `{"user_id":"u1"}`) {
			t.Fatalf("event: %+v data %s", ev, ev.Data)
		}
	}
	// Past the head: empty, and the cursor stays.
	a := e.call(t, "GET", "/identity/events?after=100000", key, nil)
	if p := eventPage(t, a); len(p.Events) != 0 || p.Next != 100000 || !strings.Contains(string(a.raw), `"events":[]`) {
		t.Fatalf("past the head: %s", a.raw)
	}

	// The tenant's admin (a user token) and a service account with the
	// scope may read; the token's own tenant only.
	adminTok := e.token(t, admin, tid, e.login(t, admin, tid), nil)
	svc := e.token(t, "svc-client", tid, "", map[string]any{"sid": nil, "scope": "vitals.read " + EventsScope})
	for name, cred := range map[string]string{"admin": adminTok, "service account": svc} {
		if got := strings.Join(mine(tid, readAll(t, e, cred, tid, 500)), ","); got != "ta-1,ta-2,ta-3,tb-1,tb-2" {
			t.Fatalf("%s reads %s", name, got)
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
	e.appendEvents(t, tidA, "ta", 1, 2)
	e.appendEvents(t, tidB, "tc", 1, 3)

	// readAll checks every event is of the caller's tenant.
	if got := strings.Join(mine(tidA, readAll(t, e, keyA, tidA, 100)), ","); got != "ta-1,ta-2" {
		t.Fatalf("A reads %s", got)
	}
	if got := strings.Join(mine(tidB, readAll(t, e, keyB, tidB, 100)), ","); got != "tc-1,tc-2,tc-3" {
		t.Fatalf("B reads %s", got)
	}
	// Nor does B's feed leak into A's stream.
	for _, ev := range readStream(t, e, keyA, "", 2, time.Second) {
		if !strings.Contains(ev.data, `"tenant":"`+tidA+`"`) || strings.Contains(ev.data, tidB) {
			t.Fatalf("A's stream: %+v", ev)
		}
	}
}

func TestEventsGap(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "ta", 1, eventlog.MaxEvents+10)

	p := eventPage(t, e.call(t, "GET", "/identity/events?limit=1", key, nil))
	if !p.Gap || p.Oldest <= 10 || p.Head-p.Oldest != eventlog.MaxEvents-1 || len(p.Events) != 1 || p.Events[0].Seq != p.Oldest || p.Next != p.Oldest {
		t.Fatalf("behind the window: %+v", p)
	}
	q := eventPage(t, e.call(t, "GET", fmt.Sprintf("/identity/events?after=%d&limit=1", p.Oldest-1), key, nil))
	if q.Gap && q.Oldest == p.Oldest {
		t.Fatalf("at the window: %+v", q)
	}

	// The stream says gap first, then goes on from the oldest kept event.
	got := readStream(t, e, key, "?after=3", 3, 2*time.Second)
	var gap struct{ Oldest uint64 }
	if got[0].event != "gap" || json.Unmarshal([]byte(got[0].data), &gap) != nil || got[0].id != "" ||
		got[1].id != fmt.Sprint(gap.Oldest) || got[2].id != fmt.Sprint(gap.Oldest+1) {
		t.Fatalf("stream behind the window: %+v", got[:3])
	}
}

// nextMine reads the stream up to the next event the test appended to
// tid, checking the seq order on the way.
func (s *stream) nextMine(t *testing.T, tid string, last *uint64) (sse, Event) {
	t.Helper()
	for {
		ev := s.next(t)
		if ev.comment != "" {
			continue
		}
		var body Event
		if err := json.Unmarshal([]byte(ev.data), &body); err != nil || ev.id != fmt.Sprint(body.Seq) || body.Seq <= *last ||
			ev.event != body.Type || body.Tenant != tid {
			t.Fatalf("stream after %d: %+v", *last, ev)
		}
		*last = body.Seq
		if strings.HasPrefix(body.ID, tid+"-") {
			return ev, body
		}
	}
}

func TestEventsStream(t *testing.T) {
	e := newEnv(t)
	tid, admin, _ := e.tenantWith(t)
	key := e.eventsKey(t, tid, admin, EventsScope)
	e.appendEvents(t, tid, "ta", 1, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, e, key, "", "")
	defer s.close()
	if s.resp.StatusCode != 200 || s.resp.Header.Get("Content-Type") != "text/event-stream" || s.resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream answer: %d %v", s.resp.StatusCode, s.resp.Header)
	}
	var last uint64
	for i := 1; i <= 3; i++ {
		ev, body := s.nextMine(t, tid, &last)
		if body.ID != fmt.Sprintf("%s-ta-%d", tid, i) || ev.event != "identity.user.registered.v1" || string(body.Data) != fmt.Sprintf(`{"user_id":"u%d"}`, i) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	resumeAt := last
	// New events reach a connected reader without it asking again.
	e.appendEvents(t, tid, "tb", 1, 2)
	for i := 1; i <= 2; i++ {
		if _, body := s.nextMine(t, tid, &last); body.ID != fmt.Sprintf("%s-tb-%d", tid, i) {
			t.Fatalf("live event: %+v", body)
		}
	}
	// Idle: heartbeats.
	for {
		ev := s.next(t)
		if ev.comment == "ping" {
			break
		}
		if ev.event == "" {
			t.Fatalf("idle stream: %+v", ev)
		}
	}
	// The connection ends by itself (EventStreamMax) so clients reconnect.
	start := time.Now()
	for {
		if _, ok := s.read(); !ok {
			break
		}
	}
	if time.Since(start) > 3*time.Second || ctx.Err() != nil {
		t.Fatalf("stream did not end by itself within its bound")
	}

	// Resume with Last-Event-ID: only what came after.
	e.appendEvents(t, tid, "ta", 4, 1)
	r := openStream(t, ctx, e, key, "", fmt.Sprint(resumeAt))
	defer r.close()
	last = resumeAt
	for _, want := range []string{"tb-1", "tb-2", "ta-4"} {
		if _, body := r.nextMine(t, tid, &last); body.ID != tid+"-"+want {
			t.Fatalf("resumed: %+v, want %s", body, want)
		}
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
