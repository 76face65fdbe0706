package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"

	"github.com/wardhq/ward/cluster/meta"
)

// adminTokenKey is the meta key of the cluster's operator token: the bearer
// secret every /cluster/ endpoint asks for (edge/admin). One value for the
// whole cluster, created once by the first meta leader (as Consul's and
// Nomad's bootstrap tokens are), replicated with the rest of the key state
// so that nodes can call each other's endpoints with it, and written by
// each node to <data>/admin-token for the operator's CLI.
const adminTokenKey = "cluster/admin-token"

// AdminTokenPrefix starts every operator token, so a leaked one is
// recognisable in a secret scanner's report.
const AdminTokenPrefix = "wardop_"

// ErrNoAdminToken means the cluster has not created its operator token yet
// (no meta leader has run since the cluster formed).
var ErrNoAdminToken = errors.New("cluster: the operator token does not exist yet")

// AdminToken returns the cluster's operator token as this node's replica
// of the meta key state holds it.
func (n *Node) AdminToken() (string, error) {
	v, ok := n.meta.Value(adminTokenKey)
	if !ok || len(v) == 0 {
		return "", ErrNoAdminToken
	}
	return string(v), nil
}

// ensureAdminToken creates the operator token if the cluster has none. Only
// the meta leader can; the write is a compare-and-set on absence, so two
// leaders in turn never replace one another's token.
func (n *Node) ensureAdminToken(ctx context.Context) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	_, err := n.PutMetaValueIfAbsent(ctx, adminTokenKey, []byte(AdminTokenPrefix+base64.RawURLEncoding.EncodeToString(b[:])))
	if errors.Is(err, meta.ErrNotLeader) {
		return nil
	}
	return err
}

// peerToken is the token this node presents to other nodes' admin
// endpoints; empty before the cluster has one (the call then fails with
// the callee's 401 or 503, which names the cause).
func (n *Node) peerToken() string {
	t, _ := n.AdminToken()
	return t
}
