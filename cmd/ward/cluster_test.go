package main

// Multi-process cluster tests: every node is a real `ward node` process on
// its own loopback address (127.0.X.i), talking gossip, raft and actor
// remoting over real sockets; the test drives them through the HTTP edge
// and the operator CLI, and kills them with SIGKILL.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/registers"
)

type tnode struct {
	name                     string
	dir                      string
	gossip, raft, http, quic string
	cmd                      *exec.Cmd
	log                      *os.File
	done                     chan error
}

type tcluster struct {
	t      testing.TB
	bin    string
	subnet int
	logDir string
	mu     sync.Mutex
	nodes  map[string]*tnode
	seeds  []string
	client *http.Client
	token  string   // the cluster's operator token, once read
	env    []string // added to every node's environment
}

func newTestCluster(t testing.TB) *tcluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test")
	}
	c := &tcluster{t: t, bin: ward(t), subnet: 100 + rand.IntN(150), nodes: map[string]*tnode{},
		client: &http.Client{Timeout: 15 * time.Second},
		// Made before the cleanup below is registered, so that it is
		// removed after that cleanup has shown the logs of a failure.
		logDir: t.TempDir()}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.Failed() {
			c.logPlacementMetrics()
		}
		for _, n := range c.nodes {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				_ = n.cmd.Process.Kill()
				<-n.done
			}
			if t.Failed() {
				if b, err := os.ReadFile(n.log.Name()); err == nil {
					t.Logf("---- log of %s: placement lines and the last 40 others ----\n%s", n.name, logExcerpt(string(b), 40))
				}
			}
		}
	})
	return c
}

// raftNoise marks the log lines raft repeats many times a second while a
// peer is down; they would push everything else out of a failure's excerpt.
var raftNoise = []string{"failed to heartbeat", "failed to appendEntries", "failed to contact", "failed to make requestVote"}

// logExcerpt keeps, in order, every placement line of a node's log (they say
// why a request found no activation) and the last n other lines that are not
// raft's repeated complaints about an unreachable peer.
func logExcerpt(log string, n int) string {
	var placementLines, rest []string
	for _, l := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(l, "activation") || strings.Contains(l, "leadership") || strings.Contains(l, "topology"):
			placementLines = append(placementLines, l)
		case slices.ContainsFunc(raftNoise, func(s string) bool { return strings.Contains(l, s) }):
		default:
			rest = append(rest, l)
		}
	}
	return strings.Join(append(placementLines, rest[max(0, len(rest)-n):]...), "\n")
}

// logPlacementMetrics logs every running node's membership and placement
// metrics (lookup misses by cause, refusals by reason): the first thing to
// read when a request found no activation. Called with c.mu held.
func (c *tcluster) logPlacementMetrics() {
	for _, n := range c.nodes {
		if n.cmd == nil || n.cmd.ProcessState != nil {
			continue
		}
		lines, err := c.metricLines(n.http)
		if err != nil {
			c.t.Logf("metrics of %s: %v", n.name, err)
			continue
		}
		var keep []string
		for _, l := range lines {
			if strings.HasPrefix(l, "ward_placement_") || strings.HasPrefix(l, "ward_membership_") {
				keep = append(keep, l)
			}
		}
		c.t.Logf("---- placement metrics of %s ----\n%s", n.name, strings.Join(keep, "\n"))
	}
}

// freePortOn returns a port free for TCP and UDP on ip.
func freePortOn(t testing.TB, ip string) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// add defines node i (1-based) without starting it.
func (c *tcluster) add(i int) *tnode {
	ip := fmt.Sprintf("127.0.%d.%d", c.subnet, i)
	n := &tnode{name: fmt.Sprintf("n%d", i), dir: filepath.Join(c.t.TempDir(), fmt.Sprintf("n%d", i)),
		gossip: freePortOn(c.t, ip), raft: freePortOn(c.t, ip), http: freePortOn(c.t, ip), quic: freePortOn(c.t, ip)}
	c.mu.Lock()
	c.nodes[n.name] = n
	if len(c.seeds) < 3 {
		c.seeds = append(c.seeds, n.gossip)
	}
	c.mu.Unlock()
	return n
}

func (c *tcluster) node(name string) *tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// start runs the node's process with the cluster's seeds.
func (c *tcluster) start(name string, extra ...string) {
	c.t.Helper()
	n := c.node(name)
	args := []string{"node", "--name", n.name, "--data", n.dir, "--gossip", n.gossip, "--raft", n.raft,
		"--http", n.http, "--quic", n.quic, "--join", strings.Join(c.seeds, ","), "--log-level", "info"}
	args = append(args, extra...)
	if n.log == nil {
		f, err := os.Create(filepath.Join(c.logDir, n.name+".log"))
		if err != nil {
			c.t.Fatal(err)
		}
		n.log = f
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.cmd = cmd
	n.done = make(chan error, 1)
	go func() { n.done <- cmd.Wait() }()
}

func (c *tcluster) kill(name string) {
	n := c.node(name)
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

func (c *tcluster) stop(name string) {
	c.t.Helper()
	n := c.node(name)
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			c.t.Errorf("%s exited with %v after SIGTERM", name, err)
		}
	case <-time.After(40 * time.Second):
		c.t.Errorf("%s did not stop within 40s of SIGTERM", name)
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// adminToken returns the cluster's operator token from the first node
// data directory that has it (every node writes <data>/admin-token once
// its meta replica holds the token).
func (c *tcluster) adminToken() string {
	c.t.Helper()
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		return tok
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, name := range c.names() {
			b, err := os.ReadFile(filepath.Join(c.node(name).dir, adminTokenFile))
			if err == nil && len(bytes.TrimSpace(b)) > 0 {
				c.mu.Lock()
				c.token = string(bytes.TrimSpace(b))
				c.mu.Unlock()
				return c.token
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no node wrote %s within 60s", adminTokenFile)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli is the ward binary with args, given the operator token through the
// environment.
func (c *tcluster) cli(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), adminTokenEnv+"="+c.adminToken())
	return cmd
}

// authorize adds the operator token to requests for admin endpoints.
func (c *tcluster) authorize(req *http.Request) {
	if strings.HasPrefix(req.URL.Path, "/cluster/") {
		req.Header.Set("Authorization", "Bearer "+c.adminToken())
	}
}

func (c *tcluster) status(via string) (*cluster.Status, error) {
	var st cluster.Status
	req, err := http.NewRequest(http.MethodGet, "http://"+c.node(via).http+cluster.StatusPath, nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status: HTTP %d: %s", resp.StatusCode, b)
	}
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitStatus polls via's status until ok holds.
func (c *tcluster) waitStatus(via string, timeout time.Duration, what string, ok func(*cluster.Status) bool) *cluster.Status {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *cluster.Status
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := c.status(via)
		if err == nil && ok(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", " ")
	c.t.Fatalf("%s: not within %s (last error %v); last status:\n%s", what, timeout, lastErr, b)
	return nil
}

// healthy: every partition has a leader and exactly the assigned replicas,
// and every listed member is in the wanted state.
func healthy(members ...string) func(*cluster.Status) bool {
	return func(st *cluster.Status) bool {
		if len(st.Partitions) == 0 || len(st.Errors) > 0 {
			return false
		}
		for _, p := range st.Partitions {
			if p.Leader == "" || !slices.Equal(p.Replicas, p.Assigned) {
				return false
			}
		}
		alive := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				alive++
			}
		}
		return alive >= len(members)
	}
}

// waitReplicasClosed waits until the running nodes together hold exactly
// want open partition replicas (ward_placement_local_replicas).
func (c *tcluster) waitReplicasClosed(want int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var per map[string]int
	for {
		total := 0
		per = map[string]int{}
		for _, name := range c.names() {
			if n := c.node(name); n.cmd == nil || n.cmd.ProcessState != nil {
				continue
			}
			v, err := c.metric(name, "ward_placement_local_replicas")
			if err != nil {
				c.t.Fatal(err)
			}
			per[name] = int(v)
			total += int(v)
		}
		if total == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("open partition replicas %v, %d in all, want %d: replicas moved away were not closed", per, total, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metric reads one unlabelled gauge from a node's /metrics.
func (c *tcluster) metric(node, name string) (float64, error) {
	lines, err := c.metricLines(c.node(node).http)
	if err != nil {
		return 0, err
	}
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s in /metrics", node, name)
}

// metricLines is the text of the /metrics page at httpAddr, by line. It
// takes an address, not a node name, so that code holding c.mu can call it.
func (c *tcluster) metricLines(httpAddr string) ([]string, error) {
	resp, err := c.client.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	return strings.Split(string(b), "\n"), nil
}

// balanced: replica and leader counts of the active members within one.
func balanced(st *cluster.Status) bool {
	minR, maxR, minL, maxL := 1<<30, -1, 1<<30, -1
	for _, m := range st.Members {
		if m.State != "alive" {
			continue
		}
		minR, maxR = min(minR, m.Replicas), max(maxR, m.Replicas)
		minL, maxL = min(minL, m.Leaders), max(maxL, m.Leaders)
	}
	return maxR-minR <= 1 && maxL-minL <= 1
}

func (c *tcluster) do(via, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.node(via).http+path, rd)
	if err != nil {
		return 0, nil, err
	}
	c.authorize(req)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *tcluster) put(via, id, value string) (registers.Value, error) {
	code, b, err := c.do(via, http.MethodPut, "/v1/registers/"+id, map[string]string{"value": value})
	return decodeValue(code, b, err)
}

func (c *tcluster) get(via, id string) (registers.Value, error) {
	code, b, err := c.do(via, http.MethodGet, "/v1/registers/"+id, nil)
	return decodeValue(code, b, err)
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

func decodeValue(code int, b []byte, err error) (registers.Value, error) {
	var v registers.Value
	if err != nil {
		return v, err
	}
	if code != 200 {
		return v, &httpError{code, strings.TrimSpace(string(b))}
	}
	return v, json.Unmarshal(b, &v)
}

func (c *tcluster) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name := range c.nodes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// formThree starts n1..n3 with --bootstrap-expect 3 and waits until healthy.
func (c *tcluster) formThree(extra ...string) {
	c.t.Helper()
	for i := 1; i <= 3; i++ {
		c.add(i)
	}
	for i := 1; i <= 3; i++ {
		c.start(fmt.Sprintf("n%d", i), append([]string{"--bootstrap-expect", "3"}, extra...)...)
	}
	c.waitStatus("n1", 60*time.Second, "3-node cluster forms", healthy("n1", "n2", "n3"))
}

// TestClusterFormGrowDrainRestart: three nodes form a cluster; writes sent
// to any node land on the owning actor and read back from any other; the
// cluster grows to five and rebalances; a drained node ends with nothing;
// every node is stopped and restarted and all state is intact.
func TestClusterFormGrowDrainRestart(t *testing.T) {
	c := newTestCluster(t)
	start := time.Now()
	c.formThree()
	t.Logf("3 nodes formed and healthy in %s", time.Since(start).Round(time.Millisecond))

	want := map[string]registers.Value{}
	write := func(round int) {
		t.Helper()
		names := c.names()
		for i := range 48 {
			id := fmt.Sprintf("reg-%d", i)
			via := names[(i+round)%len(names)]
			if c.node(via).cmd.ProcessState != nil {
				continue
			}
			v, err := c.put(via, id, fmt.Sprintf("v%d-%d", round, i))
			if err != nil {
				t.Fatalf("put %s via %s: %v", id, via, err)
			}
			if prev := want[id]; v.Version != prev.Version+1 {
				t.Fatalf("put %s: version %d after %d", id, v.Version, prev.Version)
			}
			want[id] = v
		}
	}
	check := func(what string, live []string) {
		t.Helper()
		for i := range 48 {
			id := fmt.Sprintf("reg-%d", i)
			via := live[(i+1)%len(live)]
			got, err := c.get(via, id)
			if err != nil {
				t.Fatalf("%s: get %s via %s: %v", what, id, via, err)
			}
			if got != want[id] {
				t.Fatalf("%s: %s = %+v, want %+v", what, id, got, want[id])
			}
		}
	}
	write(0)
	check("after writes on 3 nodes", []string{"n1", "n2", "n3"})

	// The status any node gives covers every partition.
	st, _ := c.status("n2")
	if len(st.Partitions) != cluster.DefaultPartitions {
		t.Fatalf("status lists %d partitions", len(st.Partitions))
	}

	// Grow to five and drain one, under a write load through nodes that
	// stay up: moving replicas and leaderships must fail no write.
	bgVia := []string{"n1", "n3"}
	load := c.startWriters(4, "bg", func(w, seq int) (string, bool) { return bgVia[(w+seq)%2], true },
		func(string) bool { return false })
	c.add(4)
	c.add(5)
	c.start("n4")
	c.start("n5")
	grow := time.Now()
	c.waitStatus("n1", 90*time.Second, "grow to 5 and rebalance", func(st *cluster.Status) bool {
		return healthy("n1", "n2", "n3", "n4", "n5")(st) && balanced(st) && len(st.Members) == 5
	})
	t.Logf("grew 3 -> 5 and rebalanced in %s", time.Since(grow).Round(time.Millisecond))
	st, _ = c.status("n4")
	for _, m := range st.Members {
		if m.Replicas == 0 || m.Leaders == 0 {
			t.Fatalf("after growth %s holds %d replicas, %d leaders", m.Name, m.Replicas, m.Leaders)
		}
	}
	check("after growth", c.names())
	// Every replica moved away is closed, including those removed from
	// their group without hearing of it: open replicas match the
	// assignment (P partitions × R replicas), so none lingers running
	// elections of its own.
	c.waitReplicasClosed(cluster.DefaultPartitions*3, 30*time.Second)
	write(1)

	// Drain n2 with the CLI.
	out, err := c.cli("cluster", "drain", "n2", "--server", "http://"+c.node("n5").http).CombinedOutput()
	if err != nil {
		t.Fatalf("ward cluster drain: %v\n%s", err, out)
	}
	drain := time.Now()
	st = c.waitStatus("n3", 90*time.Second, "drain n2", func(st *cluster.Status) bool {
		if !healthy()(st) {
			return false
		}
		for _, m := range st.Members {
			if m.Name == "n2" {
				return m.State == "draining" && m.Replicas == 0 && m.Leaders == 0
			}
		}
		return false
	})
	t.Logf("drained n2 in %s", time.Since(drain).Round(time.Millisecond))
	for _, p := range st.Partitions {
		if slices.Contains(p.Replicas, "n2") || len(p.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v after drain", p.ID, p.Replicas)
		}
	}
	check("after drain", []string{"n1", "n3", "n4", "n5"})
	load.stopAndCheck("GROW AND DRAIN UNDER LOAD", []string{"n1", "n3", "n4", "n5"})

	// The CLI's JSON has the documented fields.
	out, err = c.cli("cluster", "status", "--json", "--server", c.node("n1").http).Output()
	if err != nil {
		t.Fatalf("ward cluster status --json: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	m0 := raw["members"].([]any)[0].(map[string]any)
	p0 := raw["partitions"].([]any)[0].(map[string]any)
	mt := raw["meta"].(map[string]any)
	for _, k := range []string{"name", "state", "http"} {
		if _, ok := m0[k]; !ok {
			t.Errorf("members[0] lacks %q", k)
		}
	}
	for _, k := range []string{"id", "leader", "replicas", "applied_index"} {
		if _, ok := p0[k]; !ok {
			t.Errorf("partitions[0] lacks %q", k)
		}
	}
	for _, k := range []string{"leader", "replicas"} {
		if _, ok := mt[k]; !ok {
			t.Errorf("meta lacks %q", k)
		}
	}

	// Stop every node, restart every node: all state intact.
	for _, name := range c.names() {
		c.stop(name)
	}
	for _, name := range c.names() {
		c.start(name)
	}
	restart := time.Now()
	c.waitStatus("n1", 90*time.Second, "restart all", func(st *cluster.Status) bool {
		return healthy("n1", "n3", "n4", "n5")(st)
	})
	t.Logf("all 5 restarted and healthy in %s", time.Since(restart).Round(time.Millisecond))
	check("after restarting every node", c.names())
}

// TestClusterRefusesOtherPartitionCount: a node started with another
// --partitions than its cluster exits with a clear error.
func TestClusterRefusesOtherPartitionCount(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	c.add(4)
	c.start("n4", "--partitions", "8")
	n := c.node("n4")
	select {
	case err := <-n.done:
		if err == nil {
			t.Fatal("node with --partitions 8 exited 0")
		}
		b, _ := os.ReadFile(n.log.Name())
		if !strings.Contains(string(b), "partitions 8") || !strings.Contains(string(b), "16") {
			t.Fatalf("error does not explain the partition mismatch:\n%s", b)
		}
		n.done <- err // for cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("node with --partitions 8 still running after 30s")
	}
	if _, err := c.put("n1", "after-refusal", "x"); err != nil {
		t.Fatalf("cluster after refusal: %v", err)
	}
}
