// Package apikey is the API key actor: one tenant-scoped key (actor id = the
// key id) with its name, scopes, expiry and the SHA-256 of its secret, and
// the apikeyindex actor that lists a tenant's key ids.
//
// The key a client presents is "ward_<key id>_<secret>" ([Format], [Parse]):
// the id routes the request to this actor, which compares the secret's hash
// in constant time. The actor draws the secret itself from its entropy and
// returns it only in the reply to Create and Rotate; events and snapshots
// carry the hash alone.
//
// Rotation keeps the previous secret working for an overlap window (default
// 24 h) so that a client can be redeployed without an outage; a second
// rotation ends the first one's overlap. Revocation ends both at once.
//
// Every command but Verify names the tenant it is made for; a key of another
// tenant answers not found, so one tenant cannot learn of another's keys.
package apikey

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/protocol"
)

// KindName is the API key kind's stable name.
const KindName = "apikey"

// Kind registers the API key actor with a host.
var Kind = actors.Kind{Name: KindName, New: func(id string) actors.Actor { return New(id) }}

const (
	// SecretLen is the secret's length in bytes (256 bits).
	SecretLen = 32
	// DefaultLifetime is a key's lifetime when Create names no expiry.
	DefaultLifetime = 90 * 24 * time.Hour
	// MaxLifetime bounds a key's lifetime: a key nobody rotates for longer
	// is a key nobody watches.
	MaxLifetime = 2 * 365 * 24 * time.Hour
	// DefaultOverlap is how long a rotated-away secret keeps working.
	DefaultOverlap = 24 * time.Hour
	// MaxOverlap bounds the overlap: it is for a redeploy, not a second key.
	MaxOverlap = 7 * 24 * time.Hour

	MaxNameLen  = 100
	MaxScopes   = 32
	MaxScopeLen = 64
	MaxByLen    = 128
)

// Actor is one API key.
type Actor struct {
	id   string
	info *protocol.APIKeyInfo // nil until created
	hash []byte
	prev []byte // the rotated-away secret's hash, while it may still work
}

// New returns the not yet created key with the given id.
func New(id string) *Actor { return &Actor{id: id} }

func invalid(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

func denied(format string, args ...any) error {
	return actors.Errorf(protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED, format, args...)
}

// Receive implements actors.Actor.
func (a *Actor) Receive(ctx actors.Context, msg protocol.Message) error {
	if err := ValidID(a.id); err != nil {
		return err
	}
	switch m := msg.(type) {
	case *protocol.CreateAPIKey:
		return a.create(ctx, m)
	case *protocol.RotateAPIKey:
		return a.rotate(ctx, m)
	case *protocol.RevokeAPIKey:
		return a.revoke(ctx, m)
	case *protocol.GetAPIKey:
		if err := a.mine(m.GetTenant()); err != nil {
			return err
		}
		ctx.Reply(a.view(ctx.Now()))
		return nil
	case *protocol.VerifyAPIKey:
		return a.verify(ctx, m)
	default:
		return actors.ErrUnknownMessage(KindName, msg)
	}
}

// mine refuses a command for another tenant exactly as for a missing key.
func (a *Actor) mine(tenant string) error {
	if err := emailindex.ValidTenant(tenant); err != nil {
		return err
	}
	if a.info == nil || a.info.GetTenant() != tenant {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "tenant %s has no API key %s", tenant, a.id)
	}
	return nil
}

func (a *Actor) meta(ctx actors.Context, typ string) *protocol.EventMeta {
	return &protocol.EventMeta{Type: typ, Tenant: a.info.GetTenant(), Subject: a.id, TimeUnixNano: ctx.Now().UnixNano()}
}

// emit records a domain event about this key for its tenant's feed: the
// key id and the name an administrator gave it, never the secret or its
// hash.
func (a *Actor) emit(ctx actors.Context, typ, tenant, name string) error {
	return actors.EmitEvent(ctx, typ, tenant, a.id, &protocol.APIKeyEventData{KeyId: a.id, Name: name})
}

// view is the key as it may be shown at now: the status accounts for
// expiry, which needs no event.
func (a *Actor) view(now time.Time) *protocol.APIKeyInfo {
	v := protocol.Clone(a.info)
	if v.Status == protocol.APIKeyStatus_API_KEY_STATUS_ACTIVE && now.UnixNano() >= v.GetExpiresUnixNano() {
		v.Status = protocol.APIKeyStatus_API_KEY_STATUS_EXPIRED
	}
	if v.GetPreviousValidUntilUnixNano() <= now.UnixNano() || v.Status != protocol.APIKeyStatus_API_KEY_STATUS_ACTIVE {
		v.PreviousValidUntilUnixNano = 0
	}
	return v
}

func drawSecret(ctx actors.Context) ([]byte, []byte, error) {
	secret := make([]byte, SecretLen)
	if _, err := io.ReadFull(ctx.Entropy(), secret); err != nil {
		return nil, nil, fmt.Errorf("api key secret: %w", err)
	}
	h := sha256.Sum256(secret)
	return secret, h[:], nil
}

func (a *Actor) create(ctx actors.Context, m *protocol.CreateAPIKey) error {
	if err := emailindex.ValidTenant(m.GetTenant()); err != nil {
		return err
	}
	if a.info != nil {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "API key %s already exists", a.id)
	}
	name, err := validName(m.GetName())
	if err != nil {
		return err
	}
	scopes, err := validScopes(m.GetScopes())
	if err != nil {
		return err
	}
	if err := validBy("created_by", m.GetCreatedBy()); err != nil {
		return err
	}
	now := ctx.Now().UnixNano()
	exp := m.GetExpiresUnixNano()
	switch {
	case exp == 0:
		exp = now + int64(DefaultLifetime)
	case exp <= now:
		return invalid("expiry must be in the future")
	case exp-now > int64(MaxLifetime):
		return invalid("expiry must be within %s", MaxLifetime)
	}
	if m.GetCheckOnly() {
		ctx.Reply(createdInfo(a.id, &protocol.APIKeyCreated{
			Meta: &protocol.EventMeta{Tenant: m.GetTenant(), TimeUnixNano: now},
			Name: name, Scopes: scopes, ExpiresUnixNano: exp, CreatedBy: m.GetCreatedBy(),
		}))
		return nil
	}
	secret, hash, err := drawSecret(ctx)
	if err != nil {
		return err
	}
	ev := &protocol.APIKeyCreated{
		Meta: &protocol.EventMeta{Type: "identity.api_key.created.v1", Tenant: m.GetTenant(), Subject: a.id, TimeUnixNano: now},
		Name: name, Scopes: scopes, ExpiresUnixNano: exp, CreatedBy: m.GetCreatedBy(), SecretHash: hash,
	}
	ctx.Persist(ev)
	if err := a.emit(ctx, "identity.api_key.created.v1", m.GetTenant(), name); err != nil {
		return err
	}
	ctx.Reply(&protocol.APIKeyIssued{Key: createdInfo(a.id, ev), Secret: secret})
	return nil
}

func createdInfo(id string, ev *protocol.APIKeyCreated) *protocol.APIKeyInfo {
	return &protocol.APIKeyInfo{
		Id: id, Tenant: ev.GetMeta().GetTenant(), Name: ev.GetName(), Scopes: ev.GetScopes(),
		Status: protocol.APIKeyStatus_API_KEY_STATUS_ACTIVE, CreatedUnixNano: ev.GetMeta().GetTimeUnixNano(),
		ExpiresUnixNano: ev.GetExpiresUnixNano(), CreatedBy: ev.GetCreatedBy(), Generation: 1,
	}
}

// usable refuses commands and verifications of a key that no longer works.
func (a *Actor) usable(now time.Time) error {
	switch v := a.view(now); v.GetStatus() {
	case protocol.APIKeyStatus_API_KEY_STATUS_REVOKED:
		return denied("API key %s is revoked", a.id)
	case protocol.APIKeyStatus_API_KEY_STATUS_EXPIRED:
		return denied("API key %s expired", a.id)
	}
	return nil
}

func (a *Actor) rotate(ctx actors.Context, m *protocol.RotateAPIKey) error {
	if err := a.mine(m.GetTenant()); err != nil {
		return err
	}
	if err := validBy("by", m.GetBy()); err != nil {
		return err
	}
	overlap := m.GetOverlapNanos()
	switch {
	case overlap == 0:
		overlap = int64(DefaultOverlap)
	case overlap < 0 || overlap > int64(MaxOverlap):
		return invalid("overlap must be between 0 and %s", MaxOverlap)
	}
	if err := a.usable(ctx.Now()); err != nil {
		// A revoked or expired key stays dead: rotating must not revive it.
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "%s", err)
	}
	secret, hash, err := drawSecret(ctx)
	if err != nil {
		return err
	}
	// The overlap never outlives the key itself.
	until := min(ctx.Now().UnixNano()+overlap, a.info.GetExpiresUnixNano())
	ev := &protocol.APIKeyRotated{Meta: a.meta(ctx, "identity.api_key.rotated.v1"), SecretHash: hash, PreviousValidUntilUnixNano: until, By: m.GetBy()}
	ctx.Persist(ev)
	if err := a.emit(ctx, "identity.api_key.rotated.v1", a.info.GetTenant(), a.info.GetName()); err != nil {
		return err
	}
	after := protocol.Clone(a.info)
	rotated(after, ev)
	ctx.Reply(&protocol.APIKeyIssued{Key: after, Secret: secret})
	return nil
}

func rotated(info *protocol.APIKeyInfo, ev *protocol.APIKeyRotated) {
	info.RotatedUnixNano = ev.GetMeta().GetTimeUnixNano()
	info.PreviousValidUntilUnixNano = ev.GetPreviousValidUntilUnixNano()
	info.Generation++
}

func (a *Actor) revoke(ctx actors.Context, m *protocol.RevokeAPIKey) error {
	if err := a.mine(m.GetTenant()); err != nil {
		return err
	}
	if err := validBy("by", m.GetBy()); err != nil {
		return err
	}
	if a.info.GetStatus() == protocol.APIKeyStatus_API_KEY_STATUS_REVOKED {
		ctx.Reply(a.view(ctx.Now()))
		return nil
	}
	ev := &protocol.APIKeyRevoked{Meta: a.meta(ctx, "identity.api_key.revoked.v1"), By: m.GetBy()}
	ctx.Persist(ev)
	if err := a.emit(ctx, "identity.api_key.revoked.v1", a.info.GetTenant(), a.info.GetName()); err != nil {
		return err
	}
	after := protocol.Clone(a.info)
	after.Status, after.RevokedUnixNano, after.PreviousValidUntilUnixNano = protocol.APIKeyStatus_API_KEY_STATUS_REVOKED, ev.GetMeta().GetTimeUnixNano(), 0
	ctx.Reply(after)
	return nil
}

func (a *Actor) verify(ctx actors.Context, m *protocol.VerifyAPIKey) error {
	presented := m.GetSecretSha256()
	if len(presented) != sha256.Size {
		return invalid("secret_sha256 must be %d bytes", sha256.Size)
	}
	if a.info == nil {
		return actors.Errorf(protocol.ErrorCode_ERROR_CODE_NOT_FOUND, "no API key %s", a.id)
	}
	now := ctx.Now()
	if err := a.usable(now); err != nil {
		return err
	}
	// Both comparisons always run, so the time taken does not say which
	// secret (if any) was close.
	cur := subtle.ConstantTimeCompare(presented, a.hash) == 1
	prev := len(a.prev) == sha256.Size && subtle.ConstantTimeCompare(presented, a.prev) == 1
	prevOK := prev && now.UnixNano() < a.info.GetPreviousValidUntilUnixNano()
	if !cur && !prevOK {
		return denied("API key %s: wrong secret", a.id)
	}
	ctx.Reply(&protocol.APIKeyVerified{Id: a.id, Tenant: a.info.GetTenant(), Scopes: a.info.GetScopes(), Name: a.info.GetName(), Previous: !cur})
	return nil
}

// Apply implements actors.Actor.
func (a *Actor) Apply(event protocol.Message) error {
	switch ev := event.(type) {
	case *protocol.APIKeyCreated:
		if a.info != nil {
			return fmt.Errorf("apikey %s: created twice", a.id)
		}
		a.info, a.hash = createdInfo(a.id, ev), ev.GetSecretHash()
	case *protocol.APIKeyRotated:
		if a.info == nil {
			return fmt.Errorf("apikey %s: rotated before created", a.id)
		}
		a.prev, a.hash = a.hash, ev.GetSecretHash()
		rotated(a.info, ev)
	case *protocol.APIKeyRevoked:
		if a.info == nil {
			return fmt.Errorf("apikey %s: revoked before created", a.id)
		}
		a.info.Status, a.info.RevokedUnixNano, a.info.PreviousValidUntilUnixNano = protocol.APIKeyStatus_API_KEY_STATUS_REVOKED, ev.GetMeta().GetTimeUnixNano(), 0
		a.prev = nil
	default:
		return fmt.Errorf("apikey: cannot apply %s", protocol.TypeName(event))
	}
	return nil
}

// Snapshot implements actors.Actor.
func (a *Actor) Snapshot() (protocol.Message, error) {
	s := &protocol.APIKeySnapshot{SecretHash: a.hash, PreviousHash: a.prev}
	if a.info != nil {
		s.Info = protocol.Clone(a.info)
	}
	return s, nil
}

// Restore implements actors.Actor.
func (a *Actor) Restore(snapshot protocol.Message) error {
	s, ok := snapshot.(*protocol.APIKeySnapshot)
	if !ok {
		return fmt.Errorf("apikey: snapshot is %s, want APIKeySnapshot", protocol.TypeName(snapshot))
	}
	a.info, a.hash, a.prev = s.GetInfo(), s.GetSecretHash(), s.GetPreviousHash()
	return nil
}

func validName(v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", invalid("name is not valid UTF-8")
	}
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", invalid("name is required")
	case len(v) > MaxNameLen:
		return "", invalid("name is %d bytes, more than %d", len(v), MaxNameLen)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "", invalid("name contains control characters")
	}
	return v, nil
}

// validScopes checks scope names ([a-z0-9._:-], as OAuth scopes are
// spelled here) and returns them deduplicated in the given order.
func validScopes(in []string) ([]string, error) {
	if len(in) > MaxScopes {
		return nil, invalid("at most %d scopes", MaxScopes)
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		ok := s != "" && len(s) <= MaxScopeLen
		for i := 0; ok && i < len(s); i++ {
			c := s[i]
			ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		}
		if !ok {
			return nil, invalid("scope must be 1 to %d characters of a-z 0-9 . _ : -", MaxScopeLen)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// validBy checks who asked: it goes into events, so it is bounded.
func validBy(field, v string) error {
	if v == "" || len(v) > MaxByLen || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return invalid("%s must be 1 to %d printable bytes", field, MaxByLen)
	}
	return nil
}
