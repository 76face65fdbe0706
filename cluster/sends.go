package cluster

import (
	"context"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// deliverSends hands an activation's sends to their targets after its step
// is durable. They run on their own goroutine so that the sending activation
// never waits on (or deadlocks with) its target; the sends of one step go out
// in order.
func (h *Host) deliverSends(from actors.Identity, sends []actors.Send) {
	h.sends.Add(1)
	go func() {
		defer h.sends.Done()
		header := map[string]string{senderHeader: from.Kind + "/" + from.ID}
		for _, s := range sends {
			if err := h.send(header, s); err != nil {
				h.log.Warn("send between actors failed",
					"from", from.String(), "to", s.To.String(), "type", protocol.TypeName(s.Msg),
					"code", actors.CodeOf(err).String(), "err", err)
			}
		}
	}()
}

func (h *Host) send(header map[string]string, s actors.Send) error {
	if _, ok := h.kinds[s.To.Kind]; !ok {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_UNKNOWN_KIND, "no actor kind %q", s.To.Kind)
	}
	if err := validID(s.To.ID); err != nil {
		return err
	}
	payload, err := protocol.Pack(s.Msg)
	if err != nil {
		return err
	}
	env := &protocol.Envelope{Kind: s.To.Kind, Id: s.To.ID, RequestId: h.nextRequestID(), Payload: payload}
	resp, err := h.call(context.Background(), s.To.Kind, s.To.ID, env, header)
	if err != nil {
		return err
	}
	// The target's reply has no reader; only its error is worth a log line.
	return actors.FromProto(resp.GetError())
}
