package simulation

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// tracer hashes the canonical trace line by line. Only logical facts go in
// (virtual time, identities, message types and their deterministic bytes,
// sequence numbers, outcomes): never pointers, map orders, wall time or
// anything that depends on when pebble's background goroutines ran, so the
// same seed yields the same hash on every machine and every build.
type tracer struct {
	epoch time.Time
	h     hash.Hash
	lines int
	keep  bool
	kept  []string
}

func newTracer(epoch time.Time, keep bool) *tracer {
	return &tracer{epoch: epoch, h: sha256.New(), keep: keep}
}

// add appends one line at virtual time now.
func (t *tracer) add(now time.Time, line string) {
	s := fmt.Sprintf("%d %s\n", now.Sub(t.epoch).Nanoseconds(), line)
	t.h.Write([]byte(s)) // hash.Hash.Write never fails
	t.lines++
	if t.keep {
		t.kept = append(t.kept, strings.TrimSuffix(s, "\n"))
	}
}

func (t *tracer) sum() string { return hex.EncodeToString(t.h.Sum(nil)) }

// msgText renders a message canonically: its type name and the hex of its
// deterministic protobuf encoding (protocol.Marshal). Text formats such as
// prototext are avoided on purpose: protobuf randomises their whitespace per
// build.
func msgText(m protocol.Message) string {
	if m == nil {
		return "<nil>"
	}
	b, err := protocol.Marshal(m)
	if err != nil {
		return protocol.TypeName(m) + " <unmarshalable: " + err.Error() + ">"
	}
	return protocol.TypeName(m) + " " + hex.EncodeToString(b)
}

// errText renders a step error canonically (code and message; the session
// actor's messages carry only ids and states, which are deterministic).
func errText(err error) string {
	return "error " + actors.CodeOf(err).String() + " " + err.Error()
}

// typeList renders the type names of msgs, in order.
func typeList(msgs []protocol.Message) string {
	names := make([]string, len(msgs))
	for i, m := range msgs {
		names[i] = protocol.TypeName(m)
	}
	return "[" + strings.Join(names, ",") + "]"
}
