package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// testLogger discards logs unless WARD_TEST_LOG is set: protoactor goroutines
// may log after a test has ended, when t.Log would panic.
func testLogger() *slog.Logger {
	if os.Getenv("WARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openStore opens a real persistence.Store in dir on fs (nil: the disk).
func openStore(t testing.TB, fs vfs.FS, dir string) *persistence.Store {
	t.Helper()
	s, err := persistence.Open(dir, persistence.Options{FS: fs, Logger: testLogger()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

// startHost starts a host with test-friendly defaults and stops it when the
// test ends (unless the test stopped it already).
func startHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	if cfg.Kinds == nil {
		cfg.Kinds = []actors.Kind{probeKind}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.TimerPoll == 0 {
		cfg.TimerPoll = 20 * time.Millisecond
	}
	h, err := Start(cfg)
	if err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(func() { stopHost(t, h) })
	return h
}

func stopHost(t testing.TB, h *Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Errorf("stop host: %v", err)
	}
}

// probeKind is the session kind with one extra message: a StringValue
// "snapshot" makes the wrapper reply with the actor's own Snapshot(), so tests
// can compare whole states across activations. Everything else goes to the
// session actor untouched.
var probeKind = actors.Kind{Name: session.KindName, New: func(id string) actors.Actor {
	return &probe{Actor: session.New(id)}
}}

type probe struct{ *session.Actor }

var snapshotProbe = &wrapperspb.StringValue{Value: "snapshot"}

func (p *probe) Receive(ctx actors.Context, msg protocol.Message) error {
	if v, ok := msg.(*wrapperspb.StringValue); ok && v.GetValue() == "snapshot" {
		s, err := p.Snapshot()
		if err != nil {
			return err
		}
		ctx.Reply(s)
		return nil
	}
	return p.Actor.Receive(ctx, msg)
}

// fakeClock is a settable clock for the actors and the timer scheduler.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// faultyJournal wraps a real store with switchable faults.
type faultyJournal struct {
	Journal
	mu         sync.Mutex
	commitErr  error
	loadErr    error
	hold       chan struct{} // when set, Commit waits for it to close
	entered    chan struct{} // receives once per held Commit
	commits    atomic.Int64
	heldCommit atomic.Bool
}

var errInjected = errors.New("injected journal fault")

func (j *faultyJournal) setCommitErr(err error) {
	j.mu.Lock()
	j.commitErr = err
	j.mu.Unlock()
}

func (j *faultyJournal) setLoadErr(err error) {
	j.mu.Lock()
	j.loadErr = err
	j.mu.Unlock()
}

// holdCommits makes the next commits wait until release is called; release
// is idempotent, and also runs when the test ends so that a failed test does
// not leave the host's Stop waiting on a held commit.
func (j *faultyJournal) holdCommits(t testing.TB) (entered <-chan struct{}, release func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.hold = make(chan struct{})
	j.entered = make(chan struct{}, 16)
	hold := j.hold
	var once sync.Once
	release = func() {
		once.Do(func() {
			j.mu.Lock()
			j.hold = nil
			j.mu.Unlock()
			close(hold)
		})
	}
	t.Cleanup(release) // runs before the host's Stop (cleanups are LIFO)
	return j.entered, release
}

func (j *faultyJournal) Load(k persistence.ActorKey) (*persistence.Loaded, error) {
	j.mu.Lock()
	err := j.loadErr
	j.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return j.Journal.Load(k)
}

func (j *faultyJournal) Commit(ctx context.Context, w *persistence.Write) error {
	j.mu.Lock()
	hold, entered := j.hold, j.entered
	j.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
		j.heldCommit.Store(true)
	}
	j.mu.Lock()
	err := j.commitErr
	j.mu.Unlock()
	if err != nil {
		return err
	}
	j.commits.Add(1)
	return j.Journal.Commit(ctx, w)
}

// sessionState asks the activation for its whole state.
func sessionState(t testing.TB, h *Host, id string) *protocol.SessionState {
	t.Helper()
	m, err := h.Request(context.Background(), session.KindName, id, snapshotProbe)
	if err != nil {
		t.Fatalf("snapshot probe %s: %v", id, err)
	}
	s, ok := m.(*protocol.SessionState)
	if !ok {
		t.Fatalf("snapshot probe %s: got %T", id, m)
	}
	return s
}

func createSession(t testing.TB, h *Host, id string, ttl time.Duration) *protocol.RefreshIssued {
	t.Helper()
	m, err := h.Request(context.Background(), session.KindName, id,
		&protocol.CreateSession{Subject: "user-" + id, ClientId: "client-a", TtlNanos: int64(ttl)})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return m.(*protocol.RefreshIssued)
}

func requireCode(t testing.TB, err error, want protocol.ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %s, got success", want)
	}
	var ae *actors.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *actors.Error %s, got %T: %v", want, err, err)
	}
	if ae.Code != want {
		t.Fatalf("want %s, got %s: %v", want, ae.Code, err)
	}
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
