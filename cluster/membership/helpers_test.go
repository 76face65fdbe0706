package membership

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testLogger discards logs unless WARD_TEST_LOG is set: protoactor and
// memberlist goroutines may log after a test ended, when t.Log panics.
func testLogger() *slog.Logger {
	if os.Getenv("WARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testConfig is a loopback member with LocalTiming and short intervals.
func testConfig(name string, seeds ...string) Config {
	return Config{
		NodeName:          name,
		BindAddr:          "127.0.0.1:0",
		Seeds:             seeds,
		Timing:            LocalTiming(),
		Debounce:          50 * time.Millisecond,
		JoinRetryInterval: 300 * time.Millisecond,
		LeaveTimeout:      time.Second,
		RaftAddr:          "127.0.0.1:7000",
		Version:           "test",
		Logger:            testLogger(),
	}
}

// echoKind is a trivial grain: it answers a StringValue with the ID of the
// actor system that hosts it, a colon, and the value.
const echoKindName = "echo"

func echoKind() *cluster.Kind {
	return cluster.NewKind(echoKindName, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			ctx.Respond(wrapperspb.String(ctx.ActorSystem().ID + ":" + m.Value))
		}
	}))
}

// node is one protoactor cluster member on loopback with our provider.
type node struct {
	name string
	sys  *actor.ActorSystem
	c    *cluster.Cluster
	p    *Provider

	mu       sync.Mutex
	topology map[string]bool // member IDs of the latest ClusterTopology
	stopped  bool
}

func startNode(clusterName string, cfg Config, client bool) (_ *node, err error) {
	p, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("new provider: %w", err)
	}
	logger := testLogger()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	n := &node{name: cfg.NodeName, sys: sys, p: p}
	// Watch topologies through the event stream: protoactor's
	// MemberList.Members() reads its member set without its lock.
	sys.EventStream.Subscribe(func(evt any) {
		if tp, ok := evt.(*cluster.ClusterTopology); ok {
			ids := make(map[string]bool, len(tp.Members))
			for _, m := range tp.Members {
				ids[m.Id] = true
			}
			n.mu.Lock()
			n.topology = ids
			n.mu.Unlock()
		}
	})
	ccfg := cluster.Configure(clusterName, p, disthash.New(),
		remote.Configure("127.0.0.1", 0),
		cluster.WithKinds(echoKind()),
		cluster.WithRequestTimeout(2*time.Second))
	n.c = cluster.New(sys, ccfg)
	defer func() {
		if r := recover(); r != nil { // protoactor panics on provider errors
			err = fmt.Errorf("start member %s: %v", cfg.NodeName, r)
		}
	}()
	if client {
		n.c.StartClient()
	} else {
		n.c.StartMember()
	}
	return n, nil
}

// topologyIDs is the node's latest protoactor topology, sorted.
func (n *node) topologyIDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.topology))
	for id := range n.topology {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// echo calls the echo grain with identity. It holds the provider's sinkMu:
// disthash swaps its placement table in the topology push without any
// synchronisation, and its Get reads it on the caller's goroutine.
func (n *node) echo(identity string) (string, error) {
	n.p.sinkMu.Lock()
	defer n.p.sinkMu.Unlock()
	res, err := n.c.Request(identity, echoKindName, wrapperspb.String(identity), cluster.WithTimeout(3*time.Second))
	if err != nil {
		return "", fmt.Errorf("request %s from %s: %w", identity, n.name, err)
	}
	s, ok := res.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("request %s from %s: got %T", identity, n.name, res)
	}
	return s.Value, nil
}

func (n *node) markStopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	was := n.stopped
	n.stopped = true
	return was
}

// leave is a graceful shutdown in the order Ward's host uses (placement and
// protoactor gossip stop before the provider changes the topology; see
// cluster/shutdown.go), without protoactor's fixed two-second sleep.
func (n *node) leave() error {
	if n.markStopped() {
		return nil
	}
	n.c.Gossip.SetState(cluster.GracefullyLeftKey, &emptypb.Empty{})
	n.c.IdentityLookup.Shutdown()
	n.c.Gossip.Shutdown()
	err := n.p.Shutdown(true)
	n.sys.Shutdown()
	n.c.Remote.Shutdown(false) // the graceful path races; see cluster/shutdown.go
	return err
}

// stop shuts the node down without announcing a leave.
func (n *node) stop() {
	if n.markStopped() {
		return
	}
	_ = n.p.Shutdown(false)
	n.c.IdentityLookup.Shutdown()
	n.c.Gossip.Shutdown()
	n.sys.Shutdown()
	n.c.Remote.Shutdown(false)
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func memberByID(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// freeLoopbackAddr returns a 127.0.0.1 port that was free for TCP and UDP a
// moment ago (gossip binds both on one port).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return ""
}
