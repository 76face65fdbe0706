package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/protocol"
)

var testAlgs = []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_RS256, protocol.KeyAlg_KEY_ALG_ES256}

// waitKeySetOn polls n's replica until ok holds.
func waitKeySetOn(t *testing.T, n *Node, what string, ok func(*protocol.KeySet) bool) *protocol.KeySet {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		set, err := n.KeySet()
		if err == nil && ok(set) {
			return set
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within 30s (last error %v)", what, lastErr)
	return nil
}

func signingKids(t *testing.T, set *protocol.KeySet, now time.Time) map[protocol.KeyAlg]string {
	t.Helper()
	out := map[protocol.KeyAlg]string{}
	for _, alg := range testAlgs {
		k, err := keyring.Signing(set, alg, now)
		if err != nil {
			t.Fatalf("%v: %v", alg, err)
		}
		out[alg] = k.GetKid()
	}
	return out
}

func jwksKids(t *testing.T, set *protocol.KeySet, now time.Time) []string {
	t.Helper()
	doc, err := jose.JWKSFromProto(keyring.Published(set, now))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range doc.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// TestNodeSigningKeys: the meta leader creates keys of both algorithms on
// its own; an operator's rotation publishes new kids that do not sign yet,
// a forced one signs at once and withdraws the old keys; a stale
// compare-and-set loses; the key state survives a restart.
func TestNodeSigningKeys(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, nil, dir)
	n := startTestNode(t, store, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	set := waitKeySetOn(t, n, "keys after start", func(s *protocol.KeySet) bool {
		for _, alg := range testAlgs {
			if _, err := keyring.Signing(s, alg, time.Now()); err != nil {
				return false
			}
		}
		return true
	})
	now := time.Now()
	active := signingKids(t, set, now)
	for alg, kid := range active {
		if !slices.Contains(jwksKids(t, set, now), kid) {
			t.Fatalf("active %v key %s not in JWKS", alg, kid)
		}
	}

	// Rotation: new keys in JWKS at once, the old ones still sign.
	rotated, err := n.RotateKeys(ctx, false)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	now = time.Now()
	if rotated.GetVersion() <= set.GetVersion() {
		t.Fatalf("version %d after rotation of %d", rotated.GetVersion(), set.GetVersion())
	}
	var fresh []*protocol.SigningKey
	for _, k := range rotated.GetKeys() {
		if !slices.ContainsFunc(set.GetKeys(), func(o *protocol.SigningKey) bool { return o.GetKid() == k.GetKid() }) {
			fresh = append(fresh, k)
		}
	}
	if len(fresh) != len(testAlgs) {
		t.Fatalf("rotation added %d keys, want one per algorithm", len(fresh))
	}
	published := jwksKids(t, rotated, now)
	for _, k := range fresh {
		if !slices.Contains(published, k.GetKid()) {
			t.Errorf("new %v key %s not in JWKS", k.GetAlg(), k.GetKid())
		}
		if s, _ := keyring.Signing(rotated, k.GetAlg(), now); s.GetKid() != active[k.GetAlg()] {
			t.Errorf("%v signs with %s right after rotation, want the old %s", k.GetAlg(), s.GetKid(), active[k.GetAlg()])
		}
	}

	// A forced rotation signs with new keys at once.
	forced, err := n.RotateKeys(ctx, true)
	if err != nil {
		t.Fatalf("forced rotate: %v", err)
	}
	now = time.Now()
	published = jwksKids(t, forced, now)
	for alg, kid := range signingKids(t, forced, now) {
		if slices.ContainsFunc(rotated.GetKeys(), func(o *protocol.SigningKey) bool { return o.GetKid() == kid }) {
			t.Errorf("%v still signs with %s after a forced rotation", alg, kid)
		}
		if slices.Contains(published, active[alg]) {
			t.Errorf("withdrawn %v key %s still in JWKS", alg, active[alg])
		}
		// What the node signs with verifies against what it publishes.
		k, _ := keyring.Signing(forced, alg, now)
		sk, err := jose.SigningKeyFromProto(k)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jose.Sign(sk, jose.TypJWT, map[string]any{"sub": "x", "exp": now.Add(time.Minute).Unix()})
		_ = sk.Close()
		if err != nil {
			t.Fatal(err)
		}
		doc, _ := jose.JWKSFromProto(keyring.Published(forced, now))
		ks, err := doc.KeySet()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jose.Verify(tok, ks, []jose.Alg{jose.RS256, jose.ES256}, now); err != nil {
			t.Errorf("%v token does not verify against JWKS: %v", alg, err)
		}
	}

	// The planner gives the forced keys their successors.
	set = waitKeySetOn(t, n, "successors of the forced keys", func(s *protocol.KeySet) bool {
		for _, alg := range testAlgs {
			cur, err := keyring.Signing(s, alg, time.Now())
			if err != nil || !slices.ContainsFunc(s.GetKeys(), func(k *protocol.SigningKey) bool {
				return k.GetAlg() == alg && k.GetActivateAtUnixNano() >= cur.GetRetireAtUnixNano()
			}) {
				return false
			}
		}
		return true
	})

	// A write from a stale read loses and changes nothing; a put without
	// an expectation (the old command) still applies.
	_, raw, err := n.loadKeys()
	if err != nil {
		t.Fatal(err)
	}
	err = n.Meta().Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
		Key: keyring.KVKey, Value: []byte("garbage"), ExpectValue: []byte("an older value")}}})
	if !errors.Is(err, meta.ErrStale) {
		t.Fatalf("stale compare-and-set: %v, want ErrStale", err)
	}
	if _, raw2, _ := n.loadKeys(); string(raw2) != string(raw) {
		t.Fatal("a lost compare-and-set changed the value")
	}
	if err := n.Meta().Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
		Key: "test/plain", Value: []byte("v")}}}); err != nil {
		t.Fatalf("plain put: %v", err)
	}

	// Restart: the same keys, the same signers.
	set, _ = n.KeySet()
	signers := signingKids(t, set, time.Now())
	stopTestNode(t, n)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, nil, dir)
	defer store.Close()
	n = startTestNode(t, store, 2)
	defer stopTestNode(t, n)
	after := waitKeySetOn(t, n, "keys after restart", func(s *protocol.KeySet) bool { return s.GetVersion() >= set.GetVersion() })
	for _, k := range set.GetKeys() {
		if !slices.ContainsFunc(after.GetKeys(), func(o *protocol.SigningKey) bool {
			return o.GetKid() == k.GetKid() && string(o.GetPrivateKey()) == string(k.GetPrivateKey())
		}) {
			t.Errorf("key %s lost in the restart", k.GetKid())
		}
	}
	if got := signingKids(t, after, time.Now()); got[testAlgs[0]] != signers[testAlgs[0]] || got[testAlgs[1]] != signers[testAlgs[1]] {
		t.Errorf("signers %v after restart, want %v", got, signers)
	}
}

// TestNodeRefusesBadKeyPolicy: a rotation period not longer than the
// token lifetime is refused at start, not at the first plan.
func TestNodeRefusesBadKeyPolicy(t *testing.T) {
	store := openStore(t, nil, t.TempDir())
	defer store.Close()
	_, err := StartNode(NodeConfig{Store: store, Partitions: 1, Host: Config{Logger: testLogger()},
		KeyPolicy: keyring.Policy{RotateEvery: time.Hour, MaxTokenLifetime: 2 * time.Hour}})
	if !errors.Is(err, keyring.ErrBadPolicy) {
		t.Fatalf("start with a bad key policy: %v, want ErrBadPolicy", err)
	}
}
