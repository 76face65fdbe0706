package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/protocol"
)

// emitterKind emits one domain event per StringValue it gets, for the
// tenant named by the value, persisting nothing else.
var emitterKind = actors.Kind{Name: "emitter", New: func(id string) actors.Actor { return emitter{} }}

type emitter struct{}

func (emitter) Receive(ctx actors.Context, msg protocol.Message) error {
	v, ok := msg.(*wrapperspb.StringValue)
	if !ok {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "want a tenant")
	}
	self := ctx.Self()
	if tenant, ok := strings.CutPrefix(v.GetValue(), "malformed:"); ok {
		// No time: the event log refuses it.
		ctx.Emit(&protocol.EventEnvelope{Id: "bad-" + self.ID, Type: "identity.user.registered.v1", Tenant: tenant, Subject: self.ID})
		return nil
	}
	return actors.EmitEvent(ctx, "identity.user.registered.v1", v.GetValue(), self.ID, &protocol.UserEventData{UserId: self.ID})
}
func (emitter) Apply(protocol.Message) error        { return nil }
func (emitter) Snapshot() (protocol.Message, error) { return &wrapperspb.StringValue{}, nil }
func (emitter) Restore(protocol.Message) error      { return nil }

// readLog reads a tenant's whole event log as "subject ..." in order.
func readLog(t testing.TB, h *Host, tenant string) []string {
	t.Helper()
	m, err := h.Request(context.Background(), eventlog.KindName, tenant, &protocol.EventLogRead{Limit: 500})
	if err != nil {
		t.Fatalf("read event log %s: %v", tenant, err)
	}
	var out []string
	for _, e := range m.(*protocol.EventLogPage).GetEvents() {
		out = append(out, e.GetEvent().GetSubject())
	}
	return out
}

// TestRelayHandsFeedToEventLogs: events emitted by steps reach their
// tenant's event log in emission order, each once, and the feed is trimmed
// once handed on; a restarted host relays what an earlier one had not.
func TestRelayHandsFeedToEventLogs(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, nil, dir)
	h := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind, eventlog.Kind}, RelayPoll: 20 * time.Millisecond})
	ctx := context.Background()
	var wantA, wantB []string
	for i := range 30 {
		tenant, id := "tenant-a", fmt.Sprintf("a%02d", i)
		if i%3 == 0 {
			tenant, id = "tenant-b", fmt.Sprintf("b%02d", i)
		}
		if _, err := h.Request(ctx, "emitter", id, wrapperspb.String(tenant)); err != nil {
			t.Fatal(err)
		}
		if tenant == "tenant-a" {
			wantA = append(wantA, id)
		} else {
			wantB = append(wantB, id)
		}
	}
	eventually(t, 10*time.Second, "both logs hold every event", func() bool {
		return fmt.Sprint(readLog(t, h, "tenant-a")) == fmt.Sprint(wantA) && fmt.Sprint(readLog(t, h, "tenant-b")) == fmt.Sprint(wantB)
	})
	eventually(t, 5*time.Second, "feed trimmed", func() bool {
		es, err := store.Feed(0, 10)
		return err == nil && len(es) == 0
	})

	// Events emitted while no relay runs wait in the feed; a new host hands
	// them on, and the log skips nothing and duplicates nothing.
	stopHost(t, h)
	h2 := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind}}) // no event log: no relay
	for i := range 5 {
		id := fmt.Sprintf("late%d", i)
		if _, err := h2.Request(ctx, "emitter", id, wrapperspb.String("tenant-a")); err != nil {
			t.Fatal(err)
		}
		wantA = append(wantA, id)
	}
	if es, err := store.Feed(0, 10); err != nil || len(es) != 5 {
		t.Fatalf("feed without a relay holds %d entries (err %v), want 5", len(es), err)
	}
	stopHost(t, h2)
	h3 := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind, eventlog.Kind}, RelayPoll: 20 * time.Millisecond})
	eventually(t, 10*time.Second, "late events relayed", func() bool {
		return fmt.Sprint(readLog(t, h3, "tenant-a")) == fmt.Sprint(wantA)
	})
	if got := readLog(t, h3, "tenant-b"); fmt.Sprint(got) != fmt.Sprint(wantB) {
		t.Fatalf("tenant-b log changed: %v", got)
	}
}

// TestRelayDuplicateHandOverAppendsOnce: a hand-over repeated after a lost
// trim (same source, same positions) appends nothing the second time.
func TestRelayDuplicateHandOverAppendsOnce(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	ctx := context.Background()
	// Emit with no relay running, so the feed holds both entries.
	h0 := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind}})
	for _, id := range []string{"u1", "u2"} {
		if _, err := h0.Request(ctx, "emitter", id, wrapperspb.String("t")); err != nil {
			t.Fatal(err)
		}
	}
	stopHost(t, h0)
	// A relay that runs only when woken.
	h := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind, eventlog.Kind}, RelayPoll: time.Hour})
	entries, err := store.Feed(0, 10)
	if err != nil || len(entries) != 2 {
		t.Fatalf("feed: %d entries, err %v", len(entries), err)
	}
	// Hand the feed over twice by hand, as a relay that lost its trim would.
	var list []*protocol.FeedEntry
	for _, e := range entries {
		list = append(list, &protocol.FeedEntry{Position: e.Position, Event: e.Event})
	}
	for range 2 {
		if _, err := h.Request(ctx, eventlog.KindName, "t", &protocol.EventLogAppend{Source: "local", Entries: list}); err != nil {
			t.Fatal(err)
		}
	}
	// The relay's own round finds them taken already.
	h.relay.notify()
	eventually(t, 5*time.Second, "feed trimmed", func() bool {
		es, err := store.Feed(0, 10)
		return err == nil && len(es) == 0
	})
	if got := readLog(t, h, "t"); fmt.Sprint(got) != "[u1 u2]" {
		t.Fatalf("log = %v, want [u1 u2]", got)
	}
}

// TestRelayDropsWhatTheLogRefuses: an entry the event log refuses as
// malformed is dropped alone; the tenant's other events arrive and the feed
// does not stall on it.
func TestRelayDropsWhatTheLogRefuses(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	h := startHost(t, Config{Journal: store, Kinds: []actors.Kind{emitterKind, eventlog.Kind}, RelayPoll: time.Hour})
	ctx := context.Background()
	for _, step := range []struct{ id, val string }{{"u1", "t"}, {"u2", "malformed:t"}, {"u3", "t"}} {
		if _, err := h.Request(ctx, "emitter", step.id, wrapperspb.String(step.val)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "feed trimmed", func() bool {
		es, err := store.Feed(0, 10)
		return err == nil && len(es) == 0
	})
	if got := readLog(t, h, "t"); fmt.Sprint(got) != "[u1 u3]" {
		t.Fatalf("log = %v, want [u1 u3]", got)
	}
}
