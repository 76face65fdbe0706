package simulation

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/protocol"
)

// seedOps is the per-seed budget of the many-seed test: small enough that
// 50 seeds stay fast, large enough that every seed sees crashes, expiries
// and rotations. race_test.go lowers it under the race detector, which
// makes pebble several times slower.
var seedOps = 250

func run(t *testing.T, cfg Config) Report {
	t.Helper()
	r, err := Run(cfg)
	if err != nil {
		t.Fatalf("Run(seed %d): %v", cfg.Seed, err)
	}
	return r
}

func TestSameSeedSameReport(t *testing.T) {
	cfg := Config{Seed: 7, Ops: 400, KeepTrace: true}
	a, b := run(t, cfg), run(t, cfg)
	if a.TraceHash != b.TraceHash {
		for i := range min(len(a.Trace), len(b.Trace)) {
			if a.Trace[i] != b.Trace[i] {
				t.Fatalf("trace differs at line %d:\n  %s\n  %s", i, a.Trace[i], b.Trace[i])
			}
		}
		t.Fatalf("trace hashes differ (%d and %d lines)", len(a.Trace), len(b.Trace))
	}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Fatalf("same seed, different reports:\n%s\n%s", ja, jb)
	}
	if a.Crashes == 0 {
		t.Errorf("seed 7 had no crash: determinism was not tested across a restart")
	}
}

func TestDifferentSeedsDiffer(t *testing.T) {
	seen := map[string]uint64{}
	for seed := uint64(1); seed <= 4; seed++ {
		r := run(t, Config{Seed: seed, Ops: 100})
		if prev, ok := seen[r.TraceHash]; ok {
			t.Fatalf("seeds %d and %d have the same trace hash %s", prev, seed, r.TraceHash)
		}
		seen[r.TraceHash] = seed
	}
}

// TestSeeds runs many seeds with zero violations and checks, over all of
// them, that the workload and the faults did what they are there for.
func TestSeeds(t *testing.T) {
	const seeds = 50
	var (
		mu    sync.Mutex
		total Report
	)
	start := time.Now()
	// Each run is one goroutine (plus pebble's), so seeds run in parallel
	// subtests; the group returns when all of them have.
	t.Run("seeds", func(t *testing.T) {
		for seed := uint64(1); seed <= seeds; seed++ {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				r := run(t, Config{Seed: seed, Ops: seedOps})
				if r.Violations != 0 {
					t.Errorf("%d violations:\n  %s", r.Violations, strings.Join(r.ViolationDetails, "\n  "))
				}
				if r.Ops != seedOps {
					t.Errorf("%d ops issued, want %d", r.Ops, seedOps)
				}
				mu.Lock()
				defer mu.Unlock()
				total.Crashes += r.Crashes
				addStats(&total, r)
			})
		}
	})
	if t.Failed() {
		return
	}
	t.Logf("%d seeds x %d ops in %s", seeds, seedOps, time.Since(start).Round(time.Millisecond))
	ws, hs := total.Workload, total.Host
	checks := []struct {
		what string
		n    int
	}{
		{"crashes", total.Crashes},
		{"crashes between commit and reply", hs.CrashesAfterCommit},
		{"expiries", hs.Expiries},
		{"timers fired", hs.TimersFired},
		{"snapshots", hs.Snapshots},
		{"idle passivations", hs.Passivations},
		{"forced passivations", hs.ForcedPassivations},
		{"messages lost to crashes", hs.DroppedMessages},
		{"acknowledged creates", ws.Create.OK},
		{"creates without reply", ws.Create.NoReply},
		{"creates retried into ALREADY_EXISTS", ws.Create.Refused},
		{"acknowledged rotations", ws.Rotate.OK},
		{"refused rotations", ws.Rotate.Refused},
		{"rotations without reply", ws.Rotate.NoReply},
		{"refused stale rotations", ws.RotateStale.Refused},
		{"refused forged rotations", ws.RotateForged.Refused},
		{"acknowledged touches", ws.Touch.OK},
		{"acknowledged revokes", ws.Revoke.OK},
		{"gets", ws.Get.OK},
		{"probes", ws.Probe.OK},
	}
	for _, c := range checks {
		if c.n == 0 {
			t.Errorf("no %s in %d seeds: the workload or the fault model lost its teeth", c.what, seeds)
		}
	}
	// A stale secret may be answered without an error (its successor again
	// within the grace window, or reuse detected); the checker vets both.
	if ws.RotateStale.OK == 0 {
		t.Errorf("no stale rotation answered (grace replay or reuse) in %d seeds", seeds)
	}
	if ws.RotateForged.OK != 0 {
		t.Errorf("forged secrets accepted without a violation being counted")
	}
}

func addStats(total *Report, r Report) {
	add := func(a *OpStats, b OpStats) {
		a.Sent += b.Sent
		a.OK += b.OK
		a.Refused += b.Refused
		a.NoReply += b.NoReply
	}
	tw, w := &total.Workload, r.Workload
	add(&tw.Create, w.Create)
	add(&tw.Rotate, w.Rotate)
	add(&tw.RotateStale, w.RotateStale)
	add(&tw.RotateForged, w.RotateForged)
	add(&tw.Touch, w.Touch)
	add(&tw.Get, w.Get)
	add(&tw.Revoke, w.Revoke)
	add(&tw.Probe, w.Probe)
	th, h := &total.Host, r.Host
	th.Steps += h.Steps
	th.Commits += h.Commits
	th.Snapshots += h.Snapshots
	th.Activations += h.Activations
	th.Passivations += h.Passivations
	th.ForcedPassivations += h.ForcedPassivations
	th.TimersFired += h.TimersFired
	th.Expiries += h.Expiries
	th.Publications += h.Publications
	th.CrashesAfterCommit += h.CrashesAfterCommit
	th.DroppedMessages += h.DroppedMessages
}

func TestNoFaults(t *testing.T) {
	r := run(t, Config{Seed: 3, Ops: 300, CrashEvery: -1, CrashAfterCommit: -1})
	if r.Crashes != 0 || r.Violations != 0 {
		t.Fatalf("crashes %d violations %d (%v), want 0 and 0", r.Crashes, r.Violations, r.ViolationDetails)
	}
	if r.Workload.Create.NoReply != 0 {
		t.Errorf("without crashes every create should be answered; %d were not", r.Workload.Create.NoReply)
	}
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative ops":        {Ops: -1},
		"crash too often":     {CrashEvery: time.Millisecond},
		"probability above 1": {CrashAfterCommit: 1.5},
		"negative clients":    {Clients: -2},
		"unnamed kind":        {Kind: actors.Kind{New: session.Kind.New}},
	} {
		if _, err := Run(cfg); err == nil {
			t.Errorf("%s: Run accepted %+v", name, cfg)
		}
	}
}

// TestBrokenIsCaught proves the checker can fail: each case breaks one rule
// of the actor contract or of storage, and the run must count violations
// naming the broken property.
func TestBrokenIsCaught(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // a phrase some violation must contain
	}{
		{
			// Rotates the refresh hash in Receive instead of persisting an
			// event: memory and store disagree, and after a crash or a
			// passivation the acknowledged secret is refused.
			name: "rotation not persisted",
			cfg:  Config{Kind: actors.Kind{Name: session.KindName, New: newForgetful}},
			want: "differs from memory",
		},
		{
			// Apply ignores SessionRevoked: the revoke is acknowledged and
			// committed, but the session stays active.
			name: "revocation dropped by apply",
			cfg:  Config{Kind: actors.Kind{Name: session.KindName, New: newDropRevoke}},
			want: "active again",
		},
		{
			// Accepts any presented secret once the real one fails.
			name: "any secret accepted",
			cfg:  Config{Kind: actors.Kind{Name: session.KindName, New: newAnySecret}},
			want: "secret",
		},
		{
			// Never arms its expiry timer.
			name: "expiry timer not set",
			cfg:  Config{Kind: actors.Kind{Name: session.KindName, New: newNoExpiry}},
			want: "past expiry",
		},
		{
			// A disk that forgets everything written since the last restart:
			// acknowledged writes are lost.
			name: "disk loses acknowledged writes",
			cfg:  Config{newDisk: func() disk { return &amnesiacDisk{fs: vfs.NewCrashableMem()} }},
			want: "were committed",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Seed, c.cfg.Ops = 11, 400
			r := run(t, c.cfg)
			if r.Violations == 0 {
				t.Fatalf("no violations")
			}
			found := false
			for _, d := range r.ViolationDetails {
				found = found || strings.Contains(d, c.want)
			}
			if !found {
				t.Fatalf("%d violations, none mentions %q:\n  %s", r.Violations, c.want, strings.Join(r.ViolationDetails, "\n  "))
			}
			t.Logf("%d violations, e.g. %s", r.Violations, r.ViolationDetails[0])
		})
	}
}

// forgetful is a session actor that changes state without an event when it
// rotates: the classic "forgot to persist" bug.
type forgetful struct{ *session.Actor }

func newForgetful(id string) actors.Actor { return forgetful{session.New(id)} }

func (f forgetful) Receive(ctx actors.Context, msg protocol.Message) error {
	return f.Actor.Receive(&applyNotPersist{Context: ctx, a: f.Actor}, msg)
}

// applyNotPersist applies RefreshRotated directly instead of persisting it.
type applyNotPersist struct {
	actors.Context
	a *session.Actor
}

func (c *applyNotPersist) Persist(events ...protocol.Message) {
	for _, ev := range events {
		if _, ok := ev.(*protocol.RefreshRotated); ok {
			_ = c.a.Apply(ev)
			continue
		}
		c.Context.Persist(ev)
	}
}

// dropRevoke is a session actor whose Apply loses revocations.
type dropRevoke struct{ *session.Actor }

func newDropRevoke(id string) actors.Actor { return dropRevoke{session.New(id)} }

func (d dropRevoke) Apply(ev protocol.Message) error {
	if _, ok := ev.(*protocol.SessionRevoked); ok {
		return nil
	}
	return d.Actor.Apply(ev)
}

// anySecret is a session actor that rotates whatever secret is presented.
type anySecret struct{ *session.Actor }

func newAnySecret(id string) actors.Actor { return anySecret{session.New(id)} }

func (a anySecret) Receive(ctx actors.Context, msg protocol.Message) error {
	err := a.Actor.Receive(ctx, msg)
	if _, ok := msg.(*protocol.RotateRefresh); !ok || actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		return err
	}
	secret := make([]byte, session.SecretLen)
	if _, err := io.ReadFull(ctx.Entropy(), secret); err != nil {
		return err
	}
	h := sha256.Sum256(secret)
	info := a.Info()
	info.Generation++
	info.LastSeenUnixNano = ctx.Now().UnixNano()
	ctx.Persist(&protocol.RefreshRotated{AtUnixNano: info.LastSeenUnixNano, RefreshHash: h[:], Generation: info.Generation})
	ctx.Reply(&protocol.RefreshIssued{Session: info, RefreshSecret: secret})
	return nil
}

// noExpiry is a session actor that never sets its expiry timer.
type noExpiry struct{ *session.Actor }

func newNoExpiry(id string) actors.Actor { return noExpiry{session.New(id)} }

func (n noExpiry) Receive(ctx actors.Context, msg protocol.Message) error {
	return n.Actor.Receive(dropTimers{ctx}, msg)
}

type dropTimers struct{ actors.Context }

func (dropTimers) SetTimer(string, time.Time, protocol.Message) {}

// amnesiacDisk loses every write since the last time the store was opened
// when it crashes, synced or not.
type amnesiacDisk struct {
	fs, atOpen *vfs.MemFS
}

func (d *amnesiacDisk) open() (Store, error) {
	d.atOpen = d.fs.CrashClone(vfs.CrashCloneCfg{})
	return openStore(d.fs)
}

func (d *amnesiacDisk) crash() { d.fs = d.atOpen }

// TestReportJSON pins the field names the command and the lead's tooling
// read.
func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(run(t, Config{Seed: 1, Ops: 50}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seed", "ops", "crashes", "violations", "trace_hash", "violation_details", "virtual_time"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON has no %q: %s", k, b)
		}
	}
	if _, ok := m["trace"]; ok {
		t.Errorf("trace lines in the JSON without KeepTrace")
	}
}
