package partition

import (
	"reflect"

	"github.com/hashicorp/raft"
)

// waitFuture waits for a raft future, or until the partition's raft has shut
// down.
//
// Why not just f.Error(): raft hands committed entries (and barriers) to its
// FSM goroutine through a buffered channel, and on shutdown that goroutine
// exits without answering what is still queued (raft v1.8 fsm.go runFSM), so
// their futures never resolve. Raft's futures have an exported ShutdownCh
// that makes Error() give up when it closes (raft sets it on some of its own
// futures); we set it to raftDown, which Close closes once raft.Shutdown has
// returned. Should a future raft version hide the field, the fallback waits
// on a helper goroutine instead; that goroutine can then outlive Close, but
// only for a future raft dropped at shutdown.
func (p *Partition) waitFuture(f raft.Future) error {
	if setShutdownCh(f, p.raftDown) {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-p.raftDown:
		return raft.ErrRaftShutdown
	}
}

// setShutdownCh sets f's ShutdownCh field if it has a settable one of the
// right type. Only the goroutine that calls Error() reads the field, so
// setting it before that call races with nothing.
func setShutdownCh(f raft.Future, ch chan struct{}) bool {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	fld := v.Elem().FieldByName("ShutdownCh")
	if !fld.IsValid() || !fld.CanSet() || fld.Type() != reflect.TypeOf(ch) {
		return false
	}
	fld.Set(reflect.ValueOf(ch))
	return true
}
