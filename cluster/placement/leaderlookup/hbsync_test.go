package leaderlookup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// syncWithServer orders, for the race detector, everything m's gRPC server
// goroutine has done so far before whatever the calling goroutine does next.
//
// Why: protoactor's remote.Start writes gRPC's package-global logger
// (grpclog.SetLoggerV2) and then starts the server, whose goroutine reads
// that logger at once. A second member's Start in the same process is a
// data race with the first member's server goroutine, however far apart in
// time, because nothing orders them. Here we send one message over a real
// gRPC stream to an actor on m that closes a channel: the server's accept and
// stream goroutines descend from its Serve goroutine, so receiving from the
// channel orders its logger read before our next Start. The connection stays
// open (closing it makes the server log again, concurrently) until the
// returned func, called once every member has started.
func syncWithServer(t *testing.T, m *member) (closeConn func()) {
	t.Helper()
	done := make(chan struct{})
	const name = "race-sync"
	pid, err := m.system.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*wrapperspb.StringValue); ok {
			close(done)
			ctx.Stop(ctx.Self())
		}
	}), name)
	if err != nil {
		t.Fatalf("spawn %s: %v", name, err)
	}
	conn, err := grpc.Dial(m.system.Address(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", m.system.Address(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := remote.NewRemotingClient(conn).Receive(ctx)
	if err != nil {
		cancel()
		_ = conn.Close()
		t.Fatalf("open stream to %s: %v", m.system.Address(), err)
	}
	data, err := proto.Marshal(wrapperspb.String("sync"))
	if err != nil {
		t.Fatal(err)
	}
	batch := &remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: &remote.MessageBatch{
		TypeNames: []string{string(proto.MessageName(&wrapperspb.StringValue{}))},
		Targets:   []*actor.PID{pid},
		Envelopes: []*remote.MessageEnvelope{{MessageData: data, TypeId: 0, Target: 0}},
	}}}
	if err := stream.Send(batch); err != nil {
		t.Fatalf("send to %s: %v", m.system.Address(), err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal(fmt.Errorf("no sync message through %s's gRPC server", m.system.Address()))
	}
	// Our client logs its own connectivity changes on its goroutines, under
	// the state manager's lock: reading the state (same lock) once it is
	// READY orders those logs before us too.
	wait, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelWait()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(wait, s) {
			t.Fatalf("client connection to %s stuck in %s", m.system.Address(), s)
		}
	}
	return func() {
		cancel()
		_ = conn.Close()
	}
}
