package simulation

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/wardhq/ward/persistence"
)

// dataDir is the store's directory on the simulated disk.
const dataDir = "ward"

// pebbleDisk is the real persistence.Store on pebble's crashable in-memory
// filesystem: a crash keeps exactly what was synced (CrashClone with no
// unsynced data), which is what a power cut leaves on a disk that honours
// fsync.
type pebbleDisk struct {
	fs *vfs.MemFS
}

func newPebbleDisk() disk { return &pebbleDisk{fs: vfs.NewCrashableMem()} }

func (d *pebbleDisk) open() (Store, error) { return openStore(d.fs) }

// openStore opens the persistence store in dataDir on fs.
func openStore(fs vfs.FS) (Store, error) {
	st, err := persistence.Open(dataDir, persistence.Options{
		FS: fs,
		// The simulated host commits one write at a time and waits for it,
		// so a group-commit window would only cost real time.
		GroupCommitWindow: -1,
		// pebble's log lines depend on its background goroutines' timing;
		// they must not reach the run's output.
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, fmt.Errorf("open persistence store on simulated disk: %w", err)
	}
	return st, nil
}

// crash keeps only synced data. UnsyncedDataPercent stays 0: a partial
// keep draws from pebble's RNG while walking a map, which is not
// reproducible; and the store syncs before Commit returns, so a partial keep
// could only add data no acknowledged write depends on.
func (d *pebbleDisk) crash() { d.fs = d.fs.CrashClone(vfs.CrashCloneCfg{}) }
