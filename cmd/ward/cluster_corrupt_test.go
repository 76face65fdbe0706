package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
)

// corruptLastRaftEntry flips bytes in the stored value of the last raft log
// entry of group (partition p is group p+1) in the node's pebble store,
// keeping the key. It returns the entry's index. The node must be stopped.
//
// The key layout is persistence/raftstore's (keys.go): 0xF0, the group as
// 4 big-endian bytes, the family byte 'l', the index as 8 big-endian bytes;
// the value is framed (codec.go): a version byte and a CRC32-C of the body.
func corruptLastRaftEntry(t *testing.T, dataDir string, group uint32) uint64 {
	t.Helper()
	st, err := persistence.Open(filepath.Join(dataDir, "store"), persistence.Options{})
	if err != nil {
		t.Fatalf("open the stopped node's store: %v", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Fatalf("close store: %v", err)
		}
	}()
	prefix := binary.BigEndian.AppendUint32([]byte{0xF0}, group)
	lower, upper := append(slices.Clone(prefix), 'l'), append(slices.Clone(prefix), 'l'+1)
	db := st.DB()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Last() {
		_ = it.Close()
		t.Fatalf("group %d has no raft log entries", group)
	}
	key := slices.Clone(it.Key())
	val := slices.Clone(it.Value())
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(key) != len(lower)+8 || len(val) < 8 {
		t.Fatalf("unexpected raft log key %x / value of %d bytes", key, len(val))
	}
	index := binary.BigEndian.Uint64(key[len(lower):])
	bad := slices.Clone(val)
	for i := 5; i < len(bad); i += 3 { // leave the frame header, flip the body
		bad[i] ^= 0x5A
	}
	if bytes.Equal(bad, val) {
		t.Fatal("corruption changed nothing")
	}
	if err := db.Set(key, bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	return index
}

// TestClusterCorruptRaftEntry: a node whose stored raft log entry is
// corrupt fails loudly on restart, and the two healthy nodes go on taking
// writes for every register.
func TestClusterCorruptRaftEntry(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	const P = cluster.DefaultPartitions

	// One register on every partition.
	ids := make([]string, P)
	for i, found := 0, 0; found < P; i++ {
		id := fmt.Sprintf("cr-%d", i)
		if p := placement.PartitionOf(register.KindName, id, P); ids[p] == "" {
			ids[p] = id
			found++
		}
	}
	// Placement may lag the healthy status by a moment: retry (bounded).
	writesUntil := time.Now().Add(30 * time.Second)
	for round := range 3 {
		for i, id := range ids {
			via := c.names()[(i+round)%3]
			for {
				_, err := c.put(via, id, fmt.Sprintf("v%d", round))
				if err == nil {
					break
				}
				if time.Now().After(writesUntil) {
					t.Fatalf("put %s via %s on the freshly formed, healthy cluster: still failing after 30s: %v", id, via, err)
				}
				t.Logf("put %s via %s: %v (retrying)", id, via, err)
				time.Sleep(250 * time.Millisecond)
			}
		}
	}

	// The victim: not the meta leader, the one leading fewest partitions;
	// the corrupted partition: one it follows.
	st, err := c.status("n1")
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	fewest := P + 1
	for _, m := range st.Members {
		if m.Name != st.Meta.Leader && m.Leaders < fewest {
			victim, fewest = m.Name, m.Leaders
		}
	}
	part := -1
	for _, ps := range st.Partitions {
		if ps.Leader != victim && slices.Contains(ps.Replicas, victim) {
			part = ps.ID
			break
		}
	}
	if victim == "" || part < 0 {
		b, _ := json.MarshalIndent(st, "", " ")
		t.Fatalf("no victim/partition to corrupt in status:\n%s", b)
	}
	var live []string
	for _, n := range c.names() {
		if n != victim {
			live = append(live, n)
		}
	}

	c.stop(victim)
	index := corruptLastRaftEntry(t, c.node(victim).dir, uint32(part)+1)
	t.Logf("stopped %s (meta leader %s); corrupted its raft log entry %d of partition %d (group %d)", victim, st.Meta.Leader, index, part, part+1)

	n := c.node(victim)
	logStart, _ := n.log.Seek(0, 2) // only judge what the restart writes
	c.start(victim)
	restarted := time.Now()

	// Meanwhile the others take writes for every register.
	pending := slices.Clone(ids)
	for len(pending) > 0 && time.Since(restarted) < 20*time.Second {
		var still []string
		for i, id := range pending {
			if _, err := c.put(live[i%2], id, "after-corruption"); err != nil {
				still = append(still, id)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(pending) > 0 {
		t.Fatalf("the healthy nodes %v took no write within 20s for %v", live, pending)
	}
	t.Logf("healthy nodes %v took a write on every register %s after the restart", live, time.Since(restarted).Round(time.Millisecond))

	// The victim must have stopped by now, non-zero, naming the damage.
	var exitErr error
	select {
	case exitErr = <-n.done:
		n.done <- exitErr // for the harness's cleanup
	case <-time.After(max(0, 10*time.Second-time.Since(restarted))):
		t.Fatalf("%s is still running 10s after restarting on a corrupt raft log entry %d of partition %d", victim, index, part)
	}
	b, _ := os.ReadFile(n.log.Name())
	after := string(b[min(int(logStart), len(b)):])
	if exitErr == nil {
		t.Fatalf("%s exited 0 after finding a corrupt raft entry; log:\n%s", victim, after)
	}
	var named string
	for _, line := range strings.Split(after, "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "corrupt") && strings.Contains(line, fmt.Sprintf("partition %d", part)) {
			named = line
			break
		}
	}
	if named == "" {
		t.Fatalf("%s exited (%v) without an ERROR naming the corruption of partition %d; log since restart:\n%s", victim, exitErr, part, after)
	}
	t.Logf("%s failed loudly: %v; %s", victim, exitErr, named)
}
