package cluster

import (
	"context"
	"fmt"

	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
)

// MetaValue reads key from this node's replica of the meta key state. It
// may lag the meta leader by a moment.
func (n *Node) MetaValue(key string) ([]byte, bool) { return n.meta.Value(key) }

// PutMetaValueIfAbsent stores value under key unless the key exists, and
// returns what is stored afterwards (value, or the one there before). Only
// the meta leader can write; elsewhere it fails with meta.ErrNotLeader.
// It is how a cluster-wide secret gets created exactly once.
func (n *Node) PutMetaValueIfAbsent(ctx context.Context, key string, value []byte) ([]byte, error) {
	if v, ok := n.meta.Value(key); ok {
		return v, nil
	}
	if !n.meta.IsLeader() {
		return nil, fmt.Errorf("cluster: put %q: %w", key, meta.ErrNotLeader)
	}
	err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{Key: key, Value: value, ExpectValue: []byte{}}}})
	if v, ok := n.meta.Value(key); ok {
		return v, nil // ours, or a racing writer's
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: put %q: %w", key, err)
	}
	return nil, fmt.Errorf("cluster: put %q: not visible after commit", key)
}

// PutMetaValue stores value under key (meta leader only).
func (n *Node) PutMetaValue(ctx context.Context, key string, value []byte) error {
	if !n.meta.IsLeader() {
		return fmt.Errorf("cluster: put %q: %w", key, meta.ErrNotLeader)
	}
	if err := n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_Put{Put: &protocol.MetaPut{Key: key, Value: value}}}); err != nil {
		return fmt.Errorf("cluster: put %q: %w", key, err)
	}
	return nil
}
