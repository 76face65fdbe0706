package password

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// light are parameters cheap enough for unit tests on a busy machine.
var light = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newHasher(t *testing.T, c Config) *Hasher {
	t.Helper()
	if c.Params == (Params{}) {
		c.Params = light
	}
	h, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h := newHasher(t, Config{})
	phc, err := h.Hash(ctx, "tangerine-oboe-47")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("unexpected PHC %s", phc)
	}
	p, err := ParsePHC(phc)
	if err != nil || p.Params != light || p.String() != phc {
		t.Fatalf("round trip: %+v %v", p, err)
	}
	ok, rehash, err := h.Verify(ctx, phc, "tangerine-oboe-47")
	if !ok || rehash || err != nil {
		t.Fatalf("Verify(right) = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
	ok, rehash, err = h.Verify(ctx, phc, "tangerine-oboe-48")
	if ok || rehash || err != nil {
		t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
	}
	other, _ := h.Hash(ctx, "tangerine-oboe-47")
	if other == phc {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

// The public API reproduces the reference tool's output when given its salt.
func TestHashMatchesReferenceTool(t *testing.T) {
	v := referenceVectors[1] // m=256,t=2,p=2, salt "saltsaltsaltsalt"
	p, _ := ParsePHC(v.phc)
	// New draws the dummy salt and key first, then Hash draws its salt.
	rnd := io.MultiReader(bytes.NewReader(make([]byte, p.Params.SaltLen+p.Params.KeyLen)), bytes.NewReader(p.Salt))
	h := newHasher(t, Config{Params: p.Params, Rand: rnd})
	got, err := h.Hash(context.Background(), v.password)
	if err != nil || got != v.phc {
		t.Fatalf("Hash = %s, %v\nwant %s", got, err, v.phc)
	}
}

func TestVerifyNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old := newHasher(t, Config{Params: Params{Memory: 32, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	phc, err := old.Hash(ctx, "tangerine-oboe-47")
	if err != nil {
		t.Fatal(err)
	}
	cur := newHasher(t, Config{})
	if ok, rehash, err := cur.Verify(ctx, phc, "tangerine-oboe-47"); !ok || !rehash || err != nil {
		t.Fatalf("Verify(old params) = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
	if ok, rehash, _ := cur.Verify(ctx, phc, "wrong-password"); ok || rehash {
		t.Fatalf("Verify(old params, wrong) = %v, %v; want false, false", ok, rehash)
	}
	// A different salt length is a parameter change too.
	long := newHasher(t, Config{Params: Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 32, KeyLen: 32}})
	phc, _ = long.Hash(ctx, "x")
	if _, rehash, _ := cur.Verify(ctx, phc, "x"); !rehash {
		t.Fatal("salt length change does not ask for a rehash")
	}
}

func TestVerifyRefusesBadHashWithoutWork(t *testing.T) {
	h := newHasher(t, Config{})
	h.key = func([]byte, []byte, Params) []byte { t.Fatal("hashed a refused PHC"); return nil }
	for _, phc := range []string{"", "plaintext", "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$cpx6VEQbwTVZvcpxNIxOVUWZ5xnAipUmAe1cg2GMG70"} {
		ok, _, err := h.Verify(context.Background(), phc, "x")
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, %v; want ErrMalformedHash", phc, ok, err)
		}
	}
}

func TestVerifyDummyCostsARealVerify(t *testing.T) {
	h := newHasher(t, Config{})
	var got []Params
	h.key = func(pw, salt []byte, p Params) []byte {
		got = append(got, p)
		if len(salt) != int(p.SaltLen) {
			t.Errorf("salt of %d bytes for SaltLen %d", len(salt), p.SaltLen)
		}
		return idKey(pw, salt, p)
	}
	if err := h.VerifyDummy(context.Background(), "anything"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != light {
		t.Fatalf("dummy verify hashed with %+v, want one hash with %+v", got, light)
	}
}

// gate makes the key function block until released, reporting each start.
type gate struct {
	started, queued chan struct{}
	release         chan struct{}
}

func gated(h *Hasher) *gate {
	g := &gate{started: make(chan struct{}, 8), queued: make(chan struct{}, 8), release: make(chan struct{})}
	h.key = func(pw, salt []byte, p Params) []byte {
		g.started <- struct{}{}
		<-g.release
		return idKey(pw, salt, p)
	}
	h.onQueued = func() { g.queued <- struct{}{} }
	return g
}

func recv(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestAdmissionQueueFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHasher(t, Config{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: time.Minute, Registerer: reg})
	g := gated(h)
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { _, err := h.Hash(ctx, "first-password"); errs <- err }()
	recv(t, g.started, "first hash to start")
	go func() { _, err := h.Hash(ctx, "second-password"); errs <- err }()
	recv(t, g.queued, "second hash to queue")

	if v := testutil.ToFloat64(h.m.inFlight); v != 1 {
		t.Errorf("in flight = %v, want 1", v)
	}
	if v := testutil.ToFloat64(h.m.queued); v != 1 {
		t.Errorf("queued = %v, want 1", v)
	}

	h.mu.Lock()
	h.meanHash = 2500 * time.Millisecond // as if recent hashes took 2.5 s
	h.mu.Unlock()
	_, err := h.Hash(ctx, "third-password")
	var busy *BusyError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &busy) {
		t.Fatalf("third Hash: %v, want ErrBusy", err)
	}
	// 2.5 s × (1 queued + 1) / 1 slot = 5 s.
	if busy.RetryAfter() != 5*time.Second || busy.Reason != "queue full" {
		t.Errorf("RetryAfter = %v (%s), want 5s (queue full)", busy.RetryAfter(), busy.Reason)
	}
	if _, _, err := h.Verify(ctx, "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$cpx6VEQbwTVZvcpxNIxOVUWZ5xnAipUmAe1cg2GMG70", "password"); !errors.Is(err, ErrBusy) {
		t.Errorf("Verify while full: %v, want ErrBusy", err)
	}
	if err := h.VerifyDummy(ctx, "password"); !errors.Is(err, ErrBusy) {
		t.Errorf("VerifyDummy while full: %v, want ErrBusy", err)
	}

	close(g.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("admitted hash failed: %v", err)
		}
	}
	if v := testutil.ToFloat64(h.m.busy); v != 3 {
		t.Errorf("busy rejections = %v, want 3", v)
	}
	if in, q := testutil.ToFloat64(h.m.inFlight), testutil.ToFloat64(h.m.queued); in != 0 || q != 0 {
		t.Errorf("after drain: in flight %v, queued %v; want 0, 0", in, q)
	}
	if n := testutil.CollectAndCount(h.m.hashSeconds); n != 1 {
		t.Errorf("histogram series = %d", n)
	}
	for _, name := range []string{"ward_password_hash_seconds", "ward_password_in_flight", "ward_password_queued", "ward_password_busy_rejections_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("metric %s: %d series, %v", name, n, err)
		}
	}
}

func TestAdmissionRetryAfterFloor(t *testing.T) {
	h := newHasher(t, Config{MaxConcurrent: 1, MaxQueue: -1})
	g := gated(h)
	done := make(chan error)
	go func() { _, err := h.Hash(context.Background(), "first"); done <- err }()
	recv(t, g.started, "first hash")
	_, err := h.Hash(context.Background(), "second") // no queue at all; no hash measured yet
	var busy *BusyError
	if !errors.As(err, &busy) || busy.RetryAfter() != time.Second {
		t.Fatalf("got %v, want ErrBusy with RetryAfter 1s", err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAdmissionQueueTimeout(t *testing.T) {
	h := newHasher(t, Config{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: 20 * time.Millisecond})
	g := gated(h)
	done := make(chan error)
	go func() { _, err := h.Hash(context.Background(), "first"); done <- err }()
	recv(t, g.started, "first hash")
	_, err := h.Hash(context.Background(), "second")
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Reason != "queue timeout" || busy.RetryAfter() < time.Second {
		t.Fatalf("got %v, want ErrBusy (queue timeout)", err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.queued != 0 {
		t.Fatalf("queued = %d after timeout", h.queued)
	}
}

func TestCancelWhileQueued(t *testing.T) {
	h := newHasher(t, Config{MaxConcurrent: 1, MaxQueue: 4, QueueTimeout: time.Minute})
	g := gated(h)
	first := make(chan error)
	go func() { _, err := h.Hash(context.Background(), "first"); first <- err }()
	recv(t, g.started, "first hash")

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error)
	go func() { _, err := h.Hash(ctx, "second"); second <- err }()
	recv(t, g.queued, "second hash to queue")
	cancel()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued Hash after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled caller still waiting")
	}
	if v := testutil.ToFloat64(h.m.queued); v != 0 {
		t.Errorf("queued gauge = %v after cancel", v)
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// An already-cancelled context never takes a slot.
	if _, err := h.Hash(ctx, "third"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with cancelled ctx: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Config{Params: Params{Memory: 1 << 22, Time: 3, Threads: 1, SaltLen: 16, KeyLen: 32}}); err == nil {
		t.Error("accepted 4 GiB")
	}
	if _, err := New(Config{Params: light, Rand: bytes.NewReader(nil)}); err == nil {
		t.Error("accepted an empty random source")
	}
	reg := prometheus.NewRegistry()
	newHasher(t, Config{Registerer: reg})
	if _, err := New(Config{Params: light, Registerer: reg}); err == nil {
		t.Error("registered the metrics twice")
	}
	h := newHasher(t, Config{})
	if cap(h.slots) < 1 || h.maxQueue != 4*cap(h.slots) || h.queueTimeout != 2*time.Second {
		t.Errorf("defaults: %d slots, queue %d, timeout %v", cap(h.slots), h.maxQueue, h.queueTimeout)
	}
	if d, _ := New(Config{}); d.Params() != DefaultParams() {
		t.Errorf("default params %+v", d.Params())
	}
}
