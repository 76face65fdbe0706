package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
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
