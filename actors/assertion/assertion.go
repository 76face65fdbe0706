// Package assertion is the assertion actor: per client (actor id: the
// client id), the JWT ids of the signed assertions it authenticated with
// or was granted a token by (RFC 7523 §2.1, §2.2), kept until they expire, so that each assertion is accepted once across
// the cluster (RFC 7523 §3 point 7; what Keycloak's single-use store does).
package assertion

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/protocol"
)

// KindName is the assertion kind's stable name.
const KindName = "assertion"

// Kind registers the assertion actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

const (
	// MaxLive bounds the unexpired jtis one client holds: with assertions
	// living at most MaxLifetime, that is over 13 tokens/s sustained from
	// one client, far more than a client caching its tokens needs.
	MaxLive = 8192
	// MaxLifetime is the longest an assertion may live from the moment it
	// is used; longer ones would have to be remembered longer. The rule is
	// oidcclient's, which the edge checks first.
	MaxLifetime = oidcclient.MaxAssertionLife
	// MaxJTILen bounds one jti.
	MaxJTILen = 256
)

// Actor is one client's ledger of used assertions.
type Actor struct {
	id   string
	used map[string]int64 // jti -> expiry, unix nanoseconds
}

// New returns an empty ledger.
func New(id string) *Actor { return &Actor{id: id, used: map[string]int64{}} }

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	m, ok := msg.(*protocol.UseAssertion)
	if !ok {
		return actors.ErrUnknownMessage(KindName, msg)
	}
	now := ctx.Now().UnixNano()
	jti, exp := m.GetJti(), m.GetExpiresUnixNano()
	switch {
	case jti == "" || len(jti) > MaxJTILen || !utf8.ValidString(jti):
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "jti must be 1 to %d bytes of UTF-8", MaxJTILen)
	case exp <= now:
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "assertion has expired")
	case exp-now > int64(MaxLifetime):
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "assertion lives longer than %s", MaxLifetime)
	}
	if until, seen := a.used[jti]; seen && until > now {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "assertion was used already")
	}
	if a.live(now) >= MaxLive {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, "client holds %d unexpired assertions", MaxLive)
	}
	ctx.Persist(&protocol.AssertionUsed{Jti: jti, ExpiresUnixNano: exp, AtUnixNano: now})
	ctx.Reply(&protocol.AssertionAccepted{})
	return nil
}

// live counts the unexpired entries at now.
func (a *Actor) live(now int64) int {
	n := 0
	for _, exp := range a.used {
		if exp > now {
			n++
		}
	}
	return n
}

// Apply implements actors.Actor. Entries expired at the event's time are
// dropped, so the ledger (and its snapshot) holds only live jtis.
func (a *Actor) Apply(event protocol.Message) error {
	e, ok := event.(*protocol.AssertionUsed)
	if !ok {
		return fmt.Errorf("assertion: unknown event %T", event)
	}
	for jti, exp := range a.used {
		if exp <= e.GetAtUnixNano() {
			delete(a.used, jti)
		}
	}
	a.used[e.GetJti()] = e.GetExpiresUnixNano()
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) {
	s := &protocol.AssertionLedger{Used: make([]*protocol.UsedAssertion, 0, len(a.used))}
	for _, jti := range slices.Sorted(maps.Keys(a.used)) { // same bytes on every replica
		s.Used = append(s.Used, &protocol.UsedAssertion{Jti: jti, ExpiresUnixNano: a.used[jti]})
	}
	return s, nil
}

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.AssertionLedger)
	if !ok {
		return fmt.Errorf("assertion: snapshot is %T, want AssertionLedger", snapshot)
	}
	a.used = make(map[string]int64, len(s.GetUsed()))
	for _, u := range s.GetUsed() {
		a.used[u.GetJti()] = u.GetExpiresUnixNano()
	}
	return nil
}
