package user

import (
	"strings"

	"github.com/wardhq/ward/protocol"
)

// Publishable splits a user event into what the event envelope publishes:
// its meta and its data with every secret-bearing field cleared (meta
// itself, sealed_* ciphertexts and *_hash verifiers). ok is false for
// internal events (no meta), above all UserKeyIssued, which must never leave
// the store. The field-name rule is the contract of protocol/user.proto, so
// a new sealed field is dropped without touching this code.
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
