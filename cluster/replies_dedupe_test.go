package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// TestRequestIDReplayedAcrossActivations: a request id replayed after the
// activation passivated, and after the host restarted, gets the answer
// stored with the original step's write; the actor is not stepped again.
func TestRequestIDReplayedAcrossActivations(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, nil, dir)
	defer store.Close()
	j := &faultyJournal{Journal: store}
	h := startHost(t, Config{Journal: j, PassivateAfter: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	const id = "replayed"
	key := persistence.ActorKey{Kind: session.KindName, ID: id}

	payload, err := protocol.Pack(&protocol.CreateSession{Subject: "user-1", ClientId: "client-a", TtlNanos: int64(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	env := &protocol.Envelope{Kind: session.KindName, Id: id, RequestId: "client-req-1", Payload: payload}
	first, err := h.call(ctx, session.KindName, id, env, nil)
	if err != nil || first.GetError() != nil {
		t.Fatalf("create: %v %v", err, first.GetError())
	}
	commits := j.commits.Load()

	replay := func(when string) {
		t.Helper()
		got, err := h.call(ctx, session.KindName, id, env, nil)
		if err != nil {
			t.Fatalf("%s: replay: %v", when, err)
		}
		if !protocol.Equal(got, first) {
			t.Fatalf("%s: replay answered\n%v\nwant the original\n%v", when, got, first)
		}
		if n := j.commits.Load(); n != commits {
			t.Fatalf("%s: replay committed (%d commits, want %d): the actor was stepped again", when, n, commits)
		}
		l, err := store.Load(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Events) != 1 {
			t.Fatalf("%s: %d events, want 1", when, len(l.Events))
		}
	}

	replay("same activation")
	eventually(t, 5*time.Second, "passivation", func() bool { return h.activations.len() == 0 })
	replay("after passivation")

	// A new request id is stepped: the session exists, so a second create
	// is refused, which is what a replay stepped again would have said.
	_, err = h.Request(ctx, session.KindName, id, &protocol.CreateSession{Subject: "user-1", ClientId: "client-a", TtlNanos: int64(time.Hour)})
	requireCode(t, err, protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS)

	stopHost(t, h)
	h = startHost(t, Config{Journal: j, Registerer: prometheus.NewRegistry()})
	replay("after a host restart")

	// Read-only steps store nothing.
	if _, err := h.Request(ctx, session.KindName, id, &protocol.GetSession{}); err != nil {
		t.Fatal(err)
	}
	if l, _ := store.Load(key); len(l.Replies) != 1 {
		t.Fatalf("%d stored replies, want 1 (reads and refusals store none)", len(l.Replies))
	}
}

// TestOverlongRequestIDNotStored: an id past the store's limit still gets
// the in-memory dedupe, and the write still commits, without a reply.
func TestOverlongRequestIDNotStored(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	defer store.Close()
	h := startHost(t, Config{Journal: store, Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	payload, err := protocol.Pack(&protocol.CreateSession{Subject: "u", ClientId: "c", TtlNanos: int64(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	env := &protocol.Envelope{Kind: session.KindName, Id: "long", RequestId: strings.Repeat("r", persistence.MaxRequestIDLen+1), Payload: payload}
	first, err := h.call(ctx, session.KindName, "long", env, nil)
	if err != nil || first.GetError() != nil {
		t.Fatalf("create: %v %v", err, first.GetError())
	}
	again, err := h.call(ctx, session.KindName, "long", env, nil)
	if err != nil || !protocol.Equal(again, first) {
		t.Fatalf("in-memory replay: %v %v", again, err)
	}
	l, err := store.Load(persistence.ActorKey{Kind: session.KindName, ID: "long"})
	if err != nil || len(l.Events) != 1 || len(l.Replies) != 0 {
		t.Fatalf("journal: %v, %v", l, err)
	}
}
