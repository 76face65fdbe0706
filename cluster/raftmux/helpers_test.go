package raftmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// testLogger discards logs unless WARD_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("WARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testHCLog(name string) hclog.Logger {
	if os.Getenv("WARD_TEST_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug})
	}
	return hclog.NewNullLogger()
}

func testOptions() Options {
	return Options{
		HeaderTimeout:   time.Second,
		Timeout:         2 * time.Second,
		Logger:          testLogger(),
		TransportLogger: testHCLog("raft-net"),
	}
}

func listen(t testing.TB, opts Options) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close mux: %v", err)
		}
	})
	return m
}

// groupFSM records commands; each must name its own group, so that a
// command crossing into another group's log is caught.
type groupFSM struct {
	group uint32
	mu    sync.Mutex
	cmds  map[string]bool // distinct: a retried apply may commit twice
	wrong []string
}

func (f *groupFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := string(l.Data)
	if !strings.HasPrefix(s, fmt.Sprintf("g%d:", f.group)) {
		f.wrong = append(f.wrong, s)
		return nil
	}
	if f.cmds == nil {
		f.cmds = map[string]bool{}
	}
	f.cmds[s] = true
	return len(f.cmds)
}

func (f *groupFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cmds)
}

func (f *groupFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fsmSnapshot(len(f.cmds)), nil
}

func (f *groupFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}

type fsmSnapshot int

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// testCluster is n nodes, each one mux, running one Raft group per ID.
type testCluster struct {
	t      *testing.T
	muxes  []*Mux
	groups []uint32
	rafts  map[uint32][]*raft.Raft
	fsms   map[uint32][]*groupFSM
}

func raftConfig(id string) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id)
	// Faster than the defaults (1 s) for loopback, but not so fast that
	// 51 Raft instances on two cores under the race detector hold
	// elections whenever another test package is busy.
	c.HeartbeatTimeout = 600 * time.Millisecond
	c.ElectionTimeout = 600 * time.Millisecond
	c.LeaderLeaseTimeout = 300 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 1 << 20
	c.Logger = testHCLog("raft-" + id)
	return c
}

func newTestCluster(t *testing.T, n int, groups []uint32, opts Options) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, groups: groups, rafts: map[uint32][]*raft.Raft{}, fsms: map[uint32][]*groupFSM{}}
	for range n {
		tc.muxes = append(tc.muxes, listen(t, opts))
	}
	var servers []raft.Server
	for i, m := range tc.muxes {
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: raft.ServerAddress(m.Addr().String())})
	}
	for _, g := range groups {
		for i, m := range tc.muxes {
			trans, err := m.Transport(g)
			if err != nil {
				t.Fatalf("node %d group %d: %v", i, g, err)
			}
			conf := raftConfig(fmt.Sprintf("n%d", i))
			logs, stable, snaps := raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore()
			if i == 0 {
				if err := raft.BootstrapCluster(conf, logs, stable, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
					t.Fatalf("bootstrap group %d: %v", g, err)
				}
			}
			fsm := &groupFSM{group: g}
			r, err := raft.NewRaft(conf, fsm, logs, stable, snaps, trans)
			if err != nil {
				t.Fatalf("node %d group %d: new raft: %v", i, g, err)
			}
			tc.rafts[g] = append(tc.rafts[g], r)
			tc.fsms[g] = append(tc.fsms[g], fsm)
			t.Cleanup(func() {
				// Registered after the mux's cleanup, so it runs before it.
				// Bounded: a raft bug must fail the test, not hang it.
				done := make(chan error, 1)
				go func() { done <- r.Shutdown().Error() }()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("shutdown raft: %v", err)
					}
				case <-time.After(15 * time.Second):
					t.Errorf("node %d group %d: raft shutdown still running after 15 s", i, g)
				}
				_ = trans.Close()
			})
		}
	}
	return tc
}

// leader waits until all nodes of group agree on a leader and returns it.
func (tc *testCluster) leader(group uint32, timeout time.Duration) *raft.Raft {
	tc.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var addr raft.ServerAddress
		agree := true
		for _, r := range tc.rafts[group] {
			a, _ := r.LeaderWithID()
			if a == "" || (addr != "" && a != addr) {
				agree = false
				break
			}
			addr = a
		}
		if agree {
			for _, r := range tc.rafts[group] {
				if r.State() == raft.Leader {
					return r
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatalf("group %d: no agreed leader within %v", group, timeout)
	return nil
}

// apply commits k commands in group, retrying through leader changes (a
// starved test machine may hold elections), and waits until every node
// applied the group's first want distinct commands. It runs on any
// goroutine, so it returns errors rather than failing the test.
func (tc *testCluster) apply(group uint32, k, want int) error {
	deadline := time.Now().Add(20 * time.Second)
	for i := range k {
		cmd := fmt.Sprintf("g%d:%d-%d", group, want, i)
		for {
			leader := tc.currentLeader(group)
			var err error
			if leader == nil {
				err = errors.New("no leader")
			} else if err = leader.Apply([]byte(cmd), 5*time.Second).Error(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("group %d: apply %s: %w", group, cmd, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, f := range tc.fsms[group] {
		for f.count() < want {
			if time.Now().After(deadline) {
				return fmt.Errorf("group %d: a node applied %d of %d commands", group, f.count(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.mu.Lock()
		wrong := f.wrong
		f.mu.Unlock()
		if len(wrong) > 0 {
			return fmt.Errorf("group %d applied commands of other groups: %v", group, wrong)
		}
	}
	return nil
}

func (tc *testCluster) currentLeader(group uint32) *raft.Raft {
	for _, r := range tc.rafts[group] {
		if r.State() == raft.Leader {
			return r
		}
	}
	return nil
}

// applyAll runs apply on every group at once.
func (tc *testCluster) applyAll(k, want int) {
	tc.t.Helper()
	errs := make([]error, len(tc.groups))
	var wg sync.WaitGroup
	for i, g := range tc.groups {
		wg.Go(func() { errs[i] = tc.apply(g, k, want) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tc.t.Fatal(err)
	}
}

func raftAddr(m *Mux) raft.ServerAddress { return raft.ServerAddress(m.Addr().String()) }
