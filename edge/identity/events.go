package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// EventsScope is the scope an API key or a service account's token needs to
// read its tenant's events.
const EventsScope = "events:read"

// Event is one domain event as the feed shows it.
type Event struct {
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Tenant  string          `json:"tenant"`
	Subject string          `json:"subject,omitempty"`
	Time    time.Time       `json:"time"`
	Data    json.RawMessage `json:"data"`
}

// EventPage answers GET /identity/events.
type EventPage struct {
	Events []Event `json:"events"`
	Head   uint64  `json:"head"`
	Oldest uint64  `json:"oldest"`
	// Gap: events after the cursor were dropped before the caller read
	// them (the log keeps a bounded window).
	Gap bool `json:"gap"`
	// Next is the cursor to pass as after for the following page.
	Next uint64 `json:"next"`
}

var dataJSON = protojson.MarshalOptions{UseProtoNames: true}

func toEvent(e *protocol.LoggedEvent) Event {
	ev := e.GetEvent()
	out := Event{Seq: e.GetSeq(), ID: ev.GetId(), Type: ev.GetType(), Tenant: ev.GetTenant(), Subject: ev.GetSubject(),
		Time: time.Unix(0, ev.GetTimeUnixNano()).UTC(), Data: json.RawMessage("{}")}
	if ev.GetData() != nil {
		if m, err := protocol.Unpack(ev.GetData()); err == nil {
			if b, err := dataJSON.Marshal(m); err == nil {
				out.Data = b
			}
		}
	}
	return out
}

// eventReader authenticates the request and checks that the caller may read
// its tenant's events: an API key or a service-account token with
// EventsScope, or a user holding the admin role at the root of the token's
// tenant. It answers the refusal itself and returns "" then. ctx bounds
// the checks only.
func (h *handler) eventReader(ctx context.Context, w http.ResponseWriter, r *http.Request) string {
	p, aerr, err := h.authenticate(ctx, r)
	switch {
	case err != nil:
		h.actorError(w, r, err)
		return ""
	case aerr != nil:
		aerr.write(w)
		return ""
	}
	w.Header().Set("Cache-Control", "no-store")
	if p.tenant == "" {
		problem.Write(w, http.StatusForbidden, "forbidden", "the credential names no tenant")
		return ""
	}
	switch {
	case p.key != nil:
		if !slices.Contains(p.key.GetScopes(), EventsScope) {
			problem.Write(w, http.StatusForbidden, "forbidden", "the API key lacks the scope "+EventsScope)
			return ""
		}
	case p.service:
		if !slices.Contains(p.scopes, EventsScope) {
			problem.Write(w, http.StatusForbidden, "forbidden", "the access token lacks the scope "+EventsScope)
			return ""
		}
	default:
		m, err := h.cfg.Actors.Request(ctx, tenant.KindName, p.tenant, &protocol.CheckRole{User: p.subject, NodeId: p.tenant, Role: protocol.Role_ROLE_ADMIN})
		if err != nil && actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
			h.actorError(w, r, err)
			return ""
		}
		if rc, ok := m.(*protocol.RoleCheck); err != nil || !ok || !rc.GetAllowed() {
			problem.Write(w, http.StatusForbidden, "forbidden", "reading events needs the admin role in tenant "+p.tenant)
			return ""
		}
	}
	return p.tenant
}

// cursor reads a sequence-number query or header value.
func cursor(w http.ResponseWriter, name, v string) (uint64, bool) {
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "invalid request", name+" must be a sequence number (a non-negative integer)")
		return 0, false
	}
	return n, true
}

// readLog asks the tenant's eventlog for a page.
func (h *handler) readLog(ctx context.Context, tid string, after uint64, limit uint32) (*protocol.EventLogPage, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := h.cfg.Actors.Request(ctx, eventlog.KindName, tid, &protocol.EventLogRead{After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	page, ok := m.(*protocol.EventLogPage)
	if !ok {
		return nil, actors.Errorf(protocol.ErrorCode_ERROR_CODE_INTERNAL, "eventlog answered %s", protocol.TypeName(m))
	}
	return page, nil
}

// events answers GET /identity/events?after=N&limit=M.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, ok := cursor(w, "after", q.Get("after"))
	if !ok {
		return
	}
	var limit uint32
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			problem.Write(w, http.StatusBadRequest, "invalid request", fmt.Sprintf("limit must be an integer from 1 to %d", eventlog.MaxLimit))
			return
		}
		limit = uint32(n)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	tid := h.eventReader(ctx, w, r)
	if tid == "" {
		return
	}
	page, err := h.readLog(ctx, tid, after, limit)
	if err != nil {
		h.actorError(w, r, err)
		return
	}
	out := EventPage{Events: make([]Event, 0, len(page.GetEvents())), Head: page.GetHead(), Oldest: page.GetOldest(), Gap: page.GetGap(), Next: after}
	for _, e := range page.GetEvents() {
		out.Events = append(out.Events, toEvent(e))
		out.Next = e.GetSeq()
	}
	writeJSON(w, http.StatusOK, out)
}

// eventsStream answers GET /identity/events/stream with Server-Sent
// Events: "id: <seq>", "event: <type>", "data: <Event JSON>" per event,
// "event: gap" when the reader's cursor fell behind the kept window,
// ": ping" while idle. It resumes after Last-Event-ID (or ?after=) and
// ends by itself after Config.EventStreamMax, so clients reconnect.
func (h *handler) eventsStream(w http.ResponseWriter, r *http.Request) {
	name, v := "after", r.URL.Query().Get("after")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		name, v = "Last-Event-ID", id
	}
	after, ok := cursor(w, name, v)
	if !ok {
		return
	}
	actx, cancel := context.WithTimeout(r.Context(), timeout)
	tid := h.eventReader(actx, w, r)
	cancel()
	if tid == "" {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		problem.Write(w, http.StatusInternalServerError, "internal error", "streaming is not supported here")
		return
	}
	ctx, stop := context.WithTimeout(r.Context(), h.cfg.EventStreamMax)
	defer stop()
	// The first page is read before answering, so a refusal is still a
	// problem document.
	page, err := h.readLog(ctx, tid, after, eventlog.MaxLimit)
	if err != nil {
		h.actorError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", h.cfg.EventPoll.Milliseconds()*2)
	flusher.Flush()

	lastWrite := time.Now()
	for {
		if page.GetGap() {
			b, _ := json.Marshal(map[string]uint64{"after": after, "oldest": page.GetOldest(), "head": page.GetHead()})
			fmt.Fprintf(w, "event: gap\ndata: %s\n\n", b)
		}
		for _, e := range page.GetEvents() {
			b, err := json.Marshal(toEvent(e))
			if err != nil {
				return
			}
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.GetSeq(), e.GetEvent().GetType(), b)
			after = e.GetSeq()
		}
		if page.GetGap() || len(page.GetEvents()) > 0 {
			flusher.Flush()
			lastWrite = time.Now()
		}
		if len(page.GetEvents()) < eventlog.MaxLimit {
			// Caught up: wait for the next poll, pinging while idle.
			poll := time.NewTimer(h.cfg.EventPoll)
			select {
			case <-ctx.Done():
				poll.Stop()
				return
			case <-poll.C:
			}
			if time.Since(lastWrite) >= h.cfg.EventHeartbeat {
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
					return
				}
				flusher.Flush()
				lastWrite = time.Now()
			}
		}
		if page, err = h.readLog(ctx, tid, after, eventlog.MaxLimit); err != nil {
			if ctx.Err() == nil {
				h.cfg.Logger.Info("event stream ends on a failed read; the client resumes", "tenant", tid, "err", err)
			}
			return
		}
	}
}
