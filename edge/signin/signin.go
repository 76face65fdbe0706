// Package signin checks an e-mail address and password against the user
// actors, for every page that signs a person in (the OpenID provider's
// login, the account page). One implementation, so that both give the
// same answers: unknown addresses and accounts that may not sign in cost
// the same hash and get the same error as a wrong password, and the user
// actor keeps the lockout.
package signin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/protocol"
)

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

// ErrBadCredentials: the address is unknown, the account may not sign in,
// or the password is wrong; deliberately not saying which.
var ErrBadCredentials = errors.New("bad credentials")

// LockedError: too many failures; RetryAfter says for how long.
type LockedError struct{ RetryAfter time.Duration }

func (e *LockedError) Error() string { return "account locked" }

// Password returns the user id (the token subject) of the tenant's account
// with this address and password. Errors: ErrBadCredentials, *LockedError,
// *password.BusyError (admission control), or an infrastructure error.
func Password(ctx context.Context, r Requester, hasher *password.Hasher, tenant, email, pw string) (string, error) {
	dummy := func() (string, error) {
		if err := hasher.VerifyDummy(ctx, pw); err != nil {
			return "", err
		}
		return "", ErrBadCredentials
	}
	m, err := r.Request(ctx, emailindex.KindName, emailindex.ID(tenant, email), &protocol.EmailLookup{})
	if err != nil {
		if c := actors.CodeOf(err); c == protocol.ErrorCode_ERROR_CODE_NOT_FOUND || c == protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			return dummy()
		}
		return "", fmt.Errorf("look up e-mail: %w", err)
	}
	uid := m.(*protocol.EmailHolder).GetUserId()
	actor := user.ID(tenant, uid)
	m, err = r.Request(ctx, user.KindName, actor, &protocol.GetCredentials{})
	if err != nil {
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
			// Reserved but never registered (a registration that died
			// half-way).
			return dummy()
		}
		return "", fmt.Errorf("credentials: %w", err)
	}
	cred := m.(*protocol.UserCredentials)
	if cred.GetLock().GetLocked() {
		return "", &LockedError{RetryAfter: time.Duration(cred.GetLock().GetRetryAfterNanos())}
	}
	if cred.GetPhc() == "" || cred.GetState() != protocol.UserState_USER_STATE_ACTIVE {
		return dummy()
	}
	ok, _, err := hasher.Verify(ctx, cred.GetPhc(), pw)
	if err != nil {
		return "", err
	}
	m, err = r.Request(ctx, user.KindName, actor, &protocol.RecordLogin{Success: ok})
	if err != nil {
		return "", fmt.Errorf("record login: %w", err)
	}
	if st := m.(*protocol.LoginStatus); !st.GetAccepted() {
		return "", &LockedError{RetryAfter: time.Duration(st.GetLock().GetRetryAfterNanos())}
	}
	if !ok {
		return "", ErrBadCredentials
	}
	return uid, nil
}
