package user

import (
	"fmt"

	"github.com/wardhq/ward/protocol"
)

// Apply implements actors.Actor. It is pure: it reads only the event (times
// come from the event, never from a clock). It refuses events that cannot
// follow the current state: the log and the code disagree, and the
// activation must not go on.
func (a *Actor) Apply(event protocol.Message) error {
	s := a.state
	st := s.GetState()
	if _, ok := event.(*protocol.UserKeyIssued); !ok && st == none {
		if _, ok := event.(*protocol.UserRegistered); !ok {
			return fmt.Errorf("user %s: %s before registration", a.id, protocol.TypeName(event))
		}
	}
	if st == erased {
		return fmt.Errorf("user %s: %s after erasure", a.id, protocol.TypeName(event))
	}
	switch ev := event.(type) {
	case *protocol.UserKeyIssued:
		if st != none || len(s.Key) > 0 {
			return fmt.Errorf("user %s: key issued twice", a.id)
		}
		if len(ev.GetKey()) != KeyLen {
			return fmt.Errorf("user %s: key is %d bytes, want %d", a.id, len(ev.GetKey()), KeyLen)
		}
		s.Key = ev.GetKey()
	case *protocol.UserRegistered:
		if st != none || len(s.Key) == 0 {
			return fmt.Errorf("user %s: registered twice or without a key", a.id)
		}
		s.State = pending
		s.SealedFirstName = ev.GetSealedFirstName()
		s.SealedLastName = ev.GetSealedLastName()
		s.SealedPhone = ev.GetSealedPhone()
		s.SealedEmail = ev.GetSealedEmail()
		s.RegisteredUnixNano = ev.GetMeta().GetTimeUnixNano()
	case *protocol.EmailVerificationStarted:
		s.EmailTokenHash = ev.GetTokenHash()
		s.EmailTokenExpiresUnixNano = ev.GetExpiresUnixNano()
	case *protocol.EmailVerified:
		s.EmailVerified = true
		s.EmailTokenHash, s.EmailTokenExpiresUnixNano = nil, 0 // single use
	case *protocol.PhoneVerificationStarted:
		s.PhoneCodeHash = ev.GetCodeHash()
		s.PhoneCodeExpiresUnixNano = ev.GetExpiresUnixNano()
		s.PhoneCodeAttempts = 0
		s.PhoneCodesSent++
		s.PhoneCodeIssuedUnixNano = ev.GetMeta().GetTimeUnixNano()
	case *protocol.PhoneCodeRejected:
		s.PhoneCodeAttempts = ev.GetAttempts()
		if ev.GetBurnt() {
			clearPhoneChallenge(s)
		}
	case *protocol.PhoneVerified:
		s.PhoneVerified = true
		clearPhoneChallenge(s)
	case *protocol.UserActivated:
		if !s.GetEmailVerified() || !s.GetPhoneVerified() {
			return fmt.Errorf("user %s: activated before e-mail and phone were verified", a.id)
		}
		s.State = active
		s.Acr = ev.GetAcr()
	case *protocol.PasswordSet:
		s.SealedPhc = ev.GetSealedPhc()
	case *protocol.PasswordChanged:
		s.SealedPhc = ev.GetSealedPhc()
	case *protocol.LoginFailed:
		s.ConsecutiveFailures = ev.GetConsecutiveFailures()
		s.LockedUntilUnixNano = ev.GetLockedUntilUnixNano()
	case *protocol.LoginFailuresReset, *protocol.UserUnlocked:
		s.ConsecutiveFailures, s.LockedUntilUnixNano = 0, 0
	case *protocol.UserSuspended:
		s.State = suspended
	case *protocol.UserReactivated:
		if st != suspended {
			return fmt.Errorf("user %s: reactivated while %s", a.id, stateName(st))
		}
		s.State = pending
		if s.GetEmailVerified() && s.GetPhoneVerified() {
			s.State = active
		}
	case *protocol.UserDeleted:
		s.State = deleted
	case *protocol.UserErased:
		// Everything goes but the fact of erasure and when the account
		// was created (neither is personal): the key first of all.
		a.state = &protocol.UserSnapshot{State: erased, RegisteredUnixNano: s.GetRegisteredUnixNano()}
	default:
		return fmt.Errorf("user: unknown event type %s", protocol.TypeName(event))
	}
	return nil
}

func clearPhoneChallenge(s *protocol.UserSnapshot) {
	s.PhoneCodeHash, s.PhoneCodeExpiresUnixNano, s.PhoneCodeAttempts = nil, 0, 0
}

// Snapshot implements actors.Actor. The snapshot holds personal data only
// sealed, and the key in its own field, which erasure clears.
func (a *Actor) Snapshot() (protocol.Message, error) { return protocol.Clone(a.state), nil }

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.UserSnapshot)
	if !ok {
		return fmt.Errorf("user: snapshot is %s, want UserSnapshot", protocol.TypeName(snapshot))
	}
	a.state = protocol.Clone(s)
	return nil
}
