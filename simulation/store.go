package simulation

import (
	"context"
	"time"

	"github.com/wardhq/ward/persistence"
)

// Store is the part of persistence.Store the simulated host uses: the same
// calls the production host makes, so the simulation exercises the real
// storage code.
type Store interface {
	Load(persistence.ActorKey) (*persistence.Loaded, error)
	Commit(context.Context, *persistence.Write) error
	DueTimers(until time.Time, limit int) ([]persistence.Timer, error)
	Close() error
}

// disk is the simulated node's disk. crash models a power cut: everything
// that was not synced is gone, and the Store opened before it must not be
// used again (the caller closes it after crash returns, so that nothing the
// close writes can reach the surviving disk).
type disk interface {
	open() (Store, error)
	crash()
}
