package keyring

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/wardhq/ward/protocol"
)

const (
	rs = protocol.KeyAlg_KEY_ALG_RS256
	es = protocol.KeyAlg_KEY_ALG_ES256
)

var (
	t0  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	day = 24 * time.Hour
)

// testGen is the host's generator, with the system's randomness (tests
// may use it; the package itself may not).
func testGen(alg protocol.KeyAlg) (crypto.Signer, error) {
	if alg == rs {
		return rsa.GenerateKey(crand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
}

// esPolicy keeps the slow RSA key generation out of the long timelines.
func esPolicy() Policy {
	p := DefaultPolicy()
	p.Algs = []protocol.KeyAlg{es}
	return p
}

// token is what a signer issued: verifiers must find kid in JWKS from iat
// until exp plus leeway.
type token struct {
	kid      string
	alg      protocol.KeyAlg
	iat, exp time.Time
}

// world replays a key set through virtual time and checks at every probed
// instant what verifiers and signers rely on.
type world struct {
	t      *testing.T
	p      Policy // normalized
	set    *protocol.KeySet
	now    time.Time
	gen    KeyGen
	tokens []token
	// immediate are kids allowed to sign without lead time (first key,
	// forced rotations, recovery).
	immediate map[string]bool
	// withdrawn kids may vanish from JWKS before their tokens expire.
	withdrawn map[string]bool
}

func newWorld(t *testing.T, p Policy, seed uint64) *world {
	t.Helper()
	np, err := p.normalized()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, p: np, now: t0, gen: testGen, immediate: map[string]bool{}, withdrawn: map[string]bool{}}
	w.plan()
	for _, a := range np.Algs {
		if k, err := Signing(w.set, a, t0); err == nil {
			w.immediate[k.Kid] = true
		}
	}
	return w
}

func (w *world) plan() bool {
	w.t.Helper()
	next, changed, err := Plan(w.set, w.now, w.p, w.gen)
	if err != nil {
		w.t.Fatalf("plan at %s: %v", w.now, err)
	}
	w.set = next
	return changed
}

func (w *world) rotate(force bool) {
	w.t.Helper()
	before := map[protocol.KeyAlg]string{}
	for _, a := range w.p.Algs {
		if k, err := Signing(w.set, a, w.now); err == nil {
			before[a] = k.Kid
		}
	}
	next, err := RotateNow(w.set, w.now, w.p, w.gen, RotateOptions{Force: force})
	if err != nil {
		w.t.Fatalf("rotate at %s: %v", w.now, err)
	}
	w.set = next
	for _, a := range w.p.Algs {
		k, err := Signing(w.set, a, w.now)
		if err != nil {
			w.t.Fatalf("after rotate at %s: %v", w.now, err)
		}
		if force {
			w.immediate[k.Kid] = true
			w.withdrawn[before[a]] = true
		}
	}
}

// advance moves to `to`, probing every tick and every key boundary (and
// one nanosecond either side of it: a token signed a nanosecond before its
// key retires must still verify a nanosecond before the key leaves JWKS),
// running the planner at the instants the
// host's timer would (NextPlan) when timerPlanner is set.
func (w *world) advance(to time.Time, tick time.Duration, timerPlanner bool) {
	w.t.Helper()
	for w.now.Before(to) {
		next := w.now.Add(tick)
		for _, k := range w.set.Keys {
			for _, ns := range []int64{k.PublishAtUnixNano, k.ActivateAtUnixNano, k.RetireAtUnixNano, k.RemoveAtUnixNano} {
				for _, d := range []int64{-1, 0, 1} {
					at := time.Unix(0, ns+d)
					if at.After(w.now) && at.Before(next) {
						next = at
					}
				}
			}
		}
		if timerPlanner {
			if at := NextPlan(w.set, w.now); !at.IsZero() && at.Before(next) {
				next = at
			}
		}
		if next.After(to) {
			next = to
		}
		w.now = next
		if timerPlanner {
			w.plan()
		}
		w.check()
	}
}

// check asserts the invariants at w.now and issues a token per algorithm.
func (w *world) check() {
	w.t.Helper()
	published := map[string]bool{}
	for _, k := range Published(w.set, w.now) {
		published[k.Kid] = true
	}
	for _, a := range w.p.Algs {
		k, err := Signing(w.set, a, w.now)
		if err != nil {
			w.t.Fatalf("at %s: %v\n%s", w.now, err, dump(w.set))
		}
		n := 0
		for _, o := range w.set.Keys {
			if o.Alg == a && o.ActivateAtUnixNano <= w.now.UnixNano() && w.now.UnixNano() < o.RetireAtUnixNano {
				n++
			}
		}
		if n != 1 {
			w.t.Fatalf("at %s: %d active %v keys\n%s", w.now, n, a, dump(w.set))
		}
		if !published[k.Kid] {
			w.t.Fatalf("at %s: signing key %s is not published", w.now, k.Kid)
		}
		if !w.immediate[k.Kid] && w.now.UnixNano()-k.PublishAtUnixNano < int64(w.p.LeadTime) {
			w.t.Fatalf("at %s: key %s signs %v after publication, lead time is %v",
				w.now, k.Kid, time.Duration(w.now.UnixNano()-k.PublishAtUnixNano), w.p.LeadTime)
		}
		w.tokens = append(w.tokens, token{kid: k.Kid, alg: a, iat: w.now, exp: w.now.Add(w.p.MaxTokenLifetime)})
	}
	live := w.tokens[:0]
	for _, tok := range w.tokens {
		if w.now.After(tok.exp.Add(w.p.Leeway)) {
			continue
		}
		if !published[tok.kid] && !w.withdrawn[tok.kid] {
			w.t.Fatalf("at %s: token signed at %s by %s (exp %s) no longer verifies: key left JWKS\n%s",
				w.now, tok.iat, tok.kid, tok.exp, dump(w.set))
		}
		live = append(live, tok)
	}
	w.tokens = live
}

func dump(set *protocol.KeySet) string {
	var b bytes.Buffer
	for _, k := range set.GetKeys() {
		fmt.Fprintf(&b, "  %v %s…: %s\n", k.Alg, k.Kid[:8], describe(k))
	}
	return b.String()
}

// TestRotationTimeline runs key sets through virtual time: tokens signed
// before, during and after each rotation verify until they expire, there is
// always exactly one signing key per algorithm, and no successor signs before
// it has been published for the lead time.
func TestRotationTimeline(t *testing.T) {
	short := Policy{Algs: []protocol.KeyAlg{rs, es}, RotateEvery: 10 * day, MaxTokenLifetime: 8 * time.Hour}
	tests := []struct {
		name   string
		policy Policy
		run    func(w *world)
	}{
		{"planner on a timer, both algs, three rotations", short, func(w *world) {
			w.advance(t0.Add(35*day), 2*time.Hour, true)
		}},
		{"planner on a timer, default policy, a year", esPolicy(), func(w *world) {
			w.advance(t0.Add(365*day), 6*time.Hour, true)
		}},
		{"planner runs once a period, just after activation", esPolicy(), func(w *world) {
			for range 4 {
				w.advance(w.now.Add(90*day), 6*time.Hour, false)
				w.plan()
			}
		}},
		{"planner runs late, after the successor was due", esPolicy(), func(w *world) {
			// Bootstrap planned the first successor; nobody plans again until
			// 2h before that successor retires, 6h after its own successor
			// should have been published.
			w.advance(t0.Add(180*day-2*time.Hour), time.Hour, false)
			w.plan()
			w.advance(t0.Add(300*day), time.Hour, true)
		}},
		{"operator rotation mid-period", esPolicy(), func(w *world) {
			w.advance(t0.Add(40*day), 3*time.Hour, true)
			w.rotate(false)
			w.advance(t0.Add(45*day), 30*time.Minute, true)
			w.rotate(false)
			// A second rotation inside the lead time of the first.
			w.advance(w.now.Add(2*time.Hour), 10*time.Minute, true)
			w.rotate(false)
			w.advance(t0.Add(200*day), 3*time.Hour, true)
		}},
		{"operator rotation just before a scheduled one", esPolicy(), func(w *world) {
			w.advance(t0.Add(90*day-time.Hour), time.Hour, true)
			w.rotate(false)
			w.advance(t0.Add(100*day), time.Hour, true)
		}},
		{"forced rotation for a compromised key", short, func(w *world) {
			w.advance(t0.Add(3*day), 2*time.Hour, true)
			w.rotate(true)
			w.advance(t0.Add(25*day), 2*time.Hour, true)
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.policy, uint64(i))
			w.check()
			tc.run(w)
			if err := Validate(w.set); err != nil {
				t.Fatalf("final set: %v", err)
			}
		})
	}
}

func TestPlanSchedulesSuccessorAtBootstrap(t *testing.T) {
	p := esPolicy()
	set, changed, err := Plan(nil, t0, p, testGen)
	if err != nil || !changed {
		t.Fatalf("plan: changed=%v err=%v", changed, err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("want an active key and its successor, have\n%s", dump(set))
	}
	first, next := set.Keys[0], set.Keys[1]
	want := func(what string, got int64, at time.Time) {
		t.Helper()
		if got != at.UnixNano() {
			t.Errorf("%s = %s, want %s", what, time.Unix(0, got).UTC(), at)
		}
	}
	want("first publish", first.PublishAtUnixNano, t0)
	want("first activate", first.ActivateAtUnixNano, t0)
	want("first retire", first.RetireAtUnixNano, t0.Add(90*day))
	want("first remove", first.RemoveAtUnixNano, t0.Add(90*day+8*time.Hour+time.Minute))
	want("next publish", next.PublishAtUnixNano, t0.Add(90*day-8*time.Hour))
	want("next activate", next.ActivateAtUnixNano, t0.Add(90*day))
	if got := Published(set, t0); len(got) != 1 || got[0].Kid != first.Kid {
		t.Errorf("successor published before its time")
	}
	again, changed, err := Plan(set, t0.Add(day), p, testGen)
	if err != nil || changed || again != set {
		t.Errorf("second plan changed a complete set: changed=%v err=%v", changed, err)
	}
	if at := NextPlan(set, t0); !at.Equal(t0.Add(90 * day)) {
		t.Errorf("NextPlan = %s, want the successor's activation", at)
	}
}

func TestPlanLateExtendsPredecessor(t *testing.T) {
	p := esPolicy()
	set, _, err := Plan(nil, t0, p, testGen)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the pre-planned successor, as if an older version planned.
	set.Keys = set.Keys[:1]
	late := t0.Add(90*day - time.Hour)
	set, _, err = Plan(set, late, p, testGen)
	if err != nil {
		t.Fatal(err)
	}
	old, next := set.Keys[0], set.Keys[1]
	if next.PublishAtUnixNano != late.UnixNano() || next.ActivateAtUnixNano != late.Add(8*time.Hour).UnixNano() {
		t.Errorf("late successor: %s", describe(next))
	}
	if old.RetireAtUnixNano != next.ActivateAtUnixNano {
		t.Errorf("predecessor not extended to the successor's start: %s", describe(old))
	}
	if k, _ := Signing(set, es, t0.Add(90*day+time.Hour)); k.Kid != old.Kid {
		t.Errorf("successor signs before its lead time ran out")
	}
}

func TestPlanDropsRemovedKeys(t *testing.T) {
	p := esPolicy()
	set, _, _ := Plan(nil, t0, p, testGen)
	first := set.Keys[0].Kid
	set, changed, err := Plan(set, t0.Add(90*day+8*time.Hour+time.Minute), p, testGen)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	for _, k := range set.Keys {
		if k.Kid == first {
			t.Errorf("key kept past its remove time")
		}
	}
}

func TestRotateNow(t *testing.T) {
	p := esPolicy()
	set, _, _ := Plan(nil, t0, p, testGen)
	old := set.Keys[0]
	now := t0.Add(10 * day)

	t.Run("waits the lead time", func(t *testing.T) {
		got, err := RotateNow(set, now, p, testGen, RotateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Keys) != 2 {
			t.Fatalf("scheduled successor not replaced:\n%s", dump(got))
		}
		if k, _ := Signing(got, es, now); k.Kid != old.Kid {
			t.Errorf("new key signs at once; verifiers with a cached JWKS would not know it")
		}
		nk, _ := Signing(got, es, now.Add(8*time.Hour))
		if nk.Kid == old.Kid || nk.PublishAtUnixNano != now.UnixNano() {
			t.Errorf("new key not active after the lead time: %s", describe(nk))
		}
		pub := Published(got, now.Add(16*time.Hour+time.Minute-1))
		if !slices.ContainsFunc(pub, func(k *protocol.SigningKey) bool { return k.Kid == old.Kid }) {
			t.Errorf("old key left JWKS before its last token expired")
		}
		if set.Keys[0].RetireAtUnixNano != old.RetireAtUnixNano || set.Version != 1 || got.Version != 2 {
			t.Errorf("input modified or version not bumped")
		}
	})
	t.Run("force withdraws at once", func(t *testing.T) {
		got, err := RotateNow(set, now, p, testGen, RotateOptions{Force: true})
		if err != nil {
			t.Fatal(err)
		}
		nk, _ := Signing(got, es, now)
		if nk.Kid == old.Kid {
			t.Fatal("old key still signs")
		}
		for _, k := range Published(got, now) {
			if k.Kid == old.Kid {
				t.Error("compromised key still in JWKS")
			}
		}
		if !got.Keys[0].Compromised {
			t.Errorf("old key not marked compromised: %+v", got.Keys[0])
		}
		if err := Validate(got); err != nil {
			t.Error(err)
		}
	})
	t.Run("bad alg", func(t *testing.T) {
		_, err := RotateNow(set, now, p, testGen, RotateOptions{Algs: []protocol.KeyAlg{99}})
		if !errors.Is(err, ErrBadAlg) {
			t.Errorf("err = %v, want ErrBadAlg", err)
		}
	})
}

func TestPolicyValidation(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
	}{
		{"unknown alg", Policy{Algs: []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_UNSPECIFIED}}},
		{"alg twice", Policy{Algs: []protocol.KeyAlg{es, es}}},
		{"lead shorter than token lifetime", Policy{MaxTokenLifetime: 8 * time.Hour, LeadTime: time.Hour}},
		{"rotation not longer than lead", Policy{RotateEvery: 8 * time.Hour}},
		{"negative", Policy{Leeway: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Plan(nil, t0, tc.p, testGen)
			if !errors.Is(err, ErrBadPolicy) {
				t.Errorf("err = %v, want ErrBadPolicy", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	set, _, err := Plan(nil, t0, esPolicy(), testGen)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := Plan(nil, t0, esPolicy(), testGen)
	tests := []struct {
		name   string
		mutate func(s *protocol.KeySet)
		want   error
	}{
		{"bad alg", func(s *protocol.KeySet) { s.Keys[0].Alg = 7 }, ErrBadAlg},
		{"empty kid", func(s *protocol.KeySet) { s.Keys[0].Kid = "" }, ErrBadKey},
		{"duplicate kid", func(s *protocol.KeySet) { s.Keys[1].Kid = s.Keys[0].Kid }, ErrDuplicate},
		{"activate before publish", func(s *protocol.KeySet) { s.Keys[1].PublishAtUnixNano = s.Keys[1].ActivateAtUnixNano + 1 }, ErrBadWindow},
		{"remove before retire", func(s *protocol.KeySet) { s.Keys[0].RemoveAtUnixNano = s.Keys[0].RetireAtUnixNano - 1 }, ErrBadWindow},
		{"overlapping windows", func(s *protocol.KeySet) { s.Keys[1].ActivateAtUnixNano = s.Keys[0].RetireAtUnixNano - 1 }, ErrOverlap},
		{"alg does not match key", func(s *protocol.KeySet) {
			s.Keys[0].Alg = rs
			s.Keys[1].Alg = rs
		}, ErrBadKey},
		{"public key of another key", func(s *protocol.KeySet) { s.Keys[0].PublicKey = other.Keys[0].PublicKey }, ErrBadKey},
		{"kid is not the thumbprint", func(s *protocol.KeySet) { s.Keys[0].Kid = "chosen" }, ErrBadKey},
		{"garbage private key", func(s *protocol.KeySet) { s.Keys[0].PrivateKey = []byte{1, 2, 3} }, ErrBadKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &protocol.KeySet{}
			for _, k := range set.Keys {
				s.Keys = append(s.Keys, cloneKey(k))
			}
			tc.mutate(s)
			err := Validate(s)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, _, err := Plan(s, t0, esPolicy(), testGen); !errors.Is(err, tc.want) {
				t.Errorf("Plan accepted it: %v", err)
			}
		})
	}
}

func TestSigningErrors(t *testing.T) {
	if _, err := Signing(nil, es, t0); !errors.Is(err, ErrNoActiveKey) {
		t.Errorf("empty set: %v", err)
	}
	if _, err := Signing(nil, 0, t0); !errors.Is(err, ErrBadAlg) {
		t.Errorf("bad alg: %v", err)
	}
}

func TestKeyGenChecked(t *testing.T) {
	small, err := rsa.GenerateKey(crand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	returns := func(k crypto.Signer) KeyGen { return func(protocol.KeyAlg) (crypto.Signer, error) { return k, nil } }
	for _, tc := range []struct {
		name string
		alg  protocol.KeyAlg
		gen  KeyGen
		want error
	}{
		{"RSA-1024 for RS256", rs, returns(small), ErrBadKey},
		{"P-384 for ES256", es, returns(p384), ErrBadKey},
		{"P-256 for RS256", rs, returns(p256), ErrBadKey},
		{"unknown alg", 0, returns(p256), ErrBadAlg},
		{"generator fails", es, func(protocol.KeyAlg) (crypto.Signer, error) { return nil, io.ErrUnexpectedEOF }, io.ErrUnexpectedEOF},
	} {
		if _, err := newKey(tc.alg, tc.gen, 1); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := newKey(es, nil, 1); err == nil {
		t.Error("nil generator accepted")
	}
	k, err := newKey(es, returns(p256), 1)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := priv.(*ecdsa.PrivateKey); !ok || !ec.Equal(p256) {
		t.Errorf("stored key is not the generated one: %T", priv)
	}
}

func TestEncodeDecode(t *testing.T) {
	set, _, err := Plan(nil, t0, DefaultPolicy(), testGen)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(set)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 4 || got.Version != set.Version || got.Keys[2].Kid != set.Keys[2].Kid {
		t.Errorf("round trip lost keys:\n%s", dump(got))
	}
	if _, err := Decode([]byte("junk")); err == nil {
		t.Error("decoded junk")
	}
	other, _ := protocol.Marshal(&protocol.SigningKey{})
	if _, err := Decode(other); err == nil {
		t.Error("decoded a SigningKey as a KeySet")
	}
}

// TestRotationProperty replays many random histories: planner runs at random
// instants (sometimes not for weeks), operators rotate at random times,
// sometimes by force, with random policies. The world's checks hold
// throughout.
func TestRotationProperty(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 99))
			life := time.Duration(1+r.IntN(12)) * time.Hour
			p := Policy{
				Algs:             []protocol.KeyAlg{es},
				MaxTokenLifetime: life,
				LeadTime:         life + time.Duration(r.IntN(24))*time.Hour,
				RotateEvery:      time.Duration(2+r.IntN(30)) * day,
				Leeway:           time.Duration(1+r.IntN(120)) * time.Second,
			}
			w := newWorld(t, p, uint64(seed))
			w.check()
			end := t0.Add(120 * day)
			for w.now.Before(end) {
				gap := time.Duration(r.Int64N(int64(p.RotateEvery)))
				w.advance(w.now.Add(gap), time.Duration(1+r.IntN(12))*time.Hour, r.IntN(3) == 0)
				switch r.IntN(10) {
				case 0:
					w.rotate(true)
				case 1, 2:
					w.rotate(false)
				default:
					w.plan()
				}
				if err := validateWindows(w.set); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
