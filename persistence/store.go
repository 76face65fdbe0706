package persistence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/protocol"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test with errors.Is.
var (
	// ErrSeqConflict: a write's sequence numbers do not follow the actor's
	// stored journal, which means another activation of the actor wrote in
	// between. The write changed nothing.
	ErrSeqConflict = errors.New("sequence conflict")
	// ErrCorrupt: stored bytes failed a checksum or could not be decoded.
	ErrCorrupt = errors.New("corrupt store")
	// ErrVersion: the data directory was written in a format this binary
	// does not read.
	ErrVersion = errors.New("unsupported store format version")
	// ErrLocked: another process (or another Store in this process) has the
	// data directory open.
	ErrLocked = errors.New("data directory locked")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalidWrite: a Write is malformed (empty actor kind, nil event,
	// FirstSeq 0, ...). It is a caller bug, not a conflict, and changed
	// nothing.
	ErrInvalidWrite = errors.New("invalid write")
)

// Defaults for Options.
const (
	DefaultGroupCommitWindow = 200 * time.Microsecond
	DefaultMaxBatchWrites    = 1024
)

// Options configure Open. The zero value is usable.
type Options struct {
	// FS is the filesystem; nil means the real disk. Tests and the
	// simulation pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// GroupCommitWindow is the longest a batch waits for more writes after
	// its first one arrives. 0 means DefaultGroupCommitWindow; negative means
	// never wait (commit whatever is queued as soon as the committer is free).
	GroupCommitWindow time.Duration
	// MaxBatchWrites caps the writes in one pebble batch; 0 means
	// DefaultMaxBatchWrites.
	MaxBatchWrites int
	// Registerer, when set, receives the store's Prometheus metrics; they
	// are unregistered again on Close.
	Registerer prometheus.Registerer
	// Logger receives pebble's messages (its info chatter at debug level);
	// nil means slog.Default().
	Logger *slog.Logger
}

// Stats are cumulative counters since Open.
type Stats struct {
	Batches  uint64 // pebble batches committed (one fsync each)
	Writes   uint64 // writes made durable
	Events   uint64 // events made durable (including ones folded into a snapshot)
	Rejected uint64 // writes refused by validation (sequence conflicts, corrupt timer records)
}

// Store is one node's actor journal database. It is safe for concurrent use.
type Store struct {
	dir     string
	db      *pebble.DB
	lock    *pebble.Lock
	ns      uint32
	log     *slog.Logger
	metrics *metrics

	window   time.Duration
	maxBatch int

	// mu guards the commit queue and the closing flag.
	mu         sync.Mutex
	queue      []*request
	spare      []*request
	closing    bool
	waitTarget int // queue length at which an enqueuer wakes a waiting committer
	wake       chan struct{}
	stopped    chan struct{}

	// dbMu keeps readers from using db while Close closes it.
	dbMu     sync.RWMutex
	dbClosed bool

	closeOnce sync.Once
	closeErr  error

	// replicas holds the apply state of each Raft-replicated namespace; see
	// replicated.go.
	replicasMu sync.Mutex
	replicas   map[uint32]*replicaSpace

	// Owned by the committer goroutine. local wraps seqs for the namespace-
	// generic validation code.
	seqs  map[string]actorSeqs
	local *journalSpace
	taken []*request

	stats struct {
		batches, writes, events, rejected atomic.Uint64
	}
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "persistence", "dir", dir)
	window := opts.GroupCommitWindow
	if window == 0 {
		window = DefaultGroupCommitWindow
	}
	maxBatch := opts.MaxBatchWrites
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchWrites
	}

	if err := mkdirAllSynced(fsys, dir); err != nil {
		return nil, fmt.Errorf("persistence: create data directory %s: %w", dir, err)
	}
	// Taking the lock ourselves, before pebble.Open, lets us tell "someone
	// else has it open" apart from every other open failure.
	lock, err := pebble.LockDirectory(dir, fsys)
	if err != nil {
		if isLockHeld(err) {
			return nil, fmt.Errorf("persistence: another ward process holds the data directory %s (its LOCK file is held): %w: %w", dir, ErrLocked, err)
		}
		return nil, fmt.Errorf("persistence: lock data directory %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, pebbleOptions(fsys, lock, logger))
	if err != nil {
		_ = lock.Close()
		if pebble.IsCorruptionError(err) {
			return nil, fmt.Errorf("persistence: data directory %s is corrupt and cannot be opened (restore it from a replica or backup): %w", dir, pebbleErr(err))
		}
		return nil, fmt.Errorf("persistence: open pebble database in %s: %w", dir, err)
	}
	s := &Store{
		dir:        dir,
		db:         db,
		lock:       lock,
		ns:         localNamespace,
		log:        logger,
		window:     window,
		maxBatch:   maxBatch,
		waitTarget: math.MaxInt,
		wake:       make(chan struct{}, 1),
		stopped:    make(chan struct{}),
		seqs:       make(map[string]actorSeqs),
	}
	s.local = &journalSpace{ns: s.ns, seqs: s.seqs}
	if err := s.checkVersion(); err != nil {
		_ = db.Close()
		_ = lock.Close()
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		_ = db.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("persistence: register metrics: %w", err)
	}
	s.metrics = m
	go s.run()
	return s, nil
}

// pebbleOptions sizes pebble for a small node. The actor journal is write-
// heavy with small values and reads happen mostly at activation, so a modest
// block cache suffices; durability comes from the synced WAL, not from
// tuning.
func pebbleOptions(fsys vfs.FS, lock *pebble.Lock, logger *slog.Logger) *pebble.Options {
	o := &pebble.Options{
		FS:                 fsys,
		Lock:               lock,
		CacheSize:          32 << 20,
		MemTableSize:       16 << 20,
		MaxOpenFiles:       512,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{logger},
		EventListener: &pebble.EventListener{
			// Pebble's default treats a bad block as fatal and exits. A
			// corrupt file is reported by the read that hit it as well, so
			// log it and let that read fail with ErrCorrupt: one damaged
			// actor should not take down every other one on the node.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				logger.Error("pebble detected corrupt data", "path", info.Path, "err", info.Details.Error())
			},
			BackgroundError: func(err error) {
				logger.Error("pebble background error", "err", err)
			},
		},
	}
	return o
}

// isLockHeld reports whether a LockDirectory error means the lock is held
// (by another process, or by this one) rather than an I/O failure. fcntl
// reports a held lock as a bare EAGAIN/EACCES; failures to create the LOCK
// file come wrapped in a *fs.PathError.
func isLockHeld(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EWOULDBLOCK) {
		return true
	}
	// pebble's default FS refuses a second lock inside one process with this
	// plain message.
	return err.Error() == "lock held by current process"
}

func (s *Store) checkVersion() error {
	v, closer, err := s.db.Get(versionKey())
	switch {
	case err == nil:
		got := string(v)
		_ = closer.Close()
		if got != formatVersion {
			return fmt.Errorf("persistence: data directory %s has format %q, this binary reads %q: %w", s.dir, got, formatVersion, ErrVersion)
		}
		return nil
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("persistence: read format version in %s: %w", s.dir, err)
	}
	// No version key: only an empty database may be initialised, or we
	// would stamp our version onto data in some other layout.
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("persistence: scan %s: %w", s.dir, err)
	}
	nonEmpty := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("persistence: scan %s: %w", s.dir, err)
	}
	if nonEmpty {
		return fmt.Errorf("persistence: data directory %s holds data but no format version (want %q): %w", s.dir, formatVersion, ErrVersion)
	}
	if err := s.db.Set(versionKey(), []byte(formatVersion), pebble.Sync); err != nil {
		return fmt.Errorf("persistence: write format version in %s: %w", s.dir, err)
	}
	return nil
}

// Close flushes queued commits, then closes the database and releases the
// directory lock. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.signal()
		<-s.stopped

		s.dbMu.Lock()
		s.dbClosed = true
		err := s.db.Close()
		s.dbMu.Unlock()
		if lerr := s.lock.Close(); lerr != nil {
			err = errors.Join(err, lerr)
		}
		s.metrics.unregister()
		if err != nil {
			s.closeErr = fmt.Errorf("persistence: close %s: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Batches:  s.stats.batches.Load(),
		Writes:   s.stats.writes.Load(),
		Events:   s.stats.events.Load(),
		Rejected: s.stats.rejected.Load(),
	}
}

// reader runs f with the database open for reads, or returns ErrClosed.
func (s *Store) reader(f func() error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.dbClosed {
		return fmt.Errorf("persistence: %s: %w", s.dir, ErrClosed)
	}
	return f()
}

// Load reads an actor's newest snapshot and every event after it. An actor
// that never wrote gets an empty Loaded with LastSeq 0.
func (s *Store) Load(key ActorKey) (*Loaded, error) {
	if err := validActor(key); err != nil {
		return nil, fmt.Errorf("persistence: load %s: %w", key, err)
	}
	var out *Loaded
	err := s.reader(func() error {
		var err error
		out, err = s.load(s.ns, key)
		return err
	})
	return out, err
}

func (s *Store) load(ns uint32, key ActorKey) (*Loaded, error) {
	// One pebble snapshot, so that a concurrent commit that snapshots the
	// actor and deletes its events cannot make us see the old snapshot
	// without the events that followed it.
	view := s.db.NewSnapshot()
	defer view.Close()

	actor := encodeActor(key)
	out := &Loaded{}
	v, closer, err := view.Get(snapshotKey(ns, actor))
	switch {
	case err == nil:
		what := "snapshot " + key.String()
		seq, state, derr := decodeSnapshotValue(v, what)
		var msg protocol.Message
		if derr == nil {
			msg, derr = protocol.Unmarshal(state)
			if derr != nil {
				derr = fmt.Errorf("persistence: %s: decode state: %w", what, derr)
			}
		}
		_ = closer.Close()
		if derr != nil {
			return nil, derr
		}
		out.Snapshot = &Snapshot{Seq: seq, State: msg}
		out.LastSeq = seq
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, fmt.Errorf("persistence: load %s: read snapshot: %w", key, pebbleErr(err))
	}

	prefix := eventPrefix(ns, actor)
	it, err := view.NewIter(&pebble.IterOptions{
		LowerBound: eventKey(ns, actor, out.LastSeq+1),
		UpperBound: prefixEnd(prefix),
	})
	if err != nil {
		return nil, fmt.Errorf("persistence: load %s: %w", key, err)
	}
	defer it.Close()
	next := out.LastSeq + 1
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+8 {
			return nil, fmt.Errorf("persistence: load %s: event key of %d bytes, want %d: %w", key, len(k), len(prefix)+8, ErrCorrupt)
		}
		_, _, seq, err := decodeEventKey(k)
		if err != nil {
			return nil, fmt.Errorf("persistence: load %s: %w: %w", key, ErrCorrupt, err)
		}
		if seq != next {
			return nil, fmt.Errorf("persistence: load %s: journal jumps from seq %d to %d: %w", key, next-1, seq, ErrCorrupt)
		}
		what := fmt.Sprintf("event %s seq %d", key, seq)
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("persistence: %s: read: %w", what, pebbleErr(err))
		}
		p, err := unframe(v, what)
		if err != nil {
			return nil, err
		}
		m, err := protocol.Unmarshal(p)
		if err != nil {
			return nil, fmt.Errorf("persistence: %s: decode: %w", what, err)
		}
		out.Events = append(out.Events, m)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("persistence: load %s: iterate events: %w", key, pebbleErr(err))
	}
	out.LastSeq = next - 1
	if out.Replies, err = loadReplies(view, ns, actor, key); err != nil {
		return nil, err
	}
	return out, nil
}

// loadReplies reads the actor's stored replies, oldest first, from the same
// pebble snapshot as its journal. Should more than MaxReplies be stored (a
// store written with a larger bound), only the newest MaxReplies are
// returned.
func loadReplies(view *pebble.Snapshot, ns uint32, actor []byte, key ActorKey) ([]Reply, error) {
	prefix := replyPrefix(ns, actor)
	it, err := view.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("persistence: load %s: %w", key, err)
	}
	defer it.Close()
	var out []Reply
	for ok := it.Last(); ok && len(out) < MaxReplies; ok = it.Prev() {
		k := it.Key()
		if len(k) != len(prefix)+8 {
			return nil, fmt.Errorf("persistence: load %s: reply key of %d bytes, want %d: %w", key, len(k), len(prefix)+8, ErrCorrupt)
		}
		what := fmt.Sprintf("reply %s #%d", key, binary.BigEndian.Uint64(k[len(prefix):]))
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("persistence: %s: read: %w", what, pebbleErr(err))
		}
		id, resp, err := decodeReplyValue(v, what)
		if err != nil {
			return nil, err
		}
		m, err := protocol.Unmarshal(resp)
		if err != nil {
			return nil, fmt.Errorf("persistence: %s: decode response: %w", what, err)
		}
		out = append(out, Reply{RequestID: id, Response: m})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("persistence: load %s: iterate replies: %w", key, pebbleErr(err))
	}
	slices.Reverse(out)
	return out, nil
}

// DueTimers returns up to limit timers due at or before until, ordered by
// due time, then actor, then name. limit <= 0 means no limit. Timers stay
// stored until their actor cancels or replaces them.
func (s *Store) DueTimers(until time.Time, limit int) ([]Timer, error) {
	var out []Timer
	err := s.reader(func() error {
		var err error
		out, err = s.dueTimers(s.ns, until, limit)
		return err
	})
	return out, err
}

func (s *Store) dueTimers(ns uint32, until time.Time, limit int) ([]Timer, error) {
	prefix := familyPrefix(ns, famDue)
	upper := prefixEnd(prefix)
	if n := timeToNanos(until); n < 1<<63-1 {
		upper = dueBound(ns, n+1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("persistence: due timers: %w", err)
	}
	defer it.Close()
	var out []Timer
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		_, due, actor, name, err := decodeDueKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("persistence: due timers: key %x: %w: %w", it.Key(), ErrCorrupt, err)
		}
		what := fmt.Sprintf("timer %s %q", actor, name)
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("persistence: %s: read: %w", what, pebbleErr(err))
		}
		p, err := unframe(v, what)
		if err != nil {
			return nil, err
		}
		t := Timer{Actor: actor, Name: name, Due: nanosToTime(due)}
		if len(p) > 0 {
			if t.Payload, err = protocol.Unmarshal(p); err != nil {
				return nil, fmt.Errorf("persistence: %s: decode payload: %w", what, err)
			}
		}
		out = append(out, t)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("persistence: due timers: %w", pebbleErr(err))
	}
	return out, nil
}

// pebbleErr marks pebble's corruption errors (failed block checksums and
// the like) with ErrCorrupt, so callers need only one test.
func pebbleErr(err error) error {
	if err != nil && pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// pebbleLogger routes pebble's messages into slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	// Pebble reports every flush and compaction at info; that is debug
	// detail for a Ward operator.
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "source", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

// Fatalf is called by pebble when continuing could lose or corrupt data
// (a failed WAL write or fsync, a broken invariant). Pebble's own logger
// exits the process; we log and panic, which also stops the process unless
// recovered, and leaves a stack for the post-mortem.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "source", "pebble", "fatal", true)
	panic("pebble: " + msg)
}

var _ io.Closer = (*Store)(nil)

// mkdirAllSynced creates dir and its missing parents and syncs each parent
// that gained an entry, so a power cut right after the first boot cannot take
// the new directory (and the synced store inside it) away.
func mkdirAllSynced(fsys vfs.FS, dir string) error {
	dir = filepath.Clean(dir)
	var created []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fsys.Stat(d); err == nil {
			break
		}
		created = append(created, d)
		if parent := filepath.Dir(d); parent == d {
			break
		}
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		parent, err := fsys.OpenDir(filepath.Dir(d))
		if err != nil {
			return fmt.Errorf("open %s to sync it: %w", filepath.Dir(d), err)
		}
		serr := parent.Sync()
		cerr := parent.Close()
		if serr != nil {
			return fmt.Errorf("sync %s: %w", filepath.Dir(d), serr)
		}
		if cerr != nil {
			return cerr
		}
	}
	return nil
}
