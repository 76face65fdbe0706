package raftmux

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkAppendEntries measures AppendEntries round trips (one 256-byte
// entry each) between two transports on loopback: raft's own TCP transport
// against one group of two muxes that also carry 16 other registered groups.
// The mux touches only connection set-up, so the two should match.
//
//	go test -run '^$' -bench AppendEntries -benchtime 3s ./cluster/raftmux/
func BenchmarkAppendEntries(b *testing.B) {
	for _, kind := range []string{"tcp", "mux"} {
		b.Run(kind+"/sequential", func(b *testing.B) {
			client, server := benchPair(b, kind)
			benchAppend(b, client, server, false)
		})
		b.Run(kind+"/parallel", func(b *testing.B) {
			client, server := benchPair(b, kind)
			benchAppend(b, client, server, true)
		})
	}
}

func benchPair(b *testing.B, kind string) (client, server raft.Transport) {
	b.Helper()
	if kind == "tcp" {
		c, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 8, 10*time.Second, testHCLog("tcp"))
		if err != nil {
			b.Fatal(err)
		}
		s, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 8, 10*time.Second, testHCLog("tcp"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close(); _ = s.Close() })
		return c, s
	}
	opts := testOptions()
	opts.MaxPool = 8
	opts.Timeout = 10 * time.Second
	m1, m2 := listen(b, opts), listen(b, opts)
	for g := range uint32(16) {
		if _, err := m1.StreamLayer(100 + g); err != nil {
			b.Fatal(err)
		}
		if _, err := m2.StreamLayer(100 + g); err != nil {
			b.Fatal(err)
		}
	}
	c, err := m1.Transport(1)
	if err != nil {
		b.Fatal(err)
	}
	s, err := m2.Transport(1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c, s
}

func benchAppend(b *testing.B, client, server raft.Transport, parallel bool) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		resp := &raft.AppendEntriesResponse{Term: 1, LastLog: 1, Success: true}
		for {
			select {
			case rpc := <-server.Consumer():
				rpc.Respond(resp, nil)
			case <-stop:
				return
			}
		}
	}()
	target := server.LocalAddr()
	args := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ID: []byte("leader"), Addr: []byte(client.LocalAddr())},
		Term:              1,
		PrevLogEntry:      0,
		PrevLogTerm:       0,
		Entries:           []*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: make([]byte, 256)}},
		LeaderCommitIndex: 1,
	}
	call := func() {
		var resp raft.AppendEntriesResponse
		if err := client.AppendEntries("follower", target, args, &resp); err != nil || !resp.Success {
			b.Errorf("append entries: %v %+v", err, resp)
		}
	}
	call() // dial outside the timed loop
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(2) // 2 × GOMAXPROCS callers share the connection pool
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
		return
	}
	for b.Loop() {
		call()
	}
}

// BenchmarkDial is the mux's one cost: a new connection waits for the
// header's answer (one extra round trip) before Raft may use it.
func BenchmarkDial(b *testing.B) {
	b.Run("tcp", func(b *testing.B) {
		srv, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, testHCLog("tcp"))
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		var d raft.TCPStreamLayer
		for b.Loop() {
			c, err := d.Dial(srv.LocalAddr(), time.Second)
			if err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
	})
	b.Run("mux", func(b *testing.B) {
		m1, m2 := listen(b, testOptions()), listen(b, testOptions())
		srv, err := m2.Transport(1)
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		sl, err := m1.StreamLayer(1)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			c, err := sl.Dial(raftAddr(m2), time.Second)
			if err != nil {
				b.Fatal(err)
			}
			_ = c.Close()
		}
	})
}
