// Package emailindex is the emailindex actor: it keeps one e-mail address
// unique within one tenant.
//
// Uniqueness cannot be checked by the user actors themselves: two
// registrations of one address create two different user actors, possibly on
// two nodes. Instead every address has its own index actor, named by the
// tenant and the SHA-256 of the lowercased address (see [ID]). An actor is
// single-threaded and lives on its partition's leader, so concurrent
// reservations of one address, from any node, serialize here and exactly one
// wins. Registration is therefore: reserve, then create the user (and release
// if creation fails).
//
// The id holds a hash, not the address, so that storage keys and logs carry
// nothing directly readable; the state holds only the holder's user id.
package emailindex

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/protocol"
)

// KindName is the emailindex kind's stable name.
const KindName = "emailindex"

// Kind registers the emailindex actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// ID is the index actor id of email in tenant: "<tenant>/<sha256-hex of the
// lowercased, trimmed address>". Callers must use it rather than hashing
// themselves, so that every node maps one address to one actor.
func ID(tenant, email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return tenant + "/" + hex.EncodeToString(sum[:])
}

// Actor is one address's reservation.
type Actor struct {
	id    string
	state *protocol.EmailIndexSnapshot
}

// New returns the free index entry with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.EmailIndexSnapshot{}}
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := ValidID(a.id); err != nil {
		return err
	}
	holder := a.state.GetUserId()
	switch m := msg.(type) {
	case *protocol.EmailReserve:
		if err := validUserID(m.GetUserId()); err != nil {
			return err
		}
		switch holder {
		case "":
			ctx.Persist(&protocol.EmailReserved{UserId: m.GetUserId(), AtUnixNano: ctx.Now().UnixNano()})
		case m.GetUserId():
			// A retried reservation by the same registration succeeds
			// without a write.
		default:
			// Names neither the address nor the holder: the caller must
			// not learn who owns it.
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS,
				"this e-mail address is already registered in the tenant")
		}
		ctx.Reply(&protocol.EmailHolder{UserId: m.GetUserId()})
		return nil
	case *protocol.EmailRelease:
		if err := validUserID(m.GetUserId()); err != nil {
			return err
		}
		switch holder {
		case "":
			// Already free: a retried release succeeds.
		case m.GetUserId():
			ctx.Persist(&protocol.EmailReleased{UserId: m.GetUserId(), AtUnixNano: ctx.Now().UnixNano()})
		default:
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED,
				"only the account holding this e-mail address can release it")
		}
		ctx.Reply(&protocol.EmailHolder{})
		return nil
	case *protocol.EmailLookup:
		if holder == "" {
			return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "no account has this e-mail address")
		}
		ctx.Reply(&protocol.EmailHolder{UserId: holder})
		return nil
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

// SnapshotRequired reports whether the host must write a snapshot together
// with events (deleting the log below it). A release does: the log would
// otherwise keep linking the address hash to an account that may have been
// erased.
func (a *Actor) SnapshotRequired(events []protocol.Message) bool {
	for _, ev := range events {
		if _, ok := ev.(*protocol.EmailReleased); ok {
			return true
		}
	}
	return false
}

// Apply implements actors.Actor. It is pure: it reads only the event.
func (a *Actor) Apply(event protocol.Message) error {
	switch ev := event.(type) {
	case *protocol.EmailReserved:
		if a.state.GetUserId() != "" {
			return fmt.Errorf("emailindex %s: reserved while held", a.id)
		}
		a.state.UserId = ev.GetUserId()
	case *protocol.EmailReleased:
		if a.state.GetUserId() != ev.GetUserId() {
			return fmt.Errorf("emailindex %s: released by a user that does not hold it", a.id)
		}
		a.state.UserId = ""
	default:
		return fmt.Errorf("emailindex: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.EmailIndexSnapshot)
	if !ok {
		return fmt.Errorf("emailindex: snapshot is %s, want EmailIndexSnapshot", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	return nil
}

// ValidID checks the "<tenant>/<64 lowercase hex>" shape [ID] produces.
func ValidID(id string) error {
	tenant, hash, ok := strings.Cut(id, "/")
	if !ok || ValidTenant(tenant) != nil || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"emailindex id must be <tenant>/<sha256 hex of the address>")
	}
	return nil
}

// MaxTenantLen bounds a tenant id.
const MaxTenantLen = 64

// ValidTenant checks a tenant id: 1 to MaxTenantLen characters of
// [A-Za-z0-9._-]. It is shared with the user actor, whose ids start with the
// same tenant.
func ValidTenant(t string) error {
	ok := t != "" && len(t) <= MaxTenantLen
	for i := 0; ok && i < len(t); i++ {
		c := t[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
			"tenant id must be 1 to %d characters of A-Z a-z 0-9 . _ -", MaxTenantLen)
	}
	return nil
}

// ValidUUID checks the canonical lowercase 8-4-4-4-12 hex form of a user id.
func ValidUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func validUserID(u string) error {
	if !ValidUUID(u) {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "user id must be a lowercase uuid")
	}
	return nil
}
