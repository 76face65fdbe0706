package partition

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

var (
	// ErrNotLeader: this node is not the partition's leader. Errors carrying
	// it are *NotLeaderError values naming the leader when known.
	ErrNotLeader = errors.New("not the partition leader")
	// ErrNotReady: this node is the leader but has not yet caught up its
	// state machine in this term (its barrier is pending). Retry shortly.
	ErrNotReady = errors.New("partition leader not caught up yet")
	// ErrOutcomeUnknown: the write was proposed but leadership was lost or
	// the partition shut down before its outcome was known; it may or may
	// not have been applied.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrClosed: the partition was closed.
	ErrClosed = errors.New("partition closed")
	// ErrFailed: the local store failed while applying an entry; this
	// replica stopped applying and must be closed and reopened.
	ErrFailed = errors.New("partition replica failed")
	// ErrBadEntry: a Raft log entry could not be decoded. It was applied
	// nowhere (every replica decodes the same bytes the same way).
	ErrBadEntry = errors.New("undecodable partition log entry")
)

// NotLeaderError is returned by operations that need the leader.
type NotLeaderError struct {
	Partition     uint32
	LeaderID      raft.ServerID      // empty when no leader is known
	LeaderAddress raft.ServerAddress // empty when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" && e.LeaderAddress == "" {
		return fmt.Sprintf("partition %d: not the leader, and no leader is known", e.Partition)
	}
	return fmt.Sprintf("partition %d: not the leader; leader is %s at %s", e.Partition, e.LeaderID, e.LeaderAddress)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
