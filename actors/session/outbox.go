package session

import (
	"strings"

	"github.com/wardhq/ward/protocol"
)

// Publishable splits a session event into what the event envelope publishes
// (identity.session.created.v1, identity.session.revoked.v1,
// identity.session.expired.v1): its meta and its data with the meta and
// every secret-bearing field cleared (*_hash verifiers, sealed_*
// ciphertexts), the same field-name rule as the user outbox. ok is false for
// internal events (no meta), such as RefreshRotated.
func Publishable(ev protocol.Message) (meta *protocol.EventMeta, data protocol.Message, ok bool) {
	r := ev.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("meta")
	if fd == nil || !r.Has(fd) {
		return nil, nil, false
	}
	meta, ok = r.Get(fd).Message().Interface().(*protocol.EventMeta)
	if !ok {
		return nil, nil, false
	}
	data = protocol.Clone(ev)
	dr := data.ProtoReflect()
	fields := dr.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		name := string(f.Name())
		if name == "meta" || strings.HasPrefix(name, "sealed_") || strings.HasSuffix(name, "_hash") {
			dr.Clear(f)
		}
	}
	return protocol.Clone(meta), data, true
}
