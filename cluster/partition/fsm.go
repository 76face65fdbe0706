package partition

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
)

// applyResult is what the state machine returns for a journal entry; the
// leader's waiter reads it from the apply future.
type applyResult struct {
	skipped bool
	errs    []error // per write
	err     error   // the whole entry failed; nothing applied
}

// fsm applies journal batches to the partition's namespace.
type fsm struct {
	store     *persistence.Store
	ns        uint32
	partition uint32
	log       *slog.Logger
	metrics   *metrics
	// failed is set when the local store failed to apply an entry. From
	// then on nothing is applied: applying later entries on top of a missing
	// one would diverge from the other replicas. A restart replays from the
	// stored applied index.
	failed atomic.Pointer[error]
	// skipped counts entries found already applied (replayed after a restart).
	skipped atomic.Uint64
}

var _ raft.FSM = (*fsm)(nil)

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if errp := f.failed.Load(); errp != nil {
		return &applyResult{err: fmt.Errorf("entry %d: %w: %w", l.Index, ErrFailed, *errp)}
	}
	entry, err := persistence.DecodeReplicatedEntry(l.Data)
	if err != nil {
		// Every replica decodes the same bytes the same way, so refusing the
		// entry keeps them identical; it is still an anomaly worth a log line.
		f.log.Error("refusing undecodable log entry", "index", l.Index, "err", err)
		return &applyResult{err: fmt.Errorf("entry %d: %w: %w", l.Index, ErrBadEntry, err)}
	}
	jws := entry.GetWrites()
	res, err := f.store.ApplyReplicatedEntry(f.ns, l.Index, entry)
	if err != nil {
		f.failed.Store(&err)
		f.log.Error("local store failed to apply entry; replica stops applying until restarted", "index", l.Index, "err", err)
		return &applyResult{err: fmt.Errorf("entry %d: %w: %w", l.Index, ErrFailed, err)}
	}
	if f.metrics != nil {
		f.metrics.appliedWrites.Add(float64(len(jws)))
	}
	if res.Skipped {
		f.skipped.Add(1)
	}
	return &applyResult{skipped: res.Skipped, errs: res.Errs}
}

// Snapshot implements raft.FSM. Raft calls it on the apply goroutine, so the
// pebble snapshot taken here matches the applied index exactly; Persist
// streams it later on raft's snapshot goroutine.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if errp := f.failed.Load(); errp != nil {
		return nil, fmt.Errorf("partition %d: snapshot: %w: %w", f.partition, ErrFailed, *errp)
	}
	s, err := f.store.SnapshotNamespace(f.ns)
	if err != nil {
		return nil, fmt.Errorf("partition %d: snapshot: %w", f.partition, err)
	}
	return &fsmSnapshot{snap: s, partition: f.partition}, nil
}

// Restore implements raft.FSM: the namespace is replaced by the snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer func() { _ = rc.Close() }()
	if err := f.store.RestoreNamespace(f.ns, rc); err != nil {
		return fmt.Errorf("partition %d: restore snapshot: %w", f.partition, err)
	}
	// A restore from a healthy replica replaces whatever this one failed
	// on, so it may apply again.
	f.failed.Store(nil)
	return nil
}

type fsmSnapshot struct {
	snap      *persistence.NamespaceSnapshot
	partition uint32
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("partition %d: persist snapshot: %w", s.partition, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("partition %d: close snapshot sink: %w", s.partition, err)
	}
	return nil
}

func (s *fsmSnapshot) Release() { _ = s.snap.Close() }
