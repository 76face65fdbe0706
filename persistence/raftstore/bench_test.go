package raftstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
	dto "github.com/prometheus/client_model/go"
)

// benchDB opens pebble on a real temporary directory, so syncs cost what
// the disk makes them cost.
func benchDB(b *testing.B) *pebble.DB {
	b.Helper()
	db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := db.Close(); err != nil {
			b.Error(err)
		}
	})
	return db
}

func benchLogs(from uint64, n, size int) []*raft.Log {
	logs := make([]*raft.Log, n)
	data := make([]byte, size)
	for i := range logs {
		logs[i] = &raft.Log{Index: from + uint64(i), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	return logs
}

// BenchmarkStoreLogs measures one StoreLogs call (one batch, one fsync) of
// 1 or 64 entries of 256 bytes on the uncached store.
func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s, err := NewLogStore(benchDB(b), 1)
			if err != nil {
				b.Fatal(err)
			}
			logs := benchLogs(1, batch, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
				for _, l := range logs {
					l.Index += uint64(batch)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkGetLog reads entries of 256 bytes from a 10,000-entry log on the
// uncached store, so every read is a pebble lookup.
func BenchmarkGetLog(b *testing.B) {
	s, err := NewLogStore(benchDB(b), 1)
	if err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	for i := uint64(1); i <= n; i += 1000 {
		if err := s.StoreLogs(benchLogs(i, 1000, 256)); err != nil {
			b.Fatal(err)
		}
	}
	var l raft.Log
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A stride that is coprime with n visits every entry, not in order.
		if err := s.GetLog(uint64(i*7919%n)+1, &l); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRaftBench runs hashicorp/raft's shared store benchmarks, the
// ones raft-boltdb and other stores report, for comparison.
func BenchmarkRaftBench(b *testing.B) {
	logCases := map[string]func(*testing.B, raft.LogStore){
		"FirstIndex": raftbench.FirstIndex, "LastIndex": raftbench.LastIndex,
		"GetLog": raftbench.GetLog, "StoreLog": raftbench.StoreLog,
		"StoreLogs": raftbench.StoreLogs, "DeleteRange": raftbench.DeleteRange,
	}
	for _, name := range []string{"FirstIndex", "LastIndex", "GetLog", "StoreLog", "StoreLogs", "DeleteRange"} {
		b.Run(name, func(b *testing.B) {
			s, err := NewLogStore(benchDB(b), 1)
			if err != nil {
				b.Fatal(err)
			}
			logCases[name](b, s)
		})
	}
	stableCases := map[string]func(*testing.B, raft.StableStore){
		"Set": raftbench.Set, "Get": raftbench.Get,
		"SetUint64": raftbench.SetUint64, "GetUint64": raftbench.GetUint64,
	}
	for _, name := range []string{"Set", "Get", "SetUint64", "GetUint64"} {
		b.Run(name, func(b *testing.B) {
			s, err := NewStableStore(benchDB(b), 1)
			if err != nil {
				b.Fatal(err)
			}
			stableCases[name](b, s)
		})
	}
}

// BenchmarkStoreLogsGroups: G raft groups on one database, each appending
// one 1 KiB entry at a time as a raft group's main loop does (appends of
// one group are serial; different groups run concurrently). It answers
// whether appends of different groups share fsyncs: pebble's WAL syncs
// everything written while the previous sync ran, so appends/fsync should
// grow with G without any group commit of our own.
func BenchmarkStoreLogsGroups(b *testing.B) {
	for _, groups := range []int{1, 16, 48} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			db := benchDB(b)
			stores := make([]*LogStore, groups)
			for g := range stores {
				s, err := NewLogStore(db, uint32(g+1))
				if err != nil {
					b.Fatal(err)
				}
				stores[g] = s
			}
			fsyncs := func() uint64 {
				var m dto.Metric
				if err := db.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
					b.Fatal(err)
				}
				return m.GetHistogram().GetSampleCount()
			}
			f0 := fsyncs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for g, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					logs := benchLogs(1, 1, 1024)
					// b.N appends in all, spread over the groups.
					for i := g; i < b.N; i += groups {
						if err := s.StoreLogs(logs); err != nil {
							b.Error(err)
							return
						}
						logs[0].Index++
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			b.ReportMetric(float64(b.N)/float64(fsyncs()-f0), "appends/fsync")
		})
	}
}
