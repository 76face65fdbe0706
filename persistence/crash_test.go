package persistence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestCrashKeepsAcknowledgedWrites cuts power (CrashClone keeps only synced
// data, plus a random share of unsynced data in the second round) while
// writers are busy, and checks that every write whose Commit had returned
// nil survives, and that what survives is a clean prefix of each journal.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	for _, unsynced := range []int{0, 50} {
		t.Run(fmt.Sprintf("unsynced%d", unsynced), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s := openT(t, fs, "/data")
			const writers = 8
			var acked [writers]atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					a := ActorKey{Kind: "crash", ID: fmt.Sprint(g)}
					for i := uint64(1); ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						w := events(a, i, i)
						if i%7 == 0 {
							w.Snapshot = &Snapshot{Seq: i, State: state(fmt.Sprint(i))}
						}
						w.Timers = []TimerChange{{Name: "last", Due: unix(int64(i))}}
						if err := s.Commit(context.Background(), w); err != nil {
							if !errors.Is(err, ErrClosed) {
								t.Errorf("Commit: %v", err)
							}
							return
						}
						acked[g].Store(i)
					}
				})
			}
			time.Sleep(30 * time.Millisecond)

			// Read the acknowledgements first: anything acknowledged
			// before the clone must be in it.
			var floor [writers]uint64
			for g := range writers {
				floor[g] = acked[g].Load()
			}
			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(1, uint64(unsynced)))})
			close(stop)
			wg.Wait()
			closeT(t, s)

			c := openT(t, clone, "/data")
			defer closeT(t, c)
			total := uint64(0)
			for g := range writers {
				a := ActorKey{Kind: "crash", ID: fmt.Sprint(g)}
				l := loadT(t, c, a)
				total += floor[g]
				if l.LastSeq < floor[g] {
					t.Errorf("%s: recovered up to seq %d, but %d was acknowledged", a, l.LastSeq, floor[g])
				}
				// Load already checks contiguity; check contents too.
				next := uint64(1)
				if l.Snapshot != nil {
					if got := l.Snapshot.State.(*wrapperspb.StringValue).GetValue(); got != fmt.Sprint(l.Snapshot.Seq) {
						t.Errorf("%s: snapshot at %d holds %q", a, l.Snapshot.Seq, got)
					}
					next = l.Snapshot.Seq + 1
				}
				for _, e := range l.Events {
					if got := e.(*wrapperspb.UInt64Value).GetValue(); got != next {
						t.Errorf("%s: event %d holds %d", a, next, got)
					}
					next++
				}
				// The timer written with the last surviving event is there too
				// (same batch, same atomicity).
				ts, err := c.DueTimers(unix(1<<40), 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, tm := range ts {
					if tm.Actor == a && tm.Due.Unix() != int64(l.LastSeq) {
						t.Errorf("%s: timer due %d, journal ends at %d", a, tm.Due.Unix(), l.LastSeq)
					}
				}
				// The recovered store accepts the next write.
				commitT(t, c, events(a, l.LastSeq+1, l.LastSeq+1))
			}
			if total == 0 {
				t.Fatal("no write was acknowledged before the crash; test proves nothing")
			}
			t.Logf("acknowledged before crash: %d writes", total)
		})
	}
}

// TestCrashAfterFirstBootKeepsDeepDataDir: the first boot creates the data
// directory's missing parents; a power cut right after an acknowledged write
// must not take the new directories, and the store in them, away.
func TestCrashAfterFirstBootKeepsDeepDataDir(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openT(t, fs, "/srv/ward/node-1/store")
	a := ActorKey{Kind: "crash", ID: "deep"}
	commitT(t, s, events(a, 1, 3))
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	closeT(t, s)

	c := openT(t, clone, "/srv/ward/node-1/store")
	defer closeT(t, c)
	if l := loadT(t, c, a); l.LastSeq != 3 {
		t.Fatalf("after the power cut the journal ends at %d, want 3", l.LastSeq)
	}
}
