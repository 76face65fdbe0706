package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/protocol"
)

// Run with:
//
//	go test -run x -bench . -benchmem ./cluster/
//
// BenchmarkHostRequest and BenchmarkRawProtoactorGrain take the same route
// (cluster member, identity lookup, PID cache, mailbox, reply) to an activation
// that already exists; the raw grain echoes a prebuilt protobuf reply, ours
// unpacks the Envelope, steps the session actor and packs its reply. The
// ratio is the hosting overhead.

// echoReply is about the size of the SessionInfo a GetSession returns.
var echoReply = &protocol.SessionInfo{
	Id: "bench", Subject: "user-bench", ClientId: "client-a", Status: protocol.SessionStatus_SESSION_STATUS_ACTIVE,
	CreatedUnixNano: 1, ExpiresUnixNano: 2, LastSeenUnixNano: 3,
}

// echoResponse is echoReply as our grains answer: a Response with an Any.
var echoResponse = func() *protocol.Response {
	a, err := protocol.Pack(echoReply)
	if err != nil {
		panic(err)
	}
	return &protocol.Response{Message: a}
}()

func echo(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *protocol.GetSession:
		ctx.Respond(echoReply)
	case *protocol.Envelope:
		ctx.Respond(echoResponse)
	}
}

// echoKinds are the baseline grains: "echo" with protoactor's stock props
// (a new goroutine per mailbox burst), "echo-pooled" on the worker
// dispatcher our grains use, which isolates the hosting work itself.
func echoKinds() []*pcluster.Kind {
	return []*pcluster.Kind{
		pcluster.NewKind("echo", actor.PropsFromFunc(echo)),
		pcluster.NewKind("echo-pooled", actor.PropsFromFunc(echo,
			actor.WithDispatcher(newWorkerDispatcher(maxDispatchWorkers, dispatchThroughput)))),
	}
}

func benchHost(b *testing.B, cfg Config) *Host {
	b.Helper()
	if cfg.Journal == nil {
		store := openStore(b, nil, b.TempDir())
		b.Cleanup(func() { store.Close() })
		cfg.Journal = store
	}
	cfg.rawKinds = echoKinds()
	return startHost(b, cfg)
}

func BenchmarkHostRequest(b *testing.B) {
	h := benchHost(b, Config{})
	createSession(b, h, "bench", time.Hour)
	for i := range 8 {
		createSession(b, h, fmt.Sprintf("bench-%d", i), time.Hour)
	}
	ctx := context.Background()
	get := &protocol.GetSession{}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.Request(ctx, session.KindName, "bench", get); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		// 16 callers over 8 sessions: activations run side by side and
		// two callers share each mailbox.
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			id := fmt.Sprintf("bench-%d", next.Add(1)%8)
			for pb.Next() {
				if _, err := h.Request(ctx, session.KindName, id, get); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkRawProtoactorGrain(b *testing.B) {
	h := benchHost(b, Config{})
	get := &protocol.GetSession{}
	for _, kind := range []string{"echo", "echo-pooled"} {
		if _, err := h.cluster.Request("bench", kind, get); err != nil {
			b.Fatal(err)
		}
		b.Run(kind+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.cluster.Request("bench", kind, get); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/parallel", func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprintf("bench-%d", next.Add(1)%8)
				for pb.Next() {
					if _, err := h.cluster.Request(id, kind, get); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	// Our request path (Envelope out, Response back, packed and unpacked
	// like Host.Request does) to the pooled echo grain: everything but the
	// hosting adapter.
	b.Run("echo-pooled/host-path", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			payload, err := protocol.Pack(get)
			if err != nil {
				b.Fatal(err)
			}
			env := &protocol.Envelope{Kind: "echo-pooled", Id: "bench", RequestId: h.nextRequestID(), Payload: payload}
			resp, err := h.call(ctx, "echo-pooled", "bench", env, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := decodeResponse(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The floor: a RequestFuture straight to the grain's PID, no cluster
	// lookup, cache or retry loop at all.
	b.Run("echo/future-to-pid", func(b *testing.B) {
		pid := h.pidOf("echo", "bench")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.system.Root.RequestFuture(pid, get, 5*time.Second).Result(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkActivationCold measures activations from the store: b.N sessions
// are created and the host restarted, so every request below activates one
// (journal load, Restore/Apply, then the GetSession). Reports activations per
// second and the p99 latency of an activating request.
//
//	go test -run x -bench ActivationCold -benchtime 2000x ./cluster/
func BenchmarkActivationCold(b *testing.B) {
	for _, workers := range []int{1, 16} {
		b.Run(fmt.Sprintf("callers=%d", workers), func(b *testing.B) {
			store := openStore(b, nil, b.TempDir())
			defer store.Close()
			n := b.N
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("cold-%d", i)
			}
			// Create them in parallel: the store batches the commits.
			h1 := benchHost(b, Config{Journal: store})
			parallelEach(ids, 32, func(id string) {
				m, err := h1.Request(context.Background(), session.KindName, id,
					&protocol.CreateSession{Subject: "u", ClientId: "c", TtlNanos: int64(time.Hour)})
				if err != nil || m == nil {
					b.Errorf("create %s: %v", id, err)
				}
			})
			stopHost(b, h1)
			h := benchHost(b, Config{Journal: store})

			lat := make([]time.Duration, n)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var idx atomic.Int64
			parallelEach(ids, workers, func(id string) {
				t0 := time.Now()
				if _, err := h.Request(context.Background(), session.KindName, id, &protocol.GetSession{}); err != nil {
					b.Errorf("get %s: %v", id, err)
				}
				lat[idx.Add(1)-1] = time.Since(t0)
			})
			elapsed := time.Since(start)
			b.StopTimer()
			if got := testActivations(h); got != float64(n) {
				b.Fatalf("%v activations, want %d", got, n)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(n)/elapsed.Seconds(), "activations/s")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
		})
	}
}

func testActivations(h *Host) float64 {
	return testutil.ToFloat64(h.kinds[session.KindName].m.activations)
}

// parallelEach calls f for every item from workers goroutines.
func parallelEach(items []string, workers int, f func(string)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) {
					return
				}
				f(items[i])
			}
		}()
	}
	wg.Wait()
}
