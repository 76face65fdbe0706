package cluster

import (
	"context"
	"testing"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// TestErasureSnapshotDropsKeyEvent: an actor that requires a snapshot with
// an event (the user actor's erasure) gets one in the same write, so the
// earlier events — the per-user key among them — are gone from the store.
func TestErasureSnapshotDropsKeyEvent(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	h := startHost(t, Config{Kinds: []actors.Kind{user.Kind}, Journal: store, SnapshotEvery: 1000})
	ctx := context.Background()
	id := "acme/0b6f3f3e-8d0c-4a57-9c1e-3f1f0a2b4c5d"
	if _, err := h.Request(ctx, user.KindName, id, &protocol.RegisterUser{FirstName: "Ada", LastName: "Lovelace", Phone: "+441234567890", Email: "ada@example.org"}); err != nil {
		t.Fatalf("register: %v", err)
	}
	key := persistence.ActorKey{Kind: user.KindName, ID: id}
	before, err := store.Load(key)
	if err != nil || len(before.Events) == 0 {
		t.Fatalf("before erasure: %v, %d events", err, len(before.Events))
	}
	if _, err := h.Request(ctx, user.KindName, id, &protocol.EraseUser{By: "dpo"}); err != nil {
		t.Fatalf("erase: %v", err)
	}
	after, err := store.Load(key)
	if err != nil {
		t.Fatal(err)
	}
	if after.Snapshot == nil || len(after.Events) != 0 {
		t.Fatalf("after erasure: snapshot %v, %d events left; want a snapshot and no events", after.Snapshot != nil, len(after.Events))
	}
	for _, ev := range before.Events {
		if _, ok := ev.(*protocol.UserKeyIssued); ok {
			return // the key event existed before and is gone now
		}
	}
	t.Fatal("no UserKeyIssued event before erasure: the test proves nothing")
}
