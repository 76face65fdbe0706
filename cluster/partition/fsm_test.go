package partition

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

func newTestFSM(t testing.TB) (*fsm, *persistence.Store) {
	t.Helper()
	s, err := persistence.Open("db", persistence.Options{FS: vfs.NewMem(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &fsm{store: s, ns: 1, log: quietLogger()}, s
}

func entry(t testing.TB, ws ...*persistence.Write) []byte {
	t.Helper()
	var jws []*protocol.JournalWrite
	for _, w := range ws {
		jw, err := persistence.EncodeReplicatedWrite(w)
		if err != nil {
			t.Fatal(err)
		}
		jws = append(jws, jw)
	}
	b, err := persistence.MarshalReplicatedBatch(jws)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMRefusesUndecodableEntries(t *testing.T) {
	f, s := newTestFSM(t)
	good := entry(t, write(actor(1), 1, 2))
	for name, data := range map[string][]byte{
		"empty":        nil,
		"unknown type": {9, 1, 2},
		"truncated":    good[:len(good)-3],
		"garbage":      []byte("not a journal batch at all"),
	} {
		res, ok := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: data}).(*applyResult)
		if !ok || !errors.Is(res.err, ErrBadEntry) {
			t.Errorf("%s: result %+v, want ErrBadEntry", name, res)
		}
	}
	if idx, _ := s.Namespace(1).AppliedIndex(); idx != 0 {
		t.Fatalf("bad entries moved the applied index to %d", idx)
	}
	if f.failed.Load() != nil {
		t.Fatal("a bad entry marked the replica failed; it is not a local fault")
	}
	// The replica keeps applying good entries afterwards.
	res := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 2, Data: good}).(*applyResult)
	if res.err != nil || len(res.errs) != 1 || res.errs[0] != nil {
		t.Fatalf("good entry: %+v", res)
	}
	if l, _ := s.Namespace(1).Load(actor(1)); describe(l) != seqs(2) {
		t.Fatalf("after good entry: %s", describe(l))
	}
	// Non-command entries are not the FSM's business.
	if r := f.Apply(&raft.Log{Type: raft.LogNoop, Index: 3}); r != nil {
		t.Fatalf("noop entry returned %v", r)
	}
}

func TestBadEntryThroughRaftChangesNothing(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader(10 * time.Second)
	if err := l.p.Commit(bg, write(actor(1), 1, 1)); err != nil {
		t.Fatal(err)
	}
	fut := l.p.Raft().Apply([]byte{0xde, 0xad, 0xbe, 0xef}, time.Second)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if res, ok := fut.Response().(*applyResult); !ok || !errors.Is(res.err, ErrBadEntry) {
		t.Fatalf("response %+v, want ErrBadEntry", fut.Response())
	}
	if err := l.p.Commit(bg, write(actor(1), 2, 2)); err != nil {
		t.Fatalf("commit after bad entry: %v", err)
	}
	c.converge(5 * time.Second)
	for _, nd := range c.nodes {
		if got := localLoad(t, nd, actor(1)); got != seqs(2) {
			t.Fatalf("%s: %s", nd.id, got)
		}
	}
}

func TestCommitRefusesMalformedWrites(t *testing.T) {
	c := newCluster(t, 1, nil)
	l := c.leader(10 * time.Second)
	for name, w := range map[string]*persistence.Write{
		"nil":      nil,
		"no kind":  write(persistence.ActorKey{ID: "x"}, 1, 1),
		"seq zero": write(actor(1), 0, 0),
	} {
		if err := l.p.Commit(bg, w); !errors.Is(err, persistence.ErrInvalidWrite) {
			t.Errorf("%s: %v, want ErrInvalidWrite", name, err)
		}
	}
	if err := l.p.Commit(bg, &persistence.Write{Actor: actor(1)}); err != nil {
		t.Errorf("empty write: %v", err)
	}
}

// FuzzFSMApply gives arbitrary log entries to the state machine: it must
// never panic, never mark the replica failed (decoding is not a local fault),
// and either refuse the entry whole or answer every write.
func FuzzFSMApply(f *testing.F) {
	f.Add(entry(f, write(actor(1), 1, 2)))
	f.Add(entry(f, write(actor(1), 1, 1), write(actor(2), 5, 5)))
	f.Add([]byte{1})
	f.Add([]byte{})
	fs, _ := newTestFSM(f)
	index := uint64(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		res, ok := fs.Apply(&raft.Log{Type: raft.LogCommand, Index: index, Data: data}).(*applyResult)
		if !ok {
			t.Fatal("no applyResult")
		}
		if fs.failed.Load() != nil {
			t.Fatalf("replica marked failed: %v", *fs.failed.Load())
		}
		if res.err != nil {
			if !errors.Is(res.err, ErrBadEntry) {
				t.Fatalf("entry error %v, want ErrBadEntry", res.err)
			}
			return
		}
		jws, err := persistence.DecodeReplicatedBatch(data)
		if err != nil || len(res.errs) != len(jws) {
			t.Fatalf("applied an entry that does not decode (%v) or answered %d of %d writes", err, len(res.errs), len(jws))
		}
	})
}
