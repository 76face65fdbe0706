package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster/seal"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

func newMasterKey(t *testing.T) *seal.Key {
	t.Helper()
	raw := make([]byte, seal.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k, err := seal.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func startSealNode(t *testing.T, store *persistence.Store, key *seal.Key) *Node {
	t.Helper()
	n, err := StartNode(NodeConfig{
		Store: store, Partitions: 2, MasterKey: key,
		Host: Config{Kinds: []actors.Kind{probeKind}, Logger: testLogger(), Registerer: prometheus.NewRegistry()},
	})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	return n
}

// secretsReady waits for the operator token and both signing keys.
func secretsReady(t *testing.T, n *Node) (*protocol.KeySet, string) {
	t.Helper()
	set := waitKeySetOn(t, n, "signing keys", func(s *protocol.KeySet) bool {
		for _, alg := range testAlgs {
			if _, err := keyring.Signing(s, alg, time.Now()); err != nil {
				return false
			}
		}
		return true
	})
	var tok string
	eventually(t, 10*time.Second, "operator token", func() bool {
		var err error
		tok, err = n.AdminToken()
		return err == nil
	})
	return set, tok
}

// inFiles reports whether any file under dir holds one of needles.
func inFiles(t *testing.T, dir string, needles ...[]byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestNodeSealsSecrets: a node started with a master key seals the
// cluster's secrets before creating them, so neither the private signing
// keys nor the operator token appear anywhere in its data directory (a
// node without one writes them in plaintext: the scan finds those). On
// restart the node with the same key serves the same keys; one with
// another key, or none, stops with an error that says so. A plaintext
// cluster given a key later is sealed in place.
func TestNodeSealsSecrets(t *testing.T) {
	privates := func(set *protocol.KeySet) [][]byte {
		var out [][]byte
		for _, k := range set.GetKeys() {
			out = append(out, k.GetPrivateKey())
		}
		return out
	}

	// Control: without a master key the secrets are on disk as they are.
	plainDir := t.TempDir()
	store := openStore(t, nil, plainDir)
	n := startSealNode(t, store, nil)
	plainSet, plainTok := secretsReady(t, n)
	if n.SecretsSealed() {
		t.Fatal("sealed without a master key")
	}
	stopTestNode(t, n)
	store.Close()
	if !inFiles(t, plainDir, privates(plainSet)...) || !inFiles(t, plainDir, []byte(plainTok)) {
		t.Fatal("the control run's plaintext secrets were not found on disk: the scan cannot tell")
	}

	key := newMasterKey(t)
	dir := t.TempDir()
	store = openStore(t, nil, dir)
	n = startSealNode(t, store, key)
	set, tok := secretsReady(t, n)
	if !n.SecretsSealed() {
		t.Fatal("not sealed with a master key")
	}
	for _, k := range secretKeys[:2] {
		if raw, _ := n.MetaValue(k); !seal.IsSealed(raw) {
			t.Errorf("%s stored unsealed", k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.PutSecretIfAbsent(ctx, ProviderSecretKey, []byte("0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := n.SecretValue(ProviderSecretKey); err != nil || !ok || string(v) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("provider secret: %q %v %v", v, ok, err)
	}
	stopTestNode(t, n)
	store.Close()
	if inFiles(t, dir, privates(set)...) {
		t.Error("a private signing key is in the data directory in plaintext")
	}
	if inFiles(t, dir, []byte(tok), []byte("0123456789abcdef0123456789abcdef")) {
		t.Error("the operator token or the provider secret is in the data directory in plaintext")
	}

	// The same key opens them again.
	store = openStore(t, nil, dir)
	n = startSealNode(t, store, key)
	set2, tok2 := secretsReady(t, n)
	if tok2 != tok || len(set2.GetKeys()) != len(set.GetKeys()) || set2.GetKeys()[0].GetKid() != set.GetKeys()[0].GetKid() {
		t.Errorf("after restart: token same %v, kids %v / %v", tok2 == tok, kidsOf(set2), kidsOf(set))
	}
	stopTestNode(t, n)
	store.Close()

	// Another key, or none: the node stops and says why.
	for name, tc := range map[string]struct {
		key  *seal.Key
		want error
	}{"another key": {newMasterKey(t), ErrMasterKeyMismatch}, "no key": {nil, ErrSealedNoKey}} {
		store = openStore(t, nil, dir)
		n = startSealNode(t, store, tc.key)
		select {
		case <-n.Fatal():
			if !errors.Is(n.Err(), tc.want) {
				t.Errorf("%s: %v, want %v", name, n.Err(), tc.want)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s: the node kept running", name)
		}
		stopTestNode(t, n)
		store.Close()
	}

	// A plaintext cluster given a key: sealed in place, same secrets.
	store = openStore(t, nil, plainDir)
	n = startSealNode(t, store, key)
	eventually(t, 20*time.Second, "sealed in place", func() bool {
		raw, _ := n.MetaValue(keyring.KVKey)
		return n.SecretsSealed() && seal.IsSealed(raw)
	})
	set3, tok3 := secretsReady(t, n)
	if tok3 != plainTok || set3.GetKeys()[0].GetKid() != plainSet.GetKeys()[0].GetKid() {
		t.Error("sealing in place changed the secrets")
	}
	stopTestNode(t, n)
	store.Close()
}
