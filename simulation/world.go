package simulation

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Epoch is where virtual time starts in every run.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// maxEvents stops a run that does not terminate (a bug in the world, not
// in the code under test).
const maxEvents = 20_000_000

// world is one run: the virtual clock, the event queue and the seeded
// streams, the host and the workload. Everything runs in the goroutine that
// called Run.
type world struct {
	cfg Config
	now time.Time
	// tick counts processed events. It orders happenings at the same virtual
	// instant, so "a reply was received before a request was sent" is exact.
	tick  uint64
	queue eventQueue
	seq   uint64

	// Independent streams, so that (for example) a change in how the
	// workload chooses ops does not shift every network delay.
	net      *rand.Rand // message delays, disk latency, timer firing
	faults   *rand.Rand // crash instants and crash points
	work     *rand.Rand // client choices
	entropy  *rand.ChaCha8
	stopped  bool
	fatalErr error
	// faultsOff is set for the end of the drain, so every timer can fire.
	faultsOff bool

	trace  *tracer
	report Report
	host   *host
	load   *workload
}

type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

// eventQueue orders events by (time, sequence number): ties at one virtual
// instant run in the order they were scheduled.
type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// stream derives an independent ChaCha8 stream from the seed.
func stream(seed uint64, name string) *rand.ChaCha8 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	return rand.NewChaCha8(sha256.Sum256(append([]byte("ward/simulation/"+name+"/"), b[:]...)))
}

func newWorld(cfg Config) *world {
	w := &world{
		cfg:     cfg,
		now:     Epoch,
		net:     rand.New(stream(cfg.Seed, "net")),
		faults:  rand.New(stream(cfg.Seed, "faults")),
		work:    rand.New(stream(cfg.Seed, "work")),
		entropy: stream(cfg.Seed, "entropy"),
		trace:   newTracer(Epoch, cfg.KeepTrace),
	}
	w.report.Seed = cfg.Seed
	w.report.ViolationDetails = []string{}
	return w
}

// after schedules fn at now+d.
func (w *world) after(d time.Duration, fn func()) {
	if d < 0 {
		d = 0
	}
	w.seq++
	heap.Push(&w.queue, &event{at: w.now.Add(d), seq: w.seq, fn: fn})
}

// run processes events until the workload stops the world.
func (w *world) run() error {
	for !w.stopped && w.fatalErr == nil {
		if w.queue.Len() == 0 {
			return errors.New("simulation: event queue ran dry before the workload finished")
		}
		if w.tick >= maxEvents {
			return fmt.Errorf("simulation: no end after %d events", maxEvents)
		}
		e := heap.Pop(&w.queue).(*event)
		w.now = e.at
		w.tick++
		e.fn()
	}
	return w.fatalErr
}

// fatal stops the run with an error from the infrastructure (the store
// failing to open, say): not a property violation, a broken run.
func (w *world) fatal(err error) {
	if w.fatalErr == nil {
		w.fatalErr = err
	}
}

func (w *world) tr(line string) { w.trace.add(w.now, line) }

// violate records a broken invariant.
func (w *world) violate(format string, args ...any) {
	d := fmt.Sprintf("t=%s ", w.now.Sub(Epoch)) + fmt.Sprintf(format, args...)
	w.report.Violations++
	if len(w.report.ViolationDetails) < maxViolationDetails {
		w.report.ViolationDetails = append(w.report.ViolationDetails, d)
	}
	w.tr("VIOLATION " + d)
}

// between draws a duration uniformly from [lo, hi].
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
