package apikey

import (
	"fmt"
	"slices"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// IndexKindName is the apikeyindex kind's stable name.
const IndexKindName = "apikeyindex"

// MaxKeysPerTenant bounds a tenant's keys (revoked ones included, they
// stay listed for audit), and with it the index's state and a list answer.
const MaxKeysPerTenant = 500

// IndexKind registers the index actor (actor id = tenant id) with a host.
var IndexKind = actors.Kind{Name: IndexKindName, New: func(id string) actors.Actor { return &Index{tenant: id} }}

// Index lists one tenant's key ids. The edge adds an id before it creates
// the key (having checked the create first), so the cap holds before any
// key exists, and no key can exist that its tenant's admins cannot list and
// revoke; an id whose create then failed is merely skipped when listing.
type Index struct {
	tenant string
	ids    []string
}

// Receive implements actors.Actor.
func (x *Index) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := emailindex.ValidTenant(x.tenant); err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.AddAPIKeyToIndex:
		if err := ValidID(m.GetKeyId()); err != nil {
			return err
		}
		if slices.Contains(x.ids, m.GetKeyId()) {
			ctx.Reply(x.list())
			return nil
		}
		if len(x.ids) >= MaxKeysPerTenant {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "tenant %s has %d API keys, the most it may have", x.tenant, MaxKeysPerTenant)
		}
		ctx.Persist(&protocol.APIKeyIndexed{KeyId: m.GetKeyId(), AtUnixNano: ctx.Now().UnixNano()})
		out := x.list()
		out.KeyIds = append(out.KeyIds, m.GetKeyId())
		ctx.Reply(out)
		return nil
	case *protocol.ListAPIKeyIndex:
		ctx.Reply(x.list())
		return nil
	default:
		return actors.ErrUnknownMessage(IndexKindName, msg)
	}
}

func (x *Index) list() *protocol.APIKeyIndex {
	return &protocol.APIKeyIndex{Tenant: x.tenant, KeyIds: slices.Clone(x.ids)}
}

// Apply implements actors.Actor.
func (x *Index) Apply(event protocol.Message) error {
	ev, ok := event.(*protocol.APIKeyIndexed)
	if !ok {
		return fmt.Errorf("apikeyindex: cannot apply %s", protocol.TypeName(event))
	}
	x.ids = append(x.ids, ev.GetKeyId())
	return nil
}

// Snapshot implements actors.Actor.
func (x *Index) Snapshot() (protocol.Message, error) {
	return &protocol.APIKeyIndexSnapshot{KeyIds: slices.Clone(x.ids)}, nil
}

// Restore implements actors.Actor.
func (x *Index) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.APIKeyIndexSnapshot)
	if !ok {
		return fmt.Errorf("apikeyindex: snapshot is %s, want APIKeyIndexSnapshot", protocol.TypeName(snapshot))
	}
	x.ids = slices.Clone(s.GetKeyIds())
	return nil
}
