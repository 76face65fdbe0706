package partition

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wardhq/ward/persistence"
)

func TestMetricsRegisterAndUnregister(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := persistence.Open(t.TempDir(), persistence.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	addr, trans := raft.NewInmemTransport("solo")
	p, err := Open(Config{
		ID: 7, Store: s, Transport: trans, LocalID: "solo",
		Bootstrap: []raft.Server{{ID: "solo", Address: addr}},
		Raft:      testRaftConfig(), Registerer: reg, Logger: quietLogger(), RaftLogOutput: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.IsReady() {
		if time.Now().After(deadline) {
			t.Fatal("single replica never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Commit(bg, write(actor(1), 1, 3)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "ward_partition_leader", "ward_partition_batch_writes", "ward_partition_applied_index"); err != nil || n != 3 {
		t.Fatalf("gathered %d series, %v", n, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "ward_partition_leader" && mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("leader gauge %v, want 1", mf.GetMetric()[0].GetGauge().GetValue())
		}
		if mf.GetName() == "ward_partition_applied_index" && mf.GetMetric()[0].GetGauge().GetValue() < 1 {
			t.Errorf("applied index gauge %v", mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Fatalf("%d series left registered after Close", n)
	}
}
