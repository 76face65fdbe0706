package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// announceEvery is how often a node tells the others which partitions it
// leads. Members that hold no replica of a partition learn its leader only
// this way; a lost packet is repaired by the next one.
const announceEvery = 250 * time.Millisecond

// Announcements: a version byte; a uvarint count and (uvarint partition,
// uvarint term) pairs of the partitions the sender leads and serves; then
// a count and (partition, applied index) pairs of its other replicas, so
// that leaders promote a new replica to voter only once it caught up.
const announceVersion = 2

// announce sends this node's served leaderships to every other member.
func (n *Node) announce() {
	b := []byte{announceVersion}
	var led, follow [][2]uint64
	slots := n.slots
	if n.leaving.Load() {
		slots = nil // leads nothing, reports no progress: see announceLeaving
	}
	for p, s := range slots {
		pt := s.get()
		if pt == nil {
			continue
		}
		// The term is read before the state (see onLeadership): receivers
		// take the claim as authoritative for its term.
		term := pt.Raft().CurrentTerm()
		if pt.IsReady() && pt.Raft().State() == raft.Leader {
			led = append(led, [2]uint64{uint64(p), term})
		} else {
			follow = append(follow, [2]uint64{uint64(p), pt.Raft().AppliedIndex()})
		}
	}
	for _, list := range [][][2]uint64{led, follow} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, l := range list {
			b = binary.AppendUvarint(b, l[0])
			b = binary.AppendUvarint(b, l[1])
		}
	}
	for name, m := range n.hostingMembers() {
		if name == n.cfg.Name || m.Self {
			continue
		}
		if err := n.gossp.Send(m.ID, b); err != nil {
			n.log.Debug("leadership announcement not sent", "to", name, "err", err)
		}
	}
}

// announceLeaving switches this node's announcements to "leaving": it leads
// nothing and reports progress for no replica. The other members'
// reconcilers then find it caught up nowhere, so none of them hands a
// leadership back to it while it shuts down. Announcements are best-effort
// (one datagram each), so it sends one at once and one more.
func (n *Node) announceLeaving() {
	n.leaving.Store(true)
	n.announce()
	n.announce()
}

// onMessage takes another member's leadership announcement into the table.
func (n *Node) onMessage(from string, b []byte) {
	claims, progress, err := decodeAnnouncement(b, n.Table.Partitions())
	if err != nil {
		n.log.Warn("ignoring malformed leadership announcement", "from", from, "err", err)
		return
	}
	for _, c := range claims {
		n.Table.Claim(int(c[0]), from, c[1])
	}
	// A replica's lag is measured against this node's commit index when
	// the announcement arrives, not when it is used: under a steady load
	// the commit index moves on by hundreds of entries between two
	// announcements, so a healthy follower would look far behind.
	m := make(map[int]uint64, len(progress))
	for _, f := range progress {
		p, applied := int(f[0]), f[1]
		pt := n.slots[p].get()
		if pt == nil {
			continue // we hold no replica of p, so we lead nothing there to compare
		}
		commit := pt.Raft().CommitIndex()
		m[p] = commit - min(commit, applied)
	}
	now := time.Now()
	n.mu.Lock()
	n.progress[from] = m
	for _, c := range claims {
		n.claimed[int(c[0])] = now
	}
	n.mu.Unlock()
}

// lag returns how many entries member's replica of p was behind this node's
// commit index when member last announced its applied index.
func (n *Node) lag(member string, p int) (uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.progress[member][p]
	return v, ok
}

func decodeAnnouncement(b []byte, partitions int) (led, follow [][2]uint64, err error) {
	if len(b) < 1 || b[0] != announceVersion {
		return nil, nil, errors.New("unknown announcement version")
	}
	b = b[1:]
	if led, b, err = decodePairs(b, partitions); err != nil {
		return nil, nil, err
	}
	if follow, _, err = decodePairs(b, partitions); err != nil {
		return nil, nil, err
	}
	return led, follow, nil
}

func decodePairs(b []byte, partitions int) ([][2]uint64, []byte, error) {
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(partitions) {
		return nil, nil, errors.New("bad count")
	}
	b = b[k:]
	out := make([][2]uint64, 0, count)
	for range count {
		p, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return nil, nil, errors.New("truncated")
		}
		t, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return nil, nil, errors.New("truncated")
		}
		if p >= uint64(partitions) {
			return nil, nil, fmt.Errorf("partition %d out of range", p)
		}
		b = b[k1+k2:]
		out = append(out, [2]uint64{p, t})
	}
	return out, b, nil
}

// claimedRecently reports whether another member announced that it leads
// and serves p within d.
func (n *Node) claimedRecently(p int, d time.Duration) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.claimed[p]
	return ok && time.Since(at) < d
}
