// Package linearizability records client histories against register actors
// and checks them with porcupine.
//
// Why: DESIGN.md §7 promises that an acknowledged write is never lost, on
// kill -9, partition or leader change. Invariants on final state cannot see a
// stale read or a write that vanished and came back; a linearizability check
// of what clients actually observed can. The register kind (actors/register)
// is the subject because its semantics are tiny and every write goes through
// the whole write-ahead path, so any violation found is the runtime's.
//
// Usage: every client calls Start before it sends a command and Finish with
// what it observed once it has an answer (or has given up: Unknown). Then
// Check. Operations whose outcome is unknown, and operations still running
// when Check is called, are modelled as possibly having happened at any time
// after their call: their return is placed at +infinity. Reads with an
// unknown outcome constrain nothing and are dropped.
package linearizability

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Operation kinds.
const (
	Put = "put"
	Get = "get"
	CAS = "cas"
)

// Op is one client command: a put, get or compare-and-set on the register
// Key.
type Op struct {
	Kind          string // Put, Get or CAS
	Key           string
	Value         string // put and cas
	ExpectVersion uint64 // cas
}

// Result is what the client observed.
type Result struct {
	// Value and Version are the register's reply (for a successful put or
	// cas, the new value and version).
	Value   string
	Version uint64
	// OK is false when a cas was refused because the version did not match
	// (ERROR_CODE_FAILED_PRECONDITION); it must be true for every other
	// known outcome.
	OK bool
	// Unknown means the client got no definite answer (timeout, lost
	// connection, unavailable, any error other than a cas mismatch): the op
	// may or may not have taken effect. When Unknown is set the other fields
	// are ignored.
	Unknown bool
}

// state is one register in the model; comparable, so porcupine's default
// equality works.
type state struct {
	Value   string
	Version uint64
}

// Model is the sequential specification of a map of register actors,
// partitioned per key. It matches actors/register: a put sets the value and
// increments the version; a cas succeeds iff its expected version is the
// current one; a get returns value and version. Inputs are Op, outputs
// Result.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition:      partition,
		PartitionEvent: partitionEvents,
		Init:           func() any { return state{} },
		Step:           step,
		Hash: func(s any) uint64 {
			st := s.(state)
			h := fnv.New64a()
			h.Write([]byte(st.Value))
			return h.Sum64() ^ st.Version*0x9e3779b97f4a7c15
		},
		DescribeOperation: describeOperation,
		DescribeState: func(s any) string {
			st := s.(state)
			return fmt.Sprintf("%q@%d", st.Value, st.Version)
		},
	}
}

func step(s, in, out any) (bool, any) {
	st, op, res := s.(state), in.(Op), out.(Result)
	next := state{Value: op.Value, Version: st.Version + 1}
	switch op.Kind {
	case Get:
		if res.Unknown {
			return true, st
		}
		return res.Value == st.Value && res.Version == st.Version, st
	case Put:
		if res.Unknown {
			// Linearized at all, it took effect; "never took effect" is
			// the linearization at +infinity.
			return true, next
		}
		return res.OK && res.Value == next.Value && res.Version == next.Version, next
	case CAS:
		matches := op.ExpectVersion == st.Version
		if res.Unknown {
			if matches {
				return true, next
			}
			return true, st
		}
		if !res.OK {
			return !matches, st
		}
		return matches && res.Value == next.Value && res.Version == next.Version, next
	default:
		return false, st
	}
}

func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range history {
		k := op.Input.(Op).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func partitionEvents(history []porcupine.Event) [][]porcupine.Event {
	keyOf := map[int]string{} // op id -> key, from its call event
	byKey := map[string][]porcupine.Event{}
	var keys []string
	for _, ev := range history {
		if ev.Kind == porcupine.CallEvent {
			keyOf[ev.Id] = ev.Value.(Op).Key
		}
		k := keyOf[ev.Id]
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], ev)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Event, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func describeOperation(in, out any) string {
	op, res := in.(Op), out.(Result)
	var call string
	switch op.Kind {
	case Put:
		call = fmt.Sprintf("put(%s, %q)", op.Key, short(op.Value))
	case CAS:
		call = fmt.Sprintf("cas(%s, @%d, %q)", op.Key, op.ExpectVersion, short(op.Value))
	default:
		call = fmt.Sprintf("%s(%s)", op.Kind, op.Key)
	}
	switch {
	case res.Unknown:
		return call + " -> ?"
	case !res.OK:
		return call + " -> mismatch"
	default:
		return fmt.Sprintf("%s -> %q@%d", call, short(res.Value), res.Version)
	}
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// Recorder collects a history from concurrent clients. The zero value is
// ready to use and stamps operations with a monotonic clock; set Clock
// before first use to supply another (e.g. a simulation's virtual or logical
// clock). All methods are safe for concurrent use.
type Recorder struct {
	// Clock returns the current time in nanoseconds; it must never go
	// backwards. Nil means monotonic wall time since the first call.
	Clock func() int64

	mu    sync.Mutex
	start time.Time
	ops   []record
	errs  []error
	info  *porcupine.LinearizationInfo
}

type record struct {
	client   int
	op       Op
	call     int64
	ret      int64
	res      Result
	finished bool
}

func (r *Recorder) now() int64 {
	if r.Clock != nil {
		return r.Clock()
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	return int64(time.Since(r.start)) // monotonic: time.Now carries a monotonic reading
}

// Start records that client is about to issue op and returns the id to
// Finish it with. Call it before the command leaves the client.
func (r *Recorder) Start(client int, op Op) (id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if op.Kind != Put && op.Kind != Get && op.Kind != CAS {
		r.errs = append(r.errs, fmt.Errorf("op %d: unknown kind %q", len(r.ops), op.Kind))
	}
	r.ops = append(r.ops, record{client: client, op: op, call: r.now()})
	return len(r.ops) - 1
}

// Finish records what the client observed for op id. Call it after the
// answer arrived (or the client gave up, with Unknown set).
func (r *Recorder) Finish(id int, res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	switch {
	case id < 0 || id >= len(r.ops):
		r.errs = append(r.errs, fmt.Errorf("finish of unknown op %d", id))
	case r.ops[id].finished:
		r.errs = append(r.errs, fmt.Errorf("op %d finished twice", id))
	case !res.OK && !res.Unknown && r.ops[id].op.Kind != CAS:
		// Only a cas can be refused without doubt about its effect; any
		// other failure must be reported as Unknown.
		r.errs = append(r.errs, fmt.Errorf("op %d: %s finished with OK false; report failures as Unknown", id, r.ops[id].op.Kind))
	default:
		r.ops[id].ret, r.ops[id].res, r.ops[id].finished = t, res, true
	}
}

// Len returns the number of operations started so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// Operations returns the history as porcupine sees it: unknown writes and
// unfinished operations return at +infinity, unknown or unfinished reads are
// left out.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.operations()
}

func (r *Recorder) operations() []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(r.ops))
	for _, rec := range r.ops {
		res, ret := rec.res, rec.ret
		if !rec.finished {
			res = Result{Unknown: true}
		}
		if res.Unknown {
			if rec.op.Kind == Get {
				continue
			}
			ret = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{
			ClientId: rec.client,
			Input:    rec.op,
			Call:     rec.call,
			Output:   res,
			Return:   ret,
		})
	}
	return ops
}

// ErrNotLinearizable is returned (wrapped) by Check when the history has no
// linearization.
var ErrNotLinearizable = errors.New("history is not linearizable")

// ErrCheckTimedOut is returned (wrapped) by Check when porcupine gave up
// before deciding.
var ErrCheckTimedOut = errors.New("linearizability check timed out")

// Check runs porcupine over the history recorded so far (0 timeout: no
// limit). The error is nil only for porcupine.Ok: it wraps
// ErrNotLinearizable for porcupine.Illegal, ErrCheckTimedOut for
// porcupine.Unknown, and also reports misuse of the Recorder (a Finish of an
// unknown op, an op finished twice, an unknown kind), which makes the history
// untrustworthy. After a failure, Visualize writes the evidence.
func (r *Recorder) Check(timeout time.Duration) (porcupine.CheckResult, error) {
	r.mu.Lock()
	ops := r.operations()
	misuse := errors.Join(r.errs...)
	r.mu.Unlock()

	res, info := porcupine.CheckOperationsVerbose(Model(), ops, timeout)

	r.mu.Lock()
	r.info = &info
	r.mu.Unlock()

	if misuse != nil {
		return res, fmt.Errorf("recorder misused: %w", misuse)
	}
	switch res {
	case porcupine.Ok:
		return res, nil
	case porcupine.Illegal:
		return res, fmt.Errorf("%d operations: %w", len(ops), ErrNotLinearizable)
	default:
		return res, fmt.Errorf("%d operations after %s: %w", len(ops), timeout, ErrCheckTimedOut)
	}
}

// Visualize writes porcupine's interactive HTML view of the last Check
// (each key's history and its longest partial linearizations) to path.
// Call it when Check fails and point the reader at the file.
func (r *Recorder) Visualize(path string) error {
	r.mu.Lock()
	info := r.info
	r.mu.Unlock()
	if info == nil {
		return errors.New("visualize: no Check has run yet")
	}
	if err := porcupine.VisualizePath(Model(), *info, path); err != nil {
		return fmt.Errorf("visualize to %s: %w", path, err)
	}
	return nil
}
