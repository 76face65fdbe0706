package tenant

import "github.com/wardhq/ward/protocol"

// Publishable splits a tenant event into what the event envelope publishes:
// its meta, and its data with meta cleared. Tenant events carry no secrets,
// so nothing else is dropped; ok is false for anything that is not a tenant
// event with meta.
func Publishable(ev protocol.Message) (meta *protocol.EventMeta, data protocol.Message, ok bool) {
	data = protocol.Clone(ev)
	switch d := data.(type) {
	case *protocol.TenantCreated:
		meta, d.Meta = d.Meta, nil
	case *protocol.TenantNodeAdded:
		meta, d.Meta = d.Meta, nil
	case *protocol.TenantNodeRenamed:
		meta, d.Meta = d.Meta, nil
	case *protocol.TenantNodeRemoved:
		meta, d.Meta = d.Meta, nil
	case *protocol.MembershipGranted:
		meta, d.Meta = d.Meta, nil
	case *protocol.MembershipRevoked:
		meta, d.Meta = d.Meta, nil
	}
	if meta == nil {
		return nil, nil, false
	}
	return meta, data, true
}
