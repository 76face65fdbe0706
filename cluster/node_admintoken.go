package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
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
	v, ok, err := n.SecretValue(adminTokenKey)
	if err != nil {
		return "", err
	}
	if !ok || len(v) == 0 {
		return "", ErrNoAdminToken
	}
	return string(v), nil
}

func newAdminToken() ([]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return []byte(AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])), nil
}

// ensureAdminToken creates the operator token if the cluster has none. Only
// the meta leader can; the write is a compare-and-set on absence, so two
// leaders in turn never replace one another's token.
func (n *Node) ensureAdminToken(ctx context.Context) error {
	tok, err := newAdminToken()
	if err != nil {
		return err
	}
	_, err = n.PutSecretIfAbsent(ctx, adminTokenKey, tok)
	if errors.Is(err, meta.ErrNotLeader) {
		return nil
	}
	return err
}

// AdminTokenRotatePath replaces the operator token (POST; answer
// AdminTokenAnswer).
const AdminTokenRotatePath = "/cluster/admin-token/rotate"

// AdminTokenAnswer carries a new operator token, shown once.
type AdminTokenAnswer struct {
	Token string `json:"token"`
}

// RotateAdminToken replaces the operator token with a new random one and
// returns it; the old one stops working at once on every node as it
// applies the change (for a token that leaked, or whose holder left). The
// meta leader writes it as a compare-and-set on the current value; any
// other node forwards, then waits until its own replica has the new token,
// so the caller can use it here at once. Nodes rewrite <data>/admin-token.
func (n *Node) RotateAdminToken(ctx context.Context) (string, error) {
	if !n.meta.IsLeader() {
		var ans AdminTokenAnswer
		if err := n.forwardMeta(ctx, http.MethodPost, AdminTokenRotatePath, nil, &ans); err != nil {
			return "", err
		}
		if err := n.waitMeta(ctx, func() bool { cur, err := n.AdminToken(); return err == nil && cur == ans.Token }); err != nil {
			return "", fmt.Errorf("cluster: operator token rotated but not yet applied on %s: %w", n.cfg.Name, err)
		}
		return ans.Token, nil
	}
	cur, ok := n.meta.Value(adminTokenKey)
	if !ok || len(cur) == 0 {
		return "", ErrNoAdminToken
	}
	tok, err := newAdminToken()
	if err != nil {
		return "", err
	}
	stored, err := n.sealSecret(adminTokenKey, tok)
	if err != nil {
		return "", err
	}
	if err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{
		Key: adminTokenKey, Value: stored, ExpectValue: cur}}}); err != nil {
		return "", err
	}
	n.log.Warn("operator token rotated by an operator")
	return string(tok), nil
}

// peerToken is the token this node presents to other nodes' admin
// endpoints; empty before the cluster has one (the call then fails with
// the callee's 401 or 503, which names the cause).
func (n *Node) peerToken() string {
	t, _ := n.AdminToken()
	return t
}
