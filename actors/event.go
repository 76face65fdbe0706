package actors

import (
	"encoding/hex"
	"fmt"
	"io"
	"regexp"

	"github.com/wardhq/ward/protocol"
)

// eventType is the shape of a domain event's type: <domain>.<noun>.<verb>.v<N>,
// e.g. identity.user.registered.v1. Consumers route on it, so a typo is a bug
// worth failing the step for.
var eventType = regexp.MustCompile(`^[a-z]+\.[a-z_]+\.[a-z_]+\.v[1-9][0-9]*$`)

// MaxEventData bounds an event's packed payload: events carry identifiers,
// not documents.
const MaxEventData = 4 << 10

// EmitEvent builds a domain event in the one envelope shape (id from the
// step's entropy, time from its clock) and records it on ctx. data may be
// nil. It fails, and the step with it, on a malformed type or an oversized
// payload.
func EmitEvent(ctx Context, typ, tenant, subject string, data protocol.Message) error {
	if !eventType.MatchString(typ) {
		return fmt.Errorf("emit: event type %q is not <domain>.<noun>.<verb>.v<N>", typ)
	}
	var id [16]byte
	if _, err := io.ReadFull(ctx.Entropy(), id[:]); err != nil {
		return fmt.Errorf("emit %s: entropy: %w", typ, err)
	}
	ev := &protocol.EventEnvelope{
		Id:           hex.EncodeToString(id[:]),
		Type:         typ,
		Tenant:       tenant,
		Subject:      subject,
		TimeUnixNano: ctx.Now().UnixNano(),
	}
	if data != nil {
		a, err := protocol.Pack(data)
		if err != nil {
			return fmt.Errorf("emit %s: %w", typ, err)
		}
		if n := len(a.GetValue()); n > MaxEventData {
			return fmt.Errorf("emit %s: payload is %d bytes, limit %d", typ, n, MaxEventData)
		}
		ev.Data = a
	}
	ctx.Emit(ev)
	return nil
}
