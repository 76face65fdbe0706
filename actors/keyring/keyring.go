// Package keyring is the rotation policy for the OIDC provider's signing
// keys. It is pure: time and the key generator are parameters, and the key state is a
// protocol.KeySet the host keeps in the meta group's kv under KVKey.
//
// Each key moves through four instants, fixed when it is created:
//
//	publish_at  <=  activate_at  <  retire_at  <=  remove_at
//	in JWKS         signs            stops          out of JWKS
//
// For each algorithm the signing windows [activate_at, retire_at) of
// successive keys touch end to start, so there is always exactly one key to
// sign with. A successor is published at least Policy.LeadTime before it
// signs, so verifiers holding a cached JWKS already know it; a retired key
// stays published until retire_at + MaxTokenLifetime + Leeway, so every token
// it signed verifies until it expires.
//
// Rotation needs no clock-driven writes: Signing and Published read the
// instants, so a key takes over at its activate_at even if nobody is
// looking. Plan only has to run once per rotation period (NextPlan says when)
// to pre-create the next successor and drop removed keys.
package keyring

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wardhq/ward/protocol"
)

// KVKey is where the host keeps the encoded KeySet in the meta group's kv.
const KVKey = "oidc/signing-keys"

var (
	ErrBadAlg      = errors.New("unsupported signing algorithm")
	ErrBadKey      = errors.New("bad signing key")
	ErrBadWindow   = errors.New("bad key window")
	ErrOverlap     = errors.New("overlapping signing windows")
	ErrDuplicate   = errors.New("duplicate kid")
	ErrBadPolicy   = errors.New("bad rotation policy")
	ErrNoActiveKey = errors.New("no active signing key")
)

// Policy says how often keys rotate and how long their edges last. Zero
// fields take the defaults of DefaultPolicy.
type Policy struct {
	// Algs are the algorithms that always have an active key.
	Algs []protocol.KeyAlg
	// RotateEvery is how long a key signs (default 90 days).
	RotateEvery time.Duration
	// MaxTokenLifetime is the longest lifetime of any token the keys sign
	// (default 8h, the refresh-token lifetime).
	MaxTokenLifetime time.Duration
	// LeadTime is how long a successor is in JWKS before it signs; at least
	// MaxTokenLifetime (default: equal to it).
	LeadTime time.Duration
	// Leeway is the clock skew verifiers allow past exp; a retired key stays
	// published that much longer (default 1 minute).
	Leeway time.Duration
}

// DefaultPolicy is RS256 and ES256, rotated every 90 days, for tokens living
// at most 8 hours.
func DefaultPolicy() Policy {
	return Policy{
		Algs:             []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_RS256, protocol.KeyAlg_KEY_ALG_ES256},
		RotateEvery:      90 * 24 * time.Hour,
		MaxTokenLifetime: 8 * time.Hour,
		Leeway:           time.Minute,
	}
}

func (p Policy) normalized() (Policy, error) {
	d := DefaultPolicy()
	if len(p.Algs) == 0 {
		p.Algs = d.Algs
	}
	if p.RotateEvery == 0 {
		p.RotateEvery = d.RotateEvery
	}
	if p.MaxTokenLifetime == 0 {
		p.MaxTokenLifetime = d.MaxTokenLifetime
	}
	if p.LeadTime == 0 {
		p.LeadTime = p.MaxTokenLifetime
	}
	if p.Leeway == 0 {
		p.Leeway = d.Leeway
	}
	seen := map[protocol.KeyAlg]bool{}
	for _, a := range p.Algs {
		if !validAlg(a) {
			return p, fmt.Errorf("%w: %w: %v", ErrBadPolicy, ErrBadAlg, a)
		}
		if seen[a] {
			return p, fmt.Errorf("%w: algorithm %v listed twice", ErrBadPolicy, a)
		}
		seen[a] = true
	}
	switch {
	case p.RotateEvery < 0 || p.MaxTokenLifetime < 0 || p.LeadTime < 0 || p.Leeway < 0:
		return p, fmt.Errorf("%w: negative duration", ErrBadPolicy)
	case p.LeadTime < p.MaxTokenLifetime:
		return p, fmt.Errorf("%w: lead time %v is shorter than the max token lifetime %v", ErrBadPolicy, p.LeadTime, p.MaxTokenLifetime)
	case p.RotateEvery <= p.LeadTime:
		// Otherwise a successor would have to be published before its
		// predecessor started signing, and the chain of pending keys grows.
		return p, fmt.Errorf("%w: rotation period %v is not longer than the lead time %v", ErrBadPolicy, p.RotateEvery, p.LeadTime)
	}
	return p, nil
}

func (p Policy) removeAfterRetire() int64 { return int64(p.MaxTokenLifetime + p.Leeway) }

func validAlg(a protocol.KeyAlg) bool {
	return a == protocol.KeyAlg_KEY_ALG_RS256 || a == protocol.KeyAlg_KEY_ALG_ES256
}

// Validate checks every key (kid, algorithm, key material matching the
// algorithm and the kid, ordered instants) and that no two keys of one
// algorithm sign at the same time. A nil set is a valid empty one.
func Validate(set *protocol.KeySet) error {
	if err := validateWindows(set); err != nil {
		return err
	}
	for _, k := range set.GetKeys() {
		if err := validateMaterial(k); err != nil {
			return err
		}
	}
	return nil
}

func validateWindows(set *protocol.KeySet) error {
	kids := map[string]bool{}
	byAlg := map[protocol.KeyAlg][]*protocol.SigningKey{}
	for i, k := range set.GetKeys() {
		if k == nil {
			return fmt.Errorf("key %d: %w: missing", i, ErrBadKey)
		}
		if k.Kid == "" {
			return fmt.Errorf("key %d: %w: empty kid", i, ErrBadKey)
		}
		if kids[k.Kid] {
			return fmt.Errorf("key %q: %w", k.Kid, ErrDuplicate)
		}
		kids[k.Kid] = true
		if !validAlg(k.Alg) {
			return fmt.Errorf("key %q: %w: %v", k.Kid, ErrBadAlg, k.Alg)
		}
		// activate_at == retire_at is allowed: a key withdrawn the instant it
		// would have started signing never signed anything.
		if k.PublishAtUnixNano <= 0 || k.CreatedUnixNano > k.PublishAtUnixNano ||
			k.PublishAtUnixNano > k.ActivateAtUnixNano || k.ActivateAtUnixNano > k.RetireAtUnixNano ||
			k.RetireAtUnixNano > k.RemoveAtUnixNano {
			return fmt.Errorf("key %q: %w: want created <= publish <= activate <= retire <= remove, have %s",
				k.Kid, ErrBadWindow, describe(k))
		}
		byAlg[k.Alg] = append(byAlg[k.Alg], k)
	}
	for alg, keys := range byAlg {
		keys = slices.Clone(keys)
		sortKeys(keys)
		for i := 1; i < len(keys); i++ {
			a, b := keys[i-1], keys[i]
			if a.RetireAtUnixNano > b.ActivateAtUnixNano {
				return fmt.Errorf("%v keys %q and %q: %w: %s / %s", alg, a.Kid, b.Kid, ErrOverlap, describe(a), describe(b))
			}
		}
	}
	return nil
}

func validateMaterial(k *protocol.SigningKey) error {
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return fmt.Errorf("key %q: %w: private key: %w", k.Kid, ErrBadKey, err)
	}
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return fmt.Errorf("key %q: %w: public key: %w", k.Kid, ErrBadKey, err)
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if k.Alg != protocol.KeyAlg_KEY_ALG_RS256 {
			return fmt.Errorf("key %q: %w: RSA key for %v", k.Kid, ErrBadKey, k.Alg)
		}
		if p.N.BitLen() < minRSABits {
			return fmt.Errorf("key %q: %w: RSA key of %d bits", k.Kid, ErrBadKey, p.N.BitLen())
		}
		if !p.PublicKey.Equal(pub) {
			return fmt.Errorf("key %q: %w: public key does not match private key", k.Kid, ErrBadKey)
		}
	case *ecdsa.PrivateKey:
		if k.Alg != protocol.KeyAlg_KEY_ALG_ES256 || p.Curve != elliptic.P256() {
			return fmt.Errorf("key %q: %w: EC key on %s for %v", k.Kid, ErrBadKey, p.Curve.Params().Name, k.Alg)
		}
		if !p.PublicKey.Equal(pub) {
			return fmt.Errorf("key %q: %w: public key does not match private key", k.Kid, ErrBadKey)
		}
	default:
		return fmt.Errorf("key %q: %w: %T", k.Kid, ErrBadKey, priv)
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return fmt.Errorf("key %q: %w", k.Kid, err)
	}
	if kid != k.Kid {
		return fmt.Errorf("key %q: %w: kid is not the key's thumbprint %q", k.Kid, ErrBadKey, kid)
	}
	return nil
}

// Signing is the key of alg that signs at now.
func Signing(set *protocol.KeySet, alg protocol.KeyAlg, now time.Time) (*protocol.SigningKey, error) {
	if !validAlg(alg) {
		return nil, fmt.Errorf("signing key: %w: %v", ErrBadAlg, alg)
	}
	t := now.UnixNano()
	var found *protocol.SigningKey
	for _, k := range set.GetKeys() {
		if k.Alg == alg && k.ActivateAtUnixNano <= t && t < k.RetireAtUnixNano {
			// A validated set has one match; on a bad one prefer the newest.
			if found == nil || k.ActivateAtUnixNano > found.ActivateAtUnixNano {
				found = k
			}
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w for %v at %s", ErrNoActiveKey, alg, now.UTC().Format(time.RFC3339Nano))
	}
	return found, nil
}

// Published are the keys a JWKS served at now lists.
func Published(set *protocol.KeySet, now time.Time) []*protocol.SigningKey {
	t := now.UnixNano()
	var out []*protocol.SigningKey
	for _, k := range set.GetKeys() {
		if k.PublishAtUnixNano <= t && t < k.RemoveAtUnixNano {
			out = append(out, k)
		}
	}
	return out
}

// NextPlan is when Plan should next run: the earliest instant after now at
// which a key starts signing (its successor is then due) or leaves JWKS.
// The zero time means no key has anything left to happen.
func NextPlan(set *protocol.KeySet, now time.Time) time.Time {
	t := now.UnixNano()
	var next int64
	for _, k := range set.GetKeys() {
		for _, at := range []int64{k.ActivateAtUnixNano, k.RemoveAtUnixNano} {
			if at > t && (next == 0 || at < next) {
				next = at
			}
		}
	}
	if next == 0 {
		return time.Time{}
	}
	return time.Unix(0, next)
}

// Plan brings set up to policy at now: it drops keys whose tokens have all
// expired and makes sure each algorithm has an active key and a successor
// scheduled behind it. It returns a new set (set is not modified) and
// whether anything changed. New keys come from gen.
//
// A successor is published LeadTime before its predecessor retires. When
// Plan runs too late for that, the successor is published now and the
// predecessor keeps signing until the lead time has passed, rather than
// handing over to a key verifiers may not know yet.
//
// With no usable key at all (a new cluster, or nobody ran Plan for a whole
// rotation period) the new key signs at once: there is nothing else to sign
// with, and a verifier meeting an unknown kid refetches JWKS.
func Plan(set *protocol.KeySet, now time.Time, policy Policy, gen KeyGen) (*protocol.KeySet, bool, error) {
	p, err := policy.normalized()
	if err != nil {
		return nil, false, err
	}
	if err := Validate(set); err != nil {
		return nil, false, fmt.Errorf("plan: %w", err)
	}
	t := now.UnixNano()
	out := &protocol.KeySet{Version: set.GetVersion()}
	changed := false
	for _, k := range set.GetKeys() {
		if k.RemoveAtUnixNano <= t {
			changed = true
			continue
		}
		out.Keys = append(out.Keys, cloneKey(k))
	}
	for _, alg := range p.Algs {
		// At most two rounds: a bootstrap key, then its successor.
		for {
			last := lastOf(out, alg)
			if last != nil && last.ActivateAtUnixNano > t {
				break
			}
			k, err := newKey(alg, gen, t)
			if err != nil {
				return nil, false, fmt.Errorf("plan: %w", err)
			}
			if last == nil || last.RetireAtUnixNano <= t {
				schedule(k, t, t, p)
			} else {
				activate := last.RetireAtUnixNano
				publish := activate - int64(p.LeadTime)
				if publish < t {
					publish, activate = t, t+int64(p.LeadTime)
					retire(last, activate, p)
				}
				schedule(k, publish, activate, p)
			}
			out.Keys = append(out.Keys, k)
			changed = true
		}
	}
	if !changed {
		return set, false, nil
	}
	sortKeys(out.Keys)
	out.Version++
	if err := validateWindows(out); err != nil {
		return nil, false, fmt.Errorf("plan produced a bad set: %w", err)
	}
	return out, true, nil
}

// RotateOptions tune RotateNow.
type RotateOptions struct {
	// Algs to rotate; empty means every algorithm of the policy.
	Algs []protocol.KeyAlg
	// Force is for a compromised key: the new key signs at once and the old
	// one leaves JWKS at once, so tokens it signed stop verifying.
	Force bool
}

// RotateNow is an operator's rotation: for each algorithm a new key is
// published now and replaces the active key as soon as the lead time
// allows. Scheduled successors that have not signed yet are dropped.
//
// The new key does not sign at once because verifiers cache JWKS: a token
// carrying a kid their cache lacks fails (or costs a refetch each) until the
// cache expires. Waiting LeadTime costs nothing when the old key is sound.
// When it is not, opts.Force trades those failures for withdrawing it
// immediately. Force withdraws the active key only; keys retired earlier
// stay published until their tokens expire (at most MaxTokenLifetime).
func RotateNow(set *protocol.KeySet, now time.Time, policy Policy, gen KeyGen, opts RotateOptions) (*protocol.KeySet, error) {
	p, err := policy.normalized()
	if err != nil {
		return nil, err
	}
	if err := Validate(set); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	algs := opts.Algs
	if len(algs) == 0 {
		algs = p.Algs
	}
	for _, a := range algs {
		if !validAlg(a) {
			return nil, fmt.Errorf("rotate: %w: %v", ErrBadAlg, a)
		}
	}
	t := now.UnixNano()
	out := &protocol.KeySet{Version: set.GetVersion() + 1}
	for _, k := range set.GetKeys() {
		if slices.Contains(algs, k.Alg) && k.ActivateAtUnixNano > t {
			continue
		}
		out.Keys = append(out.Keys, cloneKey(k))
	}
	for _, alg := range algs {
		k, err := newKey(alg, gen, t)
		if err != nil {
			return nil, fmt.Errorf("rotate: %w", err)
		}
		cur, _ := Signing(out, alg, now)
		switch {
		case cur == nil:
			schedule(k, t, t, p)
		case opts.Force:
			cur.RetireAtUnixNano, cur.RemoveAtUnixNano, cur.Compromised = t, t, true
			schedule(k, t, t, p)
		default:
			// The old key signs until the new one may: later if its own
			// successor (dropped above) was about to take over, earlier
			// otherwise.
			activate := t + int64(p.LeadTime)
			cur.RetireAtUnixNano = activate
			cur.RemoveAtUnixNano = activate + p.removeAfterRetire()
			schedule(k, t, activate, p)
		}
		out.Keys = append(out.Keys, k)
	}
	sortKeys(out.Keys)
	if err := validateWindows(out); err != nil {
		return nil, fmt.Errorf("rotate produced a bad set: %w", err)
	}
	return out, nil
}

// Encode is the form the host stores under KVKey.
func Encode(set *protocol.KeySet) ([]byte, error) {
	if err := validateWindows(set); err != nil {
		return nil, fmt.Errorf("encode key set: %w", err)
	}
	b, err := protocol.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode key set: %w", err)
	}
	return b, nil
}

// Decode reads what Encode wrote and validates it in full, so a corrupt kv
// value is refused before any key in it is used.
func Decode(b []byte) (*protocol.KeySet, error) {
	m, err := protocol.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("decode key set: %w", err)
	}
	set, ok := m.(*protocol.KeySet)
	if !ok {
		return nil, fmt.Errorf("decode key set: holds %s", protocol.TypeName(m))
	}
	if err := Validate(set); err != nil {
		return nil, fmt.Errorf("decode key set: %w", err)
	}
	return set, nil
}

func schedule(k *protocol.SigningKey, publish, activate int64, p Policy) {
	k.PublishAtUnixNano = publish
	k.ActivateAtUnixNano = activate
	k.RetireAtUnixNano = activate + int64(p.RotateEvery)
	k.RemoveAtUnixNano = k.RetireAtUnixNano + p.removeAfterRetire()
}

// retire makes k sign at least until at, keeping it published until its last
// token expires.
func retire(k *protocol.SigningKey, at int64, p Policy) {
	if k.RetireAtUnixNano < at {
		k.RetireAtUnixNano = at
	}
	if rm := k.RetireAtUnixNano + p.removeAfterRetire(); k.RemoveAtUnixNano < rm {
		k.RemoveAtUnixNano = rm
	}
}

// lastOf is alg's key that signs last.
func lastOf(set *protocol.KeySet, alg protocol.KeyAlg) *protocol.SigningKey {
	var last *protocol.SigningKey
	for _, k := range set.GetKeys() {
		if k.Alg == alg && (last == nil || k.RetireAtUnixNano > last.RetireAtUnixNano) {
			last = k
		}
	}
	return last
}

func sortKeys(keys []*protocol.SigningKey) {
	slices.SortFunc(keys, func(a, b *protocol.SigningKey) int {
		return cmp.Or(
			cmp.Compare(a.Alg, b.Alg),
			cmp.Compare(a.ActivateAtUnixNano, b.ActivateAtUnixNano),
			cmp.Compare(a.RetireAtUnixNano, b.RetireAtUnixNano),
			cmp.Compare(a.Kid, b.Kid))
	})
}

// cloneKey copies field by field: proto.Clone is outside what actor code may
// import, and the key bytes are never mutated, so sharing them is safe.
func cloneKey(k *protocol.SigningKey) *protocol.SigningKey {
	return &protocol.SigningKey{
		Kid:                k.Kid,
		Alg:                k.Alg,
		PrivateKey:         k.PrivateKey,
		PublicKey:          k.PublicKey,
		CreatedUnixNano:    k.CreatedUnixNano,
		PublishAtUnixNano:  k.PublishAtUnixNano,
		ActivateAtUnixNano: k.ActivateAtUnixNano,
		RetireAtUnixNano:   k.RetireAtUnixNano,
		RemoveAtUnixNano:   k.RemoveAtUnixNano,
		Compromised:        k.Compromised,
	}
}

func describe(k *protocol.SigningKey) string {
	f := func(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
	return fmt.Sprintf("created %s publish %s activate %s retire %s remove %s",
		f(k.CreatedUnixNano), f(k.PublishAtUnixNano), f(k.ActivateAtUnixNano), f(k.RetireAtUnixNano), f(k.RemoveAtUnixNano))
}
