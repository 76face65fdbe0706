// Package user is the user actor: one account of one tenant, from L1
// registration through verification, password lockout, suspension, soft
// delete and GDPR erasure. Its id is "<tenant>/<user-uuid>".
//
// Division of labour. The edge hashes passwords (argon2id is too slow and
// memory-hungry for an actor step) and sends mail and SMS; this actor stores
// the PHC string, issues and checks verification secrets, and decides
// lockout from the login outcomes the edge reports. E-mail uniqueness is the
// emailindex actor's: the edge reserves the address there before RegisterUser
// (and releases it if registration fails).
//
// Crypto-shredding. Names, phone, e-mail and the password hash exist in
// events and snapshots only sealed under a per-user AES-256 key. The key is
// drawn at registration and lives in one event of its own, UserKeyIssued,
// and in the snapshot's key field. EraseUser persists UserErased, whose Apply
// drops the key, and [Actor.SnapshotRequired] tells the host to write a
// snapshot in the same write; the store deletes every event at or below a
// snapshot (persistence.Write.Snapshot), so the key event goes and what is
// left is ciphertext without a key.
//
// Lockout. Five consecutive failed logins lock the account for one minute;
// each further failure after a lock runs out locks it for twice as long, up
// to an hour. Locks are computed from ctx.Now against a stored deadline, so
// they need no timer. A success (reported while not locked) or an admin
// unlock clears the count.
package user

import (
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the user kind's stable name.
const KindName = "user"

// Rules.
const (
	EmailTokenTTL    = 24 * time.Hour
	PhoneCodeTTL     = 10 * time.Minute
	MaxPhoneAttempts = 5
	// Each phone code is an SMS someone pays for, and a way to pester the
	// number's owner: a new code waits PhoneResendInterval after the last
	// one unless that one is spent (burnt or expired), and a registration
	// gets at most MaxPhoneCodes.
	PhoneResendInterval = time.Minute
	MaxPhoneCodes       = 5
	// LockAfter consecutive failures lock the account for FirstLock.
	LockAfter = 5
	FirstLock = time.Minute
	MaxLock   = time.Hour
	// L1 is the acr of an account whose e-mail and phone are verified.
	L1 = 1
)

// Kind registers the user actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

// Actor is one account's state.
type Actor struct {
	id    string
	state *protocol.UserSnapshot
}

// New returns the unregistered account with the given id.
func New(id string) *Actor {
	return &Actor{id: id, state: &protocol.UserSnapshot{}}
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if _, _, err := parseID(a.id); err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.RegisterUser:
		return a.register(ctx, m)
	case *protocol.StartEmailVerification:
		return a.startEmail(ctx)
	case *protocol.VerifyEmail:
		return a.verifyEmail(ctx, m)
	case *protocol.StartPhoneVerification:
		return a.startPhone(ctx)
	case *protocol.VerifyPhone:
		return a.verifyPhone(ctx, m)
	case *protocol.SetPassword:
		return a.setPassword(ctx, m)
	case *protocol.ChangePassword:
		return a.changePassword(ctx, m)
	case *protocol.GetCredentials:
		return a.credentials(ctx)
	case *protocol.RecordLogin:
		return a.recordLogin(ctx, m)
	case *protocol.UnlockUser:
		return a.unlock(ctx, m)
	case *protocol.SuspendUser:
		return a.admin(ctx, m.GetReason(), m.GetBy(), "identity.user.suspended.v1",
			func(meta *protocol.EventMeta, r, by string) protocol.Message {
				return &protocol.UserSuspended{Meta: meta, Reason: r, By: by}
			}, pending, active)
	case *protocol.ReactivateUser:
		return a.admin(ctx, m.GetReason(), m.GetBy(), "identity.user.reactivated.v1",
			func(meta *protocol.EventMeta, r, by string) protocol.Message {
				return &protocol.UserReactivated{Meta: meta, Reason: r, By: by}
			}, suspended)
	case *protocol.DeleteUser:
		return a.admin(ctx, m.GetReason(), m.GetBy(), "identity.user.deleted.v1",
			func(meta *protocol.EventMeta, r, by string) protocol.Message {
				return &protocol.UserDeleted{Meta: meta, Reason: r, By: by}
			}, pending, active, suspended)
	case *protocol.EraseUser:
		return a.erase(ctx, m)
	case *protocol.GetProfile:
		return a.profile(ctx)
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

const (
	none      = protocol.UserState_USER_STATE_UNSPECIFIED
	pending   = protocol.UserState_USER_STATE_PENDING_VERIFICATION
	active    = protocol.UserState_USER_STATE_ACTIVE
	suspended = protocol.UserState_USER_STATE_SUSPENDED
	deleted   = protocol.UserState_USER_STATE_DELETED
	erased    = protocol.UserState_USER_STATE_ERASED
)

// require refuses the command unless the account is in one of the states.
func (a *Actor) require(states ...protocol.UserState) error {
	st := a.state.GetState()
	for _, s := range states {
		if st == s {
			return nil
		}
	}
	if st == none {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "user %s is not registered", a.id)
	}
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "user %s is %s", a.id, stateName(st))
}

func exhausted(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, format, args...)
}

func precondition(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, format, args...)
}

func (a *Actor) meta(ctx actors.Context, typ string) *protocol.EventMeta {
	tenant, uuid, _ := parseID(a.id)
	return &protocol.EventMeta{Type: typ, Tenant: tenant, Subject: uuid, TimeUnixNano: ctx.Now().UnixNano()}
}

// LockReasonFailedLogins is the reason of identity.user.locked.v1 when
// consecutive failed logins locked the account.
const LockReasonFailedLogins = "failed_logins"

// emit records the domain event typ about this account for the tenant's
// feed. It carries the user id and a machine-readable reason only, never
// personal data: the feed is kept apart from the account's journal and
// survives its crypto-shredding.
func (a *Actor) emit(ctx actors.Context, typ, reason string) error {
	tenant, uuid, err := parseID(a.id)
	if err != nil {
		return err
	}
	return actors.EmitEvent(ctx, typ, tenant, uuid, &protocol.UserEventData{UserId: uuid, Reason: reason})
}

// emitAll emits one domain event per journal event of the verification
// steps (email_verified or phone_verified, then activated when it follows),
// typed as the journal event's meta says.
func (a *Actor) emitAll(ctx actors.Context, events []protocol.Message) error {
	for _, ev := range events {
		switch ev.(type) {
		case *protocol.EmailVerified, *protocol.PhoneVerified, *protocol.UserActivated:
		default:
			continue
		}
		typ := ev.(interface{ GetMeta() *protocol.EventMeta }).GetMeta().GetType()
		if err := a.emit(ctx, typ, ""); err != nil {
			return err
		}
	}
	return nil
}

// persist records events and returns the state they lead to, computed on a
// scratch copy with the same Apply the host will run, so replies describe
// exactly the state the events produce.
func (a *Actor) persist(ctx actors.Context, events ...protocol.Message) (*protocol.UserSnapshot, error) {
	scratch := &Actor{id: a.id, state: protocol.Clone(a.state)}
	if err := actors.ApplyAll(scratch, events); err != nil {
		return nil, err
	}
	ctx.Persist(events...)
	return scratch.state, nil
}

func (a *Actor) register(ctx actors.Context, m *protocol.RegisterUser) error {
	if st := a.state.GetState(); st != none {
		// Ids are never reused, not even after erasure.
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "user %s is already registered (%s)", a.id, stateName(st))
	}
	first, err := text("first_name", m.GetFirstName(), true)
	if err != nil {
		return err
	}
	last, err := text("last_name", m.GetLastName(), true)
	if err != nil {
		return err
	}
	ph, err := phone(m.GetPhone())
	if err != nil {
		return err
	}
	em, err := email(m.GetEmail())
	if err != nil {
		return err
	}
	rnd := ctx.Entropy()
	key := make([]byte, KeyLen)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return fmt.Errorf("draw user key: %w", err)
	}
	ev := &protocol.UserRegistered{Meta: a.meta(ctx, "identity.user.registered.v1")}
	for _, f := range []struct {
		field, value string
		out          *[]byte
	}{
		{fieldFirstName, first, &ev.SealedFirstName},
		{fieldLastName, last, &ev.SealedLastName},
		{fieldPhone, ph, &ev.SealedPhone},
		{fieldEmail, em, &ev.SealedEmail},
	} {
		if *f.out, err = seal(key, rnd, a.id, f.field, f.value); err != nil {
			return err
		}
	}
	token, started, err := a.emailChallenge(ctx)
	if err != nil {
		return err
	}
	after, err := a.persist(ctx, &protocol.UserKeyIssued{Key: key}, ev, started)
	if err != nil {
		return err
	}
	if err := a.emit(ctx, "identity.user.registered.v1", ""); err != nil {
		return err
	}
	ctx.Reply(&protocol.UserRegistration{
		Status:            a.status(after),
		EmailVerification: &protocol.EmailVerificationIssued{Token: token, ExpiresUnixNano: started.ExpiresUnixNano},
	})
	return nil
}

// emailChallenge draws a magic-link token; only its hash is persisted.
func (a *Actor) emailChallenge(ctx actors.Context) ([]byte, *protocol.EmailVerificationStarted, error) {
	token, err := newToken(ctx.Entropy())
	if err != nil {
		return nil, nil, err
	}
	return token, &protocol.EmailVerificationStarted{
		Meta:            a.meta(ctx, "identity.user.email_verification_started.v1"),
		TokenHash:       tokenHash(token),
		ExpiresUnixNano: ctx.Now().Add(EmailTokenTTL).UnixNano(),
	}, nil
}

func (a *Actor) startEmail(ctx actors.Context) error {
	if err := a.require(pending); err != nil {
		return err
	}
	if a.state.GetEmailVerified() {
		return precondition("user %s: e-mail is already verified", a.id)
	}
	token, started, err := a.emailChallenge(ctx)
	if err != nil {
		return err
	}
	if _, err := a.persist(ctx, started); err != nil {
		return err
	}
	ctx.Reply(&protocol.EmailVerificationIssued{Token: token, ExpiresUnixNano: started.ExpiresUnixNano})
	return nil
}

func (a *Actor) verifyEmail(ctx actors.Context, m *protocol.VerifyEmail) error {
	if err := a.require(pending); err != nil {
		return err
	}
	if a.state.GetEmailVerified() {
		return precondition("user %s: e-mail is already verified", a.id)
	}
	if len(m.GetToken()) != TokenLen {
		return invalid("verification token must be %d bytes", TokenLen)
	}
	want := a.state.GetEmailTokenHash()
	if len(want) == 0 {
		return precondition("user %s has no e-mail verification in progress; start a new one", a.id)
	}
	// Constant time: the token is attacker-controlled.
	if subtle.ConstantTimeCompare(tokenHash(m.GetToken()), want) != 1 {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "e-mail verification token does not match")
	}
	if ctx.Now().UnixNano() >= a.state.GetEmailTokenExpiresUnixNano() {
		return precondition("e-mail verification token has expired; request a new one")
	}
	events := []protocol.Message{&protocol.EmailVerified{Meta: a.meta(ctx, "identity.user.email_verified.v1")}}
	if a.state.GetPhoneVerified() {
		events = append(events, a.activated(ctx))
	}
	after, err := a.persist(ctx, events...)
	if err != nil {
		return err
	}
	if err := a.emitAll(ctx, events); err != nil {
		return err
	}
	ctx.Reply(a.status(after))
	return nil
}

func (a *Actor) activated(ctx actors.Context) *protocol.UserActivated {
	return &protocol.UserActivated{Meta: a.meta(ctx, "identity.user.activated.v1"), Acr: L1}
}

func (a *Actor) startPhone(ctx actors.Context) error {
	if err := a.require(pending); err != nil {
		return err
	}
	if a.state.GetPhoneVerified() {
		return precondition("user %s: phone is already verified", a.id)
	}
	if n := a.state.GetPhoneCodesSent(); n >= MaxPhoneCodes {
		return exhausted("user %s: %d phone codes sent, the limit; no more are sent for this registration", a.id, n)
	}
	now := ctx.Now().UnixNano()
	live := len(a.state.GetPhoneCodeHash()) > 0 && now < a.state.GetPhoneCodeExpiresUnixNano()
	if next := a.state.GetPhoneCodeIssuedUnixNano() + int64(PhoneResendInterval); live && now < next {
		return exhausted("user %s: a phone code was sent %s ago; the next may be sent in %s", a.id,
			time.Duration(now-a.state.GetPhoneCodeIssuedUnixNano()).Round(time.Second), time.Duration(next-now).Round(time.Second))
	}
	code, err := newCode(ctx.Entropy())
	if err != nil {
		return err
	}
	ev := &protocol.PhoneVerificationStarted{
		Meta:            a.meta(ctx, "identity.user.phone_verification_started.v1"),
		CodeHash:        codeHash(a.state.GetKey(), code),
		ExpiresUnixNano: ctx.Now().Add(PhoneCodeTTL).UnixNano(),
	}
	if _, err := a.persist(ctx, ev); err != nil {
		return err
	}
	ctx.Reply(&protocol.PhoneVerificationIssued{Code: code, ExpiresUnixNano: ev.ExpiresUnixNano})
	return nil
}

func (a *Actor) verifyPhone(ctx actors.Context, m *protocol.VerifyPhone) error {
	if err := a.require(pending); err != nil {
		return err
	}
	if a.state.GetPhoneVerified() {
		return precondition("user %s: phone is already verified", a.id)
	}
	code := m.GetCode()
	// A malformed code is refused without spending an attempt: it tells
	// the caller nothing about the real code.
	if len(code) != 6 || trimDigits(code) != "" {
		return invalid("phone code must be 6 digits")
	}
	want := a.state.GetPhoneCodeHash()
	if len(want) == 0 {
		return precondition("user %s has no phone code in progress (none started, used, or burnt after %d wrong attempts); start a new one", a.id, MaxPhoneAttempts)
	}
	if ctx.Now().UnixNano() >= a.state.GetPhoneCodeExpiresUnixNano() {
		return precondition("phone code has expired; request a new one")
	}
	if subtle.ConstantTimeCompare(codeHash(a.state.GetKey(), code), want) != 1 {
		// Counted, so not an error: an error would discard the event.
		n := a.state.GetPhoneCodeAttempts() + 1
		ev := &protocol.PhoneCodeRejected{
			Meta: a.meta(ctx, "identity.user.phone_code_rejected.v1"), Attempts: n, Burnt: n >= MaxPhoneAttempts,
		}
		after, err := a.persist(ctx, ev)
		if err != nil {
			return err
		}
		ctx.Reply(&protocol.PhoneVerificationResult{AttemptsLeft: MaxPhoneAttempts - min(n, MaxPhoneAttempts), Status: a.status(after)})
		return nil
	}
	events := []protocol.Message{&protocol.PhoneVerified{Meta: a.meta(ctx, "identity.user.phone_verified.v1")}}
	if a.state.GetEmailVerified() {
		events = append(events, a.activated(ctx))
	}
	after, err := a.persist(ctx, events...)
	if err != nil {
		return err
	}
	if err := a.emitAll(ctx, events); err != nil {
		return err
	}
	ctx.Reply(&protocol.PhoneVerificationResult{Verified: true, Status: a.status(after)})
	return nil
}

func trimDigits(s string) string {
	for len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
		s = s[1:]
	}
	return s
}

func (a *Actor) setPassword(ctx actors.Context, m *protocol.SetPassword) error {
	if err := a.require(pending, active); err != nil {
		return err
	}
	if err := phc(m.GetPhc()); err != nil {
		return err
	}
	if len(a.state.GetSealedPhc()) > 0 {
		return precondition("user %s already has a password; use ChangePassword", a.id)
	}
	sealed, err := seal(a.state.GetKey(), ctx.Entropy(), a.id, fieldPHC, m.GetPhc())
	if err != nil {
		return err
	}
	after, err := a.persist(ctx, &protocol.PasswordSet{Meta: a.meta(ctx, "identity.user.password_set.v1"), SealedPhc: sealed})
	if err != nil {
		return err
	}
	if err := a.emit(ctx, "identity.user.password_set.v1", ""); err != nil {
		return err
	}
	ctx.Reply(a.status(after))
	return nil
}

func (a *Actor) changePassword(ctx actors.Context, m *protocol.ChangePassword) error {
	if err := a.require(active); err != nil {
		return err
	}
	if err := phc(m.GetPhc()); err != nil {
		return err
	}
	if len(a.state.GetSealedPhc()) == 0 {
		return precondition("user %s has no password yet; use SetPassword", a.id)
	}
	// The edge proved the old password before asking; a locked account
	// could not have, so a change now is refused too.
	if l := a.lock(ctx.Now()); l.GetLocked() {
		return precondition("user %s is locked for %s", a.id, time.Duration(l.GetRetryAfterNanos()))
	}
	sealed, err := seal(a.state.GetKey(), ctx.Entropy(), a.id, fieldPHC, m.GetPhc())
	if err != nil {
		return err
	}
	after, err := a.persist(ctx, &protocol.PasswordChanged{Meta: a.meta(ctx, "identity.user.password_changed.v1"), SealedPhc: sealed})
	if err != nil {
		return err
	}
	if err := a.emit(ctx, "identity.user.password_changed.v1", ""); err != nil {
		return err
	}
	ctx.Reply(a.status(after))
	return nil
}

// credentials answers the edge's login lookup. The PHC is given only for
// accounts that may log in, so an edge bug cannot log in a suspended,
// deleted or erased account.
func (a *Actor) credentials(ctx actors.Context) error {
	if a.state.GetState() == none {
		return a.require()
	}
	_, uuid, _ := parseID(a.id)
	c := &protocol.UserCredentials{UserId: uuid, State: a.state.GetState(), Lock: a.lock(ctx.Now())}
	if st := a.state.GetState(); st == pending || st == active {
		p, err := open(a.state.GetKey(), a.id, fieldPHC, a.state.GetSealedPhc())
		if err != nil {
			return err
		}
		c.Phc = p
	}
	ctx.Reply(c)
	return nil
}

// lock is the lock status at now.
func (a *Actor) lock(now time.Time) *protocol.LockStatus {
	return lockAt(a.state, now)
}

func lockAt(s *protocol.UserSnapshot, now time.Time) *protocol.LockStatus {
	l := &protocol.LockStatus{ConsecutiveFailures: s.GetConsecutiveFailures()}
	if until := s.GetLockedUntilUnixNano(); until > now.UnixNano() {
		l.Locked = true
		l.LockedUntilUnixNano = until
		l.RetryAfterNanos = until - now.UnixNano()
	}
	return l
}

// lockFor is how long the failures-th consecutive failure locks the account:
// nothing below LockAfter, then FirstLock doubling per failure, at most
// MaxLock.
func lockFor(failures uint32) time.Duration {
	if failures < LockAfter {
		return 0
	}
	d := FirstLock
	for i := uint32(LockAfter); i < failures && d < MaxLock; i++ {
		d *= 2
	}
	return min(d, MaxLock)
}

func (a *Actor) recordLogin(ctx actors.Context, m *protocol.RecordLogin) error {
	if err := a.require(pending, active); err != nil {
		return err
	}
	now := ctx.Now()
	if l := a.lock(now); l.GetLocked() {
		// While locked, outcomes are ignored: a failure must not extend
		// the lock without bound, and a success could only come from a
		// verification that raced the lock.
		ctx.Reply(&protocol.LoginStatus{Lock: l})
		return nil
	}
	var ev protocol.Message
	switch {
	case m.GetSuccess() && a.state.GetConsecutiveFailures() == 0 && a.state.GetLockedUntilUnixNano() == 0:
		// A clean login persists nothing: no write on the hot path.
	case m.GetSuccess():
		ev = &protocol.LoginFailuresReset{Meta: a.meta(ctx, "identity.user.login_failures_reset.v1")}
	default:
		n := a.state.GetConsecutiveFailures() + 1
		f := &protocol.LoginFailed{Meta: a.meta(ctx, "identity.user.login_failed.v1"), ConsecutiveFailures: n}
		if d := lockFor(n); d > 0 {
			f.LockedUntilUnixNano = now.Add(d).UnixNano()
		}
		ev = f
	}
	after := a.state
	if ev != nil {
		var err error
		if after, err = a.persist(ctx, ev); err != nil {
			return err
		}
	}
	if f, ok := ev.(*protocol.LoginFailed); ok && f.GetLockedUntilUnixNano() > 0 {
		// Only the failure that locks is an event: failures below the
		// threshold would make the feed a log of password guesses.
		if err := a.emit(ctx, "identity.user.locked.v1", LockReasonFailedLogins); err != nil {
			return err
		}
	}
	ctx.Reply(&protocol.LoginStatus{Accepted: true, Lock: lockAt(after, now)})
	return nil
}

func (a *Actor) unlock(ctx actors.Context, m *protocol.UnlockUser) error {
	if err := a.require(pending, active, suspended); err != nil {
		return err
	}
	reason, by, err := adminArgs(m.GetReason(), m.GetBy())
	if err != nil {
		return err
	}
	if a.state.GetConsecutiveFailures() == 0 && a.state.GetLockedUntilUnixNano() == 0 {
		// Nothing to clear: a retried unlock succeeds without a write.
		ctx.Reply(a.lock(ctx.Now()))
		return nil
	}
	wasLocked := a.lock(ctx.Now()).GetLocked()
	after, err := a.persist(ctx, &protocol.UserUnlocked{Meta: a.meta(ctx, "identity.user.unlocked.v1"), Reason: reason, By: by})
	if err != nil {
		return err
	}
	// Clearing a failure count, or a lock that had already run out, is no
	// unlock a consumer needs to hear of.
	if wasLocked {
		if err := a.emit(ctx, "identity.user.unlocked.v1", ""); err != nil {
			return err
		}
	}
	ctx.Reply(lockAt(after, ctx.Now()))
	return nil
}

func adminArgs(reason, by string) (string, string, error) {
	r, err := text("reason", reason, true)
	if err != nil {
		return "", "", err
	}
	b, err := text("by", by, false)
	if err != nil {
		return "", "", err
	}
	return r, b, nil
}

// admin runs a lifecycle command that an administrator gives with a reason.
func (a *Actor) admin(ctx actors.Context, reason, by, typ string,
	event func(*protocol.EventMeta, string, string) protocol.Message, from ...protocol.UserState) error {
	if err := a.require(from...); err != nil {
		return err
	}
	r, b, err := adminArgs(reason, by)
	if err != nil {
		return err
	}
	after, err := a.persist(ctx, event(a.meta(ctx, typ), r, b))
	if err != nil {
		return err
	}
	// The administrator's reason is free text and may name the person: it
	// stays in the user's journal (shredded with it), not in the feed.
	if err := a.emit(ctx, typ, ""); err != nil {
		return err
	}
	ctx.Reply(a.status(after))
	return nil
}

func (a *Actor) erase(ctx actors.Context, m *protocol.EraseUser) error {
	if a.state.GetState() == erased {
		// Already shredded: a retried erasure succeeds without a write.
		ctx.Reply(a.status(a.state))
		return nil
	}
	if err := a.require(pending, active, suspended, deleted); err != nil {
		return err
	}
	by, err := text("by", m.GetBy(), false)
	if err != nil {
		return err
	}
	// Read the address while the key still exists, to free it for reuse.
	em, err := open(a.state.GetKey(), a.id, fieldEmail, a.state.GetSealedEmail())
	if err != nil {
		return err
	}
	after, err := a.persist(ctx, &protocol.UserErased{Meta: a.meta(ctx, "identity.user.erased.v1"), By: by})
	if err != nil {
		return err
	}
	if err := a.emit(ctx, "identity.user.erased.v1", ""); err != nil {
		return err
	}
	tenant, uuid, _ := parseID(a.id)
	ctx.Send(actors.Identity{Kind: emailindex.KindName, ID: emailindex.ID(tenant, em)}, &protocol.EmailRelease{UserId: uuid})
	ctx.Reply(a.status(after))
	return nil
}

func (a *Actor) profile(ctx actors.Context) error {
	st := a.state.GetState()
	if st == none {
		return a.require()
	}
	tenant, _, _ := parseID(a.id)
	p := &protocol.UserProfile{
		Status:             a.status(a.state),
		Tenant:             tenant,
		RegisteredUnixNano: a.state.GetRegisteredUnixNano(),
	}
	if st == deleted || st == erased {
		ctx.Reply(p)
		return nil
	}
	key := a.state.GetKey()
	for _, f := range []struct {
		field  string
		sealed []byte
		out    *string
	}{
		{fieldFirstName, a.state.GetSealedFirstName(), &p.FirstName},
		{fieldLastName, a.state.GetSealedLastName(), &p.LastName},
		{fieldPhone, a.state.GetSealedPhone(), &p.Phone},
		{fieldEmail, a.state.GetSealedEmail(), &p.Email},
	} {
		v, err := open(key, a.id, f.field, f.sealed)
		if err != nil {
			return err
		}
		*f.out = v
	}
	p.HasPassword = len(a.state.GetSealedPhc()) > 0
	ctx.Reply(p)
	return nil
}

func (a *Actor) status(s *protocol.UserSnapshot) *protocol.UserStatus {
	_, uuid, _ := parseID(a.id)
	return &protocol.UserStatus{
		UserId:        uuid,
		State:         s.GetState(),
		EmailVerified: s.GetEmailVerified(),
		PhoneVerified: s.GetPhoneVerified(),
		Acr:           s.GetAcr(),
	}
}

func stateName(s protocol.UserState) string {
	switch s {
	case pending:
		return "pending verification"
	case active:
		return "active"
	case suspended:
		return "suspended"
	case deleted:
		return "deleted"
	case erased:
		return "erased"
	default:
		return "not registered"
	}
}

// SnapshotRequired reports whether the host must write a snapshot in the
// same write as events. It does for UserErased: the snapshot (which has no
// key) makes the store delete every earlier event, UserKeyIssued included;
// without it the key would stay in the log and erasure would be undone by
// the next replay.
func (a *Actor) SnapshotRequired(events []protocol.Message) bool {
	for _, ev := range events {
		if _, ok := ev.(*protocol.UserErased); ok {
			return true
		}
	}
	return false
}
