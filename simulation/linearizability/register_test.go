package linearizability

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/protocol"
)

// TestModelMatchesRegisterActor drives the real register actor, hosted the
// way a host would (step, apply the events, then reply), from interleaved
// clients, and checks the history against Model. It is what ties the model to
// actors/register: if either changes its semantics alone, this fails.
func TestModelMatchesRegisterActor(t *testing.T) {
	regs := map[string]actors.Actor{}
	exec := func(op Op) Result {
		a, ok := regs[op.Key]
		if !ok {
			a = register.Kind.New(op.Key)
			regs[op.Key] = a
		}
		var msg protocol.Message
		switch op.Kind {
		case Put:
			msg = &protocol.RegisterPut{Value: op.Value}
		case Get:
			msg = &protocol.RegisterGet{}
		case CAS:
			msg = &protocol.RegisterCAS{ExpectVersion: op.ExpectVersion, Value: op.Value}
		}
		env := actors.Env{Now: time.Unix(0, 0), Entropy: rand.NewChaCha8([32]byte{}), Self: actors.Identity{Kind: register.KindName, ID: op.Key}}
		fx, err := actors.Step(a, env, msg)
		if err != nil {
			if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION && op.Kind == CAS {
				return mismatch
			}
			t.Fatalf("%v: %v", op, err)
		}
		if err := actors.ApplyAll(a, fx.Events); err != nil {
			t.Fatal(err)
		}
		v := fx.Replies[0].(*protocol.RegisterValue)
		return val(v.GetValue(), v.GetVersion())
	}

	type pending struct {
		id  int
		res Result
	}
	const clients = 5
	rng := rand.New(rand.NewPCG(7, 7))
	var tick int64
	r := &Recorder{Clock: func() int64 { tick++; return tick }}
	inflight := map[int]*pending{} // client -> its op, executed but not yet answered
	seen := map[string]uint64{}
	for i := range 2000 {
		c := rng.IntN(clients)
		if p, ok := inflight[c]; ok {
			r.Finish(p.id, p.res) // the answer reaches the client late
			delete(inflight, c)
			continue
		}
		key := fmt.Sprintf("k%d", rng.IntN(3))
		var op Op
		switch p := rng.IntN(10); {
		case p < 4:
			op = get(key)
		case p < 7:
			op = put(key, fmt.Sprintf("v%d", i))
		default:
			op = cas(key, seen[key]+uint64(rng.IntN(2)), fmt.Sprintf("v%d", i))
		}
		id := r.Start(c, op)
		switch rng.IntN(40) {
		case 0: // lost on the way: never executed, no answer
			r.Finish(id, unknown)
			continue
		case 1: // executed, answer lost
			exec(op)
			r.Finish(id, unknown)
			continue
		}
		res := exec(op)
		if res.OK {
			seen[key] = res.Version
		}
		inflight[c] = &pending{id: id, res: res}
	}
	mustCheck(t, r, porcupine.Ok)
}
