package linearizability

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// script drives a Recorder on a clock the test sets, so hand-built histories
// say exactly which operations overlap.
type script struct {
	r   *Recorder
	now int64
}

func newScript() *script {
	s := &script{}
	s.r = &Recorder{Clock: func() int64 { return s.now }}
	return s
}

// op records op by client over [call, ret] with result res.
func (s *script) op(client int, call, ret int64, op Op, res Result) {
	s.now = call
	id := s.r.Start(client, op)
	s.now = ret
	s.r.Finish(id, res)
}

func (s *script) start(client int, call int64, op Op) int {
	s.now = call
	return s.r.Start(client, op)
}

func put(key, v string) Op { return Op{Kind: Put, Key: key, Value: v} }
func get(key string) Op    { return Op{Kind: Get, Key: key} }
func cas(key string, at uint64, v string) Op {
	return Op{Kind: CAS, Key: key, ExpectVersion: at, Value: v}
}
func val(v string, version uint64) Result { return Result{Value: v, Version: version, OK: true} }

var (
	mismatch = Result{}
	unknown  = Result{Unknown: true}
)

// mustCheck fails the test unless the history's verdict is want; on an
// unexpected verdict it leaves porcupine's visualization behind.
func mustCheck(t *testing.T, r *Recorder, want porcupine.CheckResult) {
	t.Helper()
	got, err := r.Check(10 * time.Second)
	if got != want {
		path := filepath.Join(t.ArtifactDir(), "history.html")
		if verr := r.Visualize(path); verr != nil {
			t.Logf("visualize: %v", verr)
		}
		t.Fatalf("check = %v (%v), want %v; visualization: %s", got, err, want, path)
	}
	if (err == nil) != (want == porcupine.Ok) {
		t.Fatalf("check = %v with error %v", got, err)
	}
}

func TestLinearizableHistory(t *testing.T) {
	s := newScript()
	s.op(0, 0, 10, put("x", "a"), val("a", 1))
	s.op(1, 5, 15, get("x"), val("", 0)) // overlaps the put: may precede it
	s.op(1, 20, 30, get("x"), val("a", 1))
	s.op(0, 25, 35, cas("x", 1, "b"), val("b", 2))
	s.op(2, 26, 36, cas("x", 1, "c"), mismatch) // lost the race to client 0
	s.op(1, 40, 50, cas("x", 1, "d"), mismatch)
	s.op(2, 45, 55, put("y", "other"), val("other", 1)) // another key, independent
	s.op(1, 60, 70, get("x"), val("b", 2))
	s.op(0, 60, 70, get("y"), val("other", 1))
	mustCheck(t, s.r, porcupine.Ok)
}

func TestStaleReadIsCaught(t *testing.T) {
	s := newScript()
	s.op(0, 0, 10, put("x", "a"), val("a", 1))
	s.op(0, 20, 30, put("x", "b"), val("b", 2))
	// Begins after the second put was acknowledged, yet sees the first.
	s.op(1, 40, 50, get("x"), val("a", 1))
	mustCheck(t, s.r, porcupine.Illegal)

	// The evidence can be written out.
	path := filepath.Join(t.TempDir(), "stale.html")
	if err := s.r.Visualize(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("visualization not written: %v", err)
	}
}

func TestLostAcknowledgedWriteIsCaught(t *testing.T) {
	t.Run("read misses it", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(1, 20, 30, get("x"), val("", 0))
		mustCheck(t, s.r, porcupine.Illegal)
	})
	t.Run("overwritten at the same version", func(t *testing.T) {
		// Both puts were acknowledged, as version 1: one of them was lost
		// (say, by a deposed leader), even though no read returned "".
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(1, 20, 30, put("x", "b"), val("b", 1))
		mustCheck(t, s.r, porcupine.Illegal)
	})
	t.Run("cas succeeds against it", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(1, 20, 30, cas("x", 0, "b"), val("b", 1))
		mustCheck(t, s.r, porcupine.Illegal)
	})
}

func TestUnknownOutcomes(t *testing.T) {
	t.Run("unknown put later read", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), unknown)
		s.op(1, 20, 30, get("x"), val("", 0))  // not yet...
		s.op(1, 40, 50, get("x"), val("a", 1)) // ...then it took effect
		mustCheck(t, s.r, porcupine.Ok)
	})
	t.Run("unknown put never seen", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), unknown)
		s.op(1, 20, 30, get("x"), val("", 0))
		s.op(1, 40, 50, put("x", "b"), val("b", 1))
		s.op(1, 60, 70, get("x"), val("b", 1))
		mustCheck(t, s.r, porcupine.Ok)
	})
	t.Run("unknown put cannot be seen then unseen", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), unknown)
		s.op(1, 20, 30, get("x"), val("a", 1))
		s.op(1, 40, 50, get("x"), val("", 0))
		mustCheck(t, s.r, porcupine.Illegal)
	})
	t.Run("unknown put cannot take effect before its call", func(t *testing.T) {
		s := newScript()
		s.op(1, 0, 10, get("x"), val("a", 1))
		s.op(0, 20, 30, put("x", "a"), unknown)
		mustCheck(t, s.r, porcupine.Illegal)
	})
	t.Run("unknown cas explains a version", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(0, 20, 30, cas("x", 1, "b"), unknown)
		s.op(1, 40, 50, put("x", "c"), val("c", 3)) // the cas happened first
		mustCheck(t, s.r, porcupine.Ok)
	})
	t.Run("unknown cas with a stale version does nothing", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(0, 20, 30, cas("x", 0, "b"), unknown)
		s.op(1, 40, 50, get("x"), val("b", 2))
		mustCheck(t, s.r, porcupine.Illegal)
	})
	t.Run("unknown get is dropped", func(t *testing.T) {
		s := newScript()
		s.op(0, 0, 10, put("x", "a"), val("a", 1))
		s.op(1, 20, 30, get("x"), Result{Unknown: true, Value: "garbage", Version: 99})
		mustCheck(t, s.r, porcupine.Ok)
		if n := len(s.r.Operations()); n != 1 {
			t.Fatalf("history has %d operations, want the unknown get dropped", n)
		}
	})
	t.Run("unfinished put is unknown", func(t *testing.T) {
		s := newScript()
		s.start(0, 0, put("x", "a")) // the client is still waiting
		s.op(1, 20, 30, get("x"), val("a", 1))
		s.start(2, 40, get("x")) // an unfinished read constrains nothing
		mustCheck(t, s.r, porcupine.Ok)
	})
}

func TestRecorderMisuse(t *testing.T) {
	cases := map[string]func(s *script){
		"finished twice": func(s *script) {
			id := s.start(0, 0, put("x", "a"))
			s.r.Finish(id, val("a", 1))
			s.r.Finish(id, val("a", 1))
		},
		"unknown id":             func(s *script) { s.r.Finish(7, val("a", 1)) },
		"unknown kind":           func(s *script) { s.op(0, 0, 1, Op{Kind: "delete", Key: "x"}, val("", 0)) },
		"put not OK":             func(s *script) { s.op(0, 0, 1, put("x", "a"), Result{}) },
		"visualize before check": nil,
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			s := newScript()
			if f == nil {
				if err := s.r.Visualize(filepath.Join(t.TempDir(), "v.html")); err == nil {
					t.Fatal("Visualize before Check succeeded")
				}
				return
			}
			f(s)
			if _, err := s.r.Check(time.Second); err == nil {
				t.Fatal("Check accepted a misused recorder")
			}
		})
	}
}

// store is an in-memory register map behind one mutex: linearizable by
// construction. loseEvery > 0 makes it acknowledge every loseEvery-th write
// without keeping it.
type store struct {
	mu        sync.Mutex
	regs      map[string]state
	writes    int
	loseEvery int
}

func (s *store) do(op Op) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.regs[op.Key]
	next := state{Value: op.Value, Version: cur.Version + 1}
	switch op.Kind {
	case Get:
		return val(cur.Value, cur.Version)
	case CAS:
		if op.ExpectVersion != cur.Version {
			return mismatch
		}
	}
	s.writes++
	if s.loseEvery == 0 || s.writes%s.loseEvery != 0 {
		s.regs[op.Key] = next
	}
	return val(next.Value, next.Version)
}

// drive runs clients goroutines of n random operations each against st,
// recording them. With unknownEvery > 0 roughly one write in unknownEvery
// gets no answer: it is applied or not at random and recorded as Unknown.
func drive(st *store, clients, n, unknownEvery int, seed uint64) *Recorder {
	r := &Recorder{}
	keys := []string{"k0", "k1", "k2", "k3"}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			seen := map[string]uint64{} // last version this client saw per key
			for i := range n {
				key := keys[rng.IntN(len(keys))]
				var op Op
				switch p := rng.IntN(10); {
				case p < 4:
					op = get(key)
				case p < 7:
					op = put(key, fmt.Sprintf("c%d-%d", c, i))
				default:
					op = cas(key, seen[key], fmt.Sprintf("c%d-%d", c, i))
				}
				id := r.Start(c, op)
				if op.Kind != Get && unknownEvery > 0 && rng.IntN(unknownEvery) == 0 {
					if rng.IntN(2) == 0 {
						st.do(op)
					}
					r.Finish(id, unknown)
					continue
				}
				res := st.do(op)
				if res.OK {
					seen[key] = res.Version
				}
				r.Finish(id, res)
			}
		})
	}
	wg.Wait()
	return r
}

func TestConcurrentClientsOfALinearizableStore(t *testing.T) {
	r := drive(&store{regs: map[string]state{}}, 8, 200, 50, 1)
	if r.Len() != 8*200 {
		t.Fatalf("recorded %d ops", r.Len())
	}
	mustCheck(t, r, porcupine.Ok)
}

func TestConcurrentClientsOfAStoreThatLosesWrites(t *testing.T) {
	r := drive(&store{regs: map[string]state{}, loseEvery: 100}, 8, 200, 0, 2)
	got, err := r.Check(30 * time.Second)
	if got != porcupine.Illegal || !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("check = %v (%v), want Illegal", got, err)
	}
}
