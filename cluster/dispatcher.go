package cluster

import (
	"sync"
	"sync/atomic"
)

// workerDispatcher runs grain mailboxes on a pool of long-lived goroutines.
//
// protoactor's default dispatcher starts a new goroutine for every burst of a
// mailbox. A new goroutine has a 2 KiB stack, and a step goes deep (protobuf
// reflection, the actor, the journal), so every single message paid for the
// stack to be doubled and copied several times, each copy walking every
// frame: a third of the CPU of a request in profiles. A worker keeps its grown
// stack across messages.
//
// Schedule never blocks: a burst goes to an idle worker if there is one,
// else to a new worker while there are fewer than maxWorkers, else to a
// plain goroutine. That matters because bursts block (a commit waits for an
// fsync) and one mailbox's burst schedules others.
type workerDispatcher struct {
	work       chan func() // unbuffered: a send succeeds only if a worker is idle
	quit       chan struct{}
	stopOnce   sync.Once
	workers    atomic.Int32
	maxWorkers int32
	throughput int
}

func newWorkerDispatcher(maxWorkers, throughput int) *workerDispatcher {
	return &workerDispatcher{
		work:       make(chan func()),
		quit:       make(chan struct{}),
		maxWorkers: int32(maxWorkers),
		throughput: throughput,
	}
}

func (d *workerDispatcher) Throughput() int { return d.throughput }

func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
		return
	default:
	}
	if d.workers.Add(1) <= d.maxWorkers {
		go d.worker(fn)
		return
	}
	d.workers.Add(-1)
	go fn()
}

func (d *workerDispatcher) worker(fn func()) {
	defer d.workers.Add(-1)
	for {
		fn()
		select {
		case fn = <-d.work:
		case <-d.quit:
			return
		}
	}
}

// stop lets idle workers exit; bursts scheduled later run on plain
// goroutines.
func (d *workerDispatcher) stop() {
	d.stopOnce.Do(func() { close(d.quit) })
}
