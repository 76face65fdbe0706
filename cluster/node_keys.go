package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
)

// Paths of the signing-key admin endpoints.
const (
	KeysPath       = "/cluster/keys"
	KeysRotatePath = "/cluster/keys/rotate"
)

const (
	// keysCheckEvery is how soon a new meta leader notices it has to plan
	// keys; the check itself is a leadership test and a clock compare.
	keysCheckEvery = 250 * time.Millisecond
	// keysPlanEvery re-plans even when keyring.NextPlan says nothing is
	// due: a wall clock that jumped, or a plan that another writer
	// overtook, is caught up within this.
	keysPlanEvery = time.Hour
	// keysMaxBackoff bounds the retry delay after a failed plan, which
	// may have cost an RSA key generation.
	keysMaxBackoff = time.Minute
	// rotateAttempts bounds RotateKeys' retries when the key set changed
	// between its read and its write.
	rotateAttempts = 3
)

// ErrNoKeySet: the meta group holds no signing keys yet (the meta leader
// creates them shortly after the cluster forms).
var ErrNoKeySet = errors.New("no signing keys yet")

// keysCache is the decoded key set of the local meta replica, kept until
// the meta state changes: decoding validates every key, which is too slow
// to do on every JWKS request.
type keysCache struct {
	mu      sync.Mutex
	loaded  bool
	version uint64 // meta state version read at
	raw     []byte
	set     *protocol.KeySet
	err     error
}

// generateKey is the host's keyring.KeyGen: system randomness, RSA-2048
// for RS256 and P-256 for ES256.
func generateKey(alg protocol.KeyAlg) (crypto.Signer, error) {
	switch alg {
	case protocol.KeyAlg_KEY_ALG_RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case protocol.KeyAlg_KEY_ALG_ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("%w: %v", keyring.ErrBadAlg, alg)
}

var errPolicyChecked = errors.New("policy checked")

// checkKeyPolicy refuses a bad rotation policy at start rather than at
// the first plan. keyring validates a policy only when planning, and
// does so before generating anything, so a plan whose generator refuses
// to work checks the policy without making keys.
func checkKeyPolicy(p keyring.Policy) error {
	_, _, err := keyring.Plan(nil, time.Unix(1, 0), p, func(protocol.KeyAlg) (crypto.Signer, error) {
		return nil, errPolicyChecked
	})
	if errors.Is(err, errPolicyChecked) {
		return nil
	}
	return err
}

// KeySet is the signing-key state as the local meta replica holds it. The
// set is shared with other callers: read it, never modify it. It fails
// with ErrNoKeySet before the meta leader has created keys.
func (n *Node) KeySet() (*protocol.KeySet, error) {
	set, _, err := n.loadKeys()
	return set, err
}

// loadKeys also returns the encoded value the set was decoded from, the
// expected value of a compare-and-set.
func (n *Node) loadKeys() (*protocol.KeySet, []byte, error) {
	c := &n.keys
	v := n.meta.Version()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded && c.version == v {
		return c.set, c.raw, c.err
	}
	st := n.meta.State()
	raw := st.GetKv()[keyring.KVKey]
	if !c.loaded || !bytes.Equal(raw, c.raw) {
		c.raw, c.set, c.err = raw, nil, nil
		if raw == nil {
			c.err = ErrNoKeySet
		} else if plain, err := n.openSecret(keyring.KVKey, raw); err != nil {
			c.err = err
		} else if c.set, c.err = keyring.Decode(plain); c.err != nil {
			c.err = fmt.Errorf("cluster: signing keys in the meta group: %w", c.err)
		}
	}
	c.loaded, c.version = true, st.GetVersion()
	return c.set, c.raw, c.err
}

// commitKeys writes set if the stored value is still prev; a writer that
// read an older value gets meta.ErrStale.
func (n *Node) commitKeys(ctx context.Context, prev []byte, set *protocol.KeySet) error {
	plain, err := keyring.Encode(set)
	if err != nil {
		return err
	}
	b, err := n.sealSecret(keyring.KVKey, plain)
	if err != nil {
		return err
	}
	if prev == nil {
		prev = []byte{} // expect "absent", which is not "no expectation"
	}
	return n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
		Key: keyring.KVKey, Value: b, ExpectValue: prev}}})
}

// keysLoop runs keyring.Plan while this node leads the meta group: at the
// start of its leadership, at the instants keyring.NextPlan names, and at
// least every keysPlanEvery. Other members only read the state.
func (n *Node) keysLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(keysCheckEvery)
	defer tick.Stop()
	var (
		leading bool
		due     time.Time
		backoff time.Duration
	)
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-n.keysPoke:
			// A rotation changed the set the due time was computed from
			// (a forced key has no successor yet).
			due = time.Time{}
		}
		if !n.meta.IsLeader() {
			leading, due = false, time.Time{}
			continue
		}
		if !leading {
			// A new leader may not have applied its predecessors' last
			// entries; planning on that view would generate keys only
			// to lose the compare-and-set.
			if err := n.meta.Raft().Barrier(2 * time.Second).Error(); err != nil {
				continue
			}
			leading = true
		}
		if !n.membersRecorded() {
			continue // secrets wait for the cluster's first record (see sealFirst)
		}
		ctx, cancel := n.stopContext(5 * time.Second)
		n.sealFirst(ctx) // before any secret below is created
		cancel()
		if _, err := n.AdminToken(); err != nil {
			ctx, cancel := n.stopContext(5 * time.Second)
			err := n.ensureAdminToken(ctx)
			cancel()
			if err != nil {
				n.log.Error("creating the operator token", "err", err)
			}
		}
		if time.Now().Before(due) {
			continue
		}
		next, err := n.planKeys()
		switch {
		case err == nil:
			due, backoff = next, 0
		case errors.Is(err, meta.ErrStale):
			due = time.Time{} // overtaken (a rotation): plan again on the next tick
		default:
			backoff = min(max(2*backoff, time.Second), keysMaxBackoff)
			due = time.Now().Add(backoff)
			if !errors.Is(err, meta.ErrNotLeader) {
				n.log.Error("planning signing keys", "err", err, "retry_in", backoff)
			}
		}
	}
}

// planKeys runs keyring.Plan once and commits its result; it returns when
// to plan next.
func (n *Node) planKeys() (time.Time, error) {
	set, raw, err := n.loadKeys()
	if err != nil && !errors.Is(err, ErrNoKeySet) {
		return time.Time{}, err
	}
	now := time.Now()
	out, changed, err := keyring.Plan(set, now, n.cfg.KeyPolicy, n.keyGen)
	if err != nil {
		return time.Time{}, err
	}
	if changed {
		ctx, cancel := n.stopContext(5 * time.Second)
		defer cancel()
		if err := n.commitKeys(ctx, raw, out); err != nil {
			return time.Time{}, err
		}
		n.log.Info("signing keys planned", "version", out.GetVersion(), "keys", kidsOf(out))
	}
	next := now.Add(keysPlanEvery)
	if at := keyring.NextPlan(out, now); !at.IsZero() && at.Before(next) {
		next = at
	}
	return next, nil
}

// stopContext is a context ending after d or when the node stops, so a
// background write does not hold up Stop.
func (n *Node) stopContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// RotateRequest is the body of POST KeysRotatePath.
type RotateRequest struct {
	// Force withdraws the active keys at once (a compromise): the new
	// keys sign immediately and tokens of the old ones stop verifying.
	Force bool `json:"force"`
}

// RotateKeys rotates every algorithm's key now (keyring.RotateNow) on the
// meta leader, forwarding there from any other member, and returns the
// key set as this node's replica holds it once the rotation reached it.
func (n *Node) RotateKeys(ctx context.Context, force bool) (*protocol.KeySet, error) {
	if !n.meta.IsLeader() {
		var ans KeyList
		// Not peerTimeout: the leader generates an RSA key first.
		if err := n.forwardMeta(ctx, http.MethodPost, KeysRotatePath, RotateRequest{Force: force}, &ans); err != nil {
			return nil, err
		}
		return n.waitKeySet(ctx, ans.Version)
	}
	for attempt := 1; ; attempt++ {
		set, raw, err := n.loadKeys()
		if err != nil && !errors.Is(err, ErrNoKeySet) {
			return nil, err
		}
		out, err := keyring.RotateNow(set, time.Now(), n.cfg.KeyPolicy, n.keyGen, keyring.RotateOptions{Force: force})
		if err != nil {
			return nil, err
		}
		err = n.commitKeys(ctx, raw, out)
		if errors.Is(err, meta.ErrStale) && attempt < rotateAttempts {
			continue // the planner wrote in between: rotate its result
		}
		if err != nil {
			return nil, err
		}
		n.log.Warn("signing keys rotated by an operator", "force", force, "version", out.GetVersion(), "keys", kidsOf(out))
		select {
		case n.keysPoke <- struct{}{}:
		default:
		}
		return n.waitKeySet(ctx, out.GetVersion())
	}
}

// waitKeySet waits until the local replica holds key set version v or
// later, so a caller reads its own rotation from this node.
func (n *Node) waitKeySet(ctx context.Context, v uint64) (*protocol.KeySet, error) {
	var set *protocol.KeySet
	err := n.waitMeta(ctx, func() bool {
		s, err := n.KeySet()
		set = s
		return err == nil && s.GetVersion() >= v
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: key set version %d committed but not yet applied on %s: %w", v, n.cfg.Name, err)
	}
	return set, nil
}

// waitMeta waits until ok holds on this node's meta replica, checking
// again after every change it applies: for a node that forwarded a write
// to the meta leader and answers only once the write is visible here.
func (n *Node) waitMeta(ctx context.Context, ok func() bool) error {
	changes, cancel := n.meta.Changes()
	defer cancel()
	for !ok() {
		select {
		case <-changes:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// MetaChanges receives (coalesced) after every change this node's replica
// of the meta key state applies; cancel ends the subscription.
func (n *Node) MetaChanges() (changes <-chan struct{}, cancel func()) { return n.meta.Changes() }

// kidsOf names a set's keys for logs: kids are public, key bytes never
// leave the meta group.
func kidsOf(set *protocol.KeySet) []string {
	var out []string
	for _, k := range set.GetKeys() {
		out = append(out, algName(k.GetAlg())+":"+k.GetKid())
	}
	return out
}

// KeyList is the key set as `ward keys list` shows it: public facts only.
type KeyList struct {
	Version uint64    `json:"version"`
	Keys    []KeyInfo `json:"keys"`
}

// KeyInfo is one key. State is "pending" (scheduled, not yet in JWKS),
// "next" (in JWKS, not signing yet), "active" (signing), "retired" (in JWKS
// until the tokens it signed expire) or "removed" (out of JWKS; dropped at
// the next plan).
type KeyInfo struct {
	Kid         string    `json:"kid"`
	Alg         string    `json:"alg"`
	State       string    `json:"state"`
	Compromised bool      `json:"compromised,omitempty"`
	Created     time.Time `json:"created"`
	PublishAt   time.Time `json:"publish_at"`
	ActivateAt  time.Time `json:"activate_at"`
	RetireAt    time.Time `json:"retire_at"`
	RemoveAt    time.Time `json:"remove_at"`
}

// ListKeys describes set at now, without any key material.
func ListKeys(set *protocol.KeySet, now time.Time) KeyList {
	t := now.UnixNano()
	at := func(ns int64) time.Time { return time.Unix(0, ns).UTC() }
	out := KeyList{Version: set.GetVersion(), Keys: []KeyInfo{}}
	for _, k := range set.GetKeys() {
		ki := KeyInfo{Kid: k.GetKid(), Alg: algName(k.GetAlg()), Compromised: k.GetCompromised(),
			Created: at(k.GetCreatedUnixNano()), PublishAt: at(k.GetPublishAtUnixNano()), ActivateAt: at(k.GetActivateAtUnixNano()),
			RetireAt: at(k.GetRetireAtUnixNano()), RemoveAt: at(k.GetRemoveAtUnixNano())}
		switch {
		case t < k.GetPublishAtUnixNano():
			ki.State = "pending"
		case t < k.GetActivateAtUnixNano():
			ki.State = "next"
		case t < k.GetRetireAtUnixNano():
			ki.State = "active"
		case t < k.GetRemoveAtUnixNano():
			ki.State = "retired"
		default:
			ki.State = "removed"
		}
		out.Keys = append(out.Keys, ki)
	}
	return out
}

func algName(a protocol.KeyAlg) string { return strings.TrimPrefix(a.String(), "KEY_ALG_") }
