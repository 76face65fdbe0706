package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/cluster/seal"
	"github.com/wardhq/ward/protocol"
)

// ProviderSecretKey is the meta key of the OpenID provider's 32-byte
// secret (code encryption, CSRF MACs), created once by the meta leader.
const ProviderSecretKey = "oidc/secret"

// secretKeys are the meta values sealed under the master key.
var secretKeys = []string{keyring.KVKey, adminTokenKey, ProviderSecretKey}

// masterCheckKey holds a sealed constant: present, the cluster's secrets
// are sealed, and a node opens it to prove it holds the cluster's key.
const (
	masterCheckKey   = "cluster/master-key-check"
	masterCheckValue = "ward master key check"
	sealCheckEvery   = time.Second
)

var (
	// ErrSealedNoKey: the cluster's secrets are sealed and this node was
	// started without the master key.
	ErrSealedNoKey = errors.New("the cluster's secrets are sealed under a master key: start this node with --master-key-file")
	// ErrMasterKeyMismatch: this node's master key is not the cluster's.
	ErrMasterKeyMismatch = errors.New("this node's master key is not the one the cluster's secrets are sealed under")
)

// SecretsSealed reports whether the cluster's secrets are sealed (the
// check value exists in this node's meta replica).
func (n *Node) SecretsSealed() bool {
	_, ok := n.meta.Value(masterCheckKey)
	return ok
}

// SecretValue returns the plaintext of a secret meta value.
func (n *Node) SecretValue(key string) ([]byte, bool, error) {
	raw, ok := n.meta.Value(key)
	if !ok {
		return nil, false, nil
	}
	v, err := n.openSecret(key, raw)
	return v, err == nil, err
}

// PutSecretIfAbsent is PutMetaValueIfAbsent for a secret: sealed when the
// cluster is. It returns the plaintext stored afterwards.
func (n *Node) PutSecretIfAbsent(ctx context.Context, key string, plain []byte) ([]byte, error) {
	if !n.membersRecorded() {
		return nil, errNotFormed
	}
	n.sealFirst(ctx)
	v, err := n.sealSecret(key, plain)
	if err != nil {
		return nil, err
	}
	raw, err := n.PutMetaValueIfAbsent(ctx, key, v)
	if err != nil {
		return nil, err
	}
	return n.openSecret(key, raw)
}

func (n *Node) openSecret(key string, raw []byte) ([]byte, error) {
	v, err := seal.Open(n.cfg.MasterKey, key, raw)
	if err != nil {
		return nil, fmt.Errorf("cluster: meta value %q: %w", key, err)
	}
	return v, nil
}

// sealSecret is what to store for plain under key: sealed once the
// cluster's secrets are, plaintext before (nodes without the key must
// still read it).
func (n *Node) sealSecret(key string, plain []byte) ([]byte, error) {
	if !n.SecretsSealed() {
		return plain, nil
	}
	if n.cfg.MasterKey == nil {
		return nil, ErrSealedNoKey
	}
	return n.cfg.MasterKey.Seal(key, plain)
}

// sealFirst seals the cluster (on the meta leader, if every member holds
// the key) before a secret is created, so that a cluster formed with a
// master key never has a secret in plaintext in its raft log.
func (n *Node) sealFirst(ctx context.Context) {
	if !n.SecretsSealed() {
		n.trySeal(ctx)
	}
}

// trySeal runs sealSecrets on the meta leader of a node with a key; losing
// the leadership or a compare-and-set to another writer is not an error.
func (n *Node) trySeal(ctx context.Context) {
	if n.cfg.MasterKey == nil || !n.meta.IsLeader() {
		return
	}
	if err := n.sealSecrets(ctx); err != nil && !errors.Is(err, meta.ErrNotLeader) && !errors.Is(err, meta.ErrStale) {
		n.log.Error("sealing the cluster's secrets", "err", err)
	}
}

// membersRecorded reports whether the cluster has recorded its members:
// before that no secret is created (see membersWithoutKey).
func (n *Node) membersRecorded() bool { return len(n.meta.State().GetMembers()) > 0 }

// sealLoop checks this node's master key against the cluster's and, on
// the meta leader, seals the secrets once every member of the cluster
// holds the same key. A node that cannot open the cluster's secrets stops
// (Fatal) with a message saying why, rather than failing every token
// request.
func (n *Node) sealLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(sealCheckEvery)
	defer tick.Stop()
	for {
		if err := n.checkSeal(); err != nil {
			n.fail(fmt.Errorf("cluster: %w", err))
			return
		}
		ctx, cancel := n.stopContext(5 * time.Second)
		n.trySeal(ctx)
		cancel()
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
	}
}

// checkSeal opens the check value, if there is one, with this node's key.
func (n *Node) checkSeal() error {
	raw, ok := n.meta.Value(masterCheckKey)
	if !ok {
		return nil
	}
	if n.cfg.MasterKey == nil {
		return ErrSealedNoKey
	}
	v, err := seal.Open(n.cfg.MasterKey, masterCheckKey, raw)
	if err != nil || string(v) != masterCheckValue {
		return ErrMasterKeyMismatch
	}
	return nil
}

// sealSecrets (meta leader) seals every plaintext secret and then writes
// the check value, but only while every member of the cluster advertises
// this node's master key: a member without it could no longer read them.
// Each write is a compare-and-set on the value it replaces.
func (n *Node) sealSecrets(ctx context.Context) error {
	if !n.SecretsSealed() {
		missing := n.membersWithoutKey()
		blocked := strings.Join(missing, ",")
		if old := n.sealBlockedBy.Swap(&blocked); old == nil || *old != blocked {
			// Said once per change: the operator's answer to "why is
			// secrets_sealed still false".
			if blocked != "" {
				n.log.Warn("not sealing the cluster's secrets yet: members without this master key (or not alive)", "members", missing, "key_id", n.cfg.MasterKey.ID())
			}
		}
		if len(missing) > 0 {
			return nil
		}
	}
	for _, key := range secretKeys {
		raw, ok := n.meta.Value(key)
		if !ok || seal.IsSealed(raw) {
			continue
		}
		v, err := n.cfg.MasterKey.Seal(key, raw)
		if err != nil {
			return err
		}
		if err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
			Key: key, Value: v, ExpectValue: raw}}}); err != nil {
			return fmt.Errorf("seal %q: %w", key, err)
		}
	}
	if n.SecretsSealed() {
		return nil
	}
	check, err := n.cfg.MasterKey.Seal(masterCheckKey, []byte(masterCheckValue))
	if err != nil {
		return err
	}
	if _, err := n.PutMetaValueIfAbsent(ctx, masterCheckKey, check); err != nil {
		return err
	}
	n.log.Info("the cluster's secrets are sealed under the master key", "key_id", n.cfg.MasterKey.ID())
	return nil
}

// membersWithoutKey names the cluster's members (those the meta state
// records and those alive in gossip) that are not alive with this node's
// master key; before the cluster has recorded its members it names that.
func (n *Node) membersWithoutKey() []string {
	if !n.membersRecorded() {
		return []string{"(members not recorded yet)"}
	}
	recorded := n.meta.State().GetMembers()
	alive := n.hostingMembers()
	names := make([]string, 0, len(recorded)+len(alive))
	for _, m := range recorded {
		names = append(names, m.GetName())
	}
	for name := range alive {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []string
	for _, name := range slices.Compact(names) {
		if g, ok := alive[name]; !ok || g.Meta.MasterKeyID != n.cfg.MasterKey.ID() {
			out = append(out, name)
		}
	}
	return out
}

// errNotFormed: a secret is created only once the cluster has recorded
// its members, so that the decision to seal it has been made.
var errNotFormed = errors.New("cluster: members not recorded yet")

func masterKeyID(k *seal.Key) string {
	if k == nil {
		return ""
	}
	return k.ID()
}
