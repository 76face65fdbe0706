package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/wardhq/ward/cluster/meta"
	"github.com/wardhq/ward/protocol"
)

// Paths of the node-to-node admin calls on every node's HTTP edge.
const (
	LocalStatusPath = "/cluster/local"
	DrainPath       = "/cluster/drain"
	RemovePath      = "/cluster/remove"
	StatusPath      = "/cluster/status"
)

// Status is the cluster as `ward cluster status` shows it.
type Status struct {
	ClusterID  string            `json:"cluster_id"`
	Members    []MemberStatus    `json:"members"`
	Meta       MetaStatus        `json:"meta"`
	Partitions []PartitionStatus `json:"partitions"`
	// Errors lists members whose local view could not be read.
	Errors []string `json:"errors,omitempty"`
}

// MemberStatus is one member. State is the operator's view: "alive",
// "suspect", "dead" or "left" from gossip for active members, else the
// meta state ("draining", "removed", "dead").
type MemberStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	HTTP     string `json:"http"`
	Raft     string `json:"raft"`
	Replicas int    `json:"replicas"`
	Leaders  int    `json:"leaders"`
}

// MetaStatus is the meta group.
type MetaStatus struct {
	Leader     string   `json:"leader"`
	Replicas   []string `json:"replicas"`
	Voters     []string `json:"voters"`
	Version    uint64   `json:"version"`
	Partitions int      `json:"partitions"`
	Factor     int      `json:"replication_factor"`
	// SecretsSealed: the signing keys, provider secret and operator token
	// are encrypted under the nodes' master key (--master-key-file).
	SecretsSealed bool `json:"secrets_sealed"`
}

// PartitionStatus is one partition as its leader reports it; Replicas are
// the servers of its raft configuration (voters and catching-up
// non-voters), Assigned what the meta leader wants.
type PartitionStatus struct {
	ID           int      `json:"id"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	Replicas     []string `json:"replicas"`
	Assigned     []string `json:"assigned"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
}

// LocalStatus is one node's view of its own replicas.
type LocalStatus struct {
	Name       string           `json:"name"`
	Partitions []LocalPartition `json:"partitions"`
}

// LocalPartition is one local replica.
type LocalPartition struct {
	ID           int      `json:"id"`
	State        string   `json:"state"`
	Ready        bool     `json:"ready"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	AppliedIndex uint64   `json:"applied_index"`
	CommitIndex  uint64   `json:"commit_index"`
	LastIndex    uint64   `json:"last_index"`
	Servers      []string `json:"servers"`
}

// Local reports this node's replicas.
func (n *Node) Local() LocalStatus {
	out := LocalStatus{Name: n.cfg.Name, Partitions: []LocalPartition{}}
	for p, s := range n.slots {
		pt := s.get()
		if pt == nil {
			continue
		}
		st, err := pt.Stats()
		if err != nil {
			continue
		}
		lp := LocalPartition{ID: p, State: st.State.String(), Ready: st.Ready, Leader: string(st.LeaderID), Term: st.Term,
			AppliedIndex: st.StoredAppliedIndex, CommitIndex: st.CommitIndex, LastIndex: st.LastIndex}
		for _, srv := range st.Configuration.Servers {
			lp.Servers = append(lp.Servers, string(srv.ID))
		}
		sort.Strings(lp.Servers)
		out.Partitions = append(out.Partitions, lp)
	}
	return out
}

// Status gathers every reachable member's local view and merges it with
// the meta state: each partition as its highest-term leader reports it.
func (n *Node) Status(ctx context.Context) (*Status, error) {
	st := n.meta.State()
	out := &Status{ClusterID: st.GetClusterId(), Members: []MemberStatus{}, Partitions: []PartitionStatus{}}
	conf, err := n.meta.Configuration()
	if err != nil {
		return nil, err
	}
	out.Meta = MetaStatus{Leader: string(n.meta.Leader()), Version: st.GetVersion(), Partitions: int(st.GetPartitions()), Factor: int(st.GetReplicas()), Replicas: []string{}, Voters: []string{}, SecretsSealed: n.SecretsSealed()}
	for _, s := range conf.Servers {
		out.Meta.Replicas = append(out.Meta.Replicas, string(s.ID))
		if s.Suffrage == raft.Voter {
			out.Meta.Voters = append(out.Meta.Voters, string(s.ID))
		}
	}
	sort.Strings(out.Meta.Replicas)
	sort.Strings(out.Meta.Voters)

	// Local views, fetched in parallel.
	gossip := map[string]string{}
	for _, m := range n.gossp.Members() {
		if m.MetaErr == nil && m.Meta.NodeName != "" && !m.Meta.Client {
			if cur, ok := gossip[m.Meta.NodeName]; !ok || cur != "alive" {
				gossip[m.Meta.NodeName] = m.State.String()
			}
		}
	}
	alive := n.hostingMembers()
	var (
		mu     sync.Mutex
		locals []LocalStatus
		wg     sync.WaitGroup
	)
	locals = append(locals, n.Local())
	for name, m := range alive {
		if name == n.cfg.Name || m.Meta.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			var ls LocalStatus
			err := n.adminCall(ctx, http.MethodGet, addr, LocalStatusPath, &ls)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("%s: %v", name, err))
				return
			}
			locals = append(locals, ls)
		}(name, m.Meta.HTTPAddr)
	}
	wg.Wait()
	sort.Strings(out.Errors)

	leaders := map[string]int{}
	for p := range int(st.GetPartitions()) {
		ps := PartitionStatus{ID: p, Replicas: []string{}, Assigned: slices.Sorted(slices.Values(st.GetAssignment()[p].GetReplicas()))}
		for _, ls := range locals {
			for _, lp := range ls.Partitions {
				if lp.ID != p || lp.State != raft.Leader.String() || lp.Term < ps.Term {
					continue
				}
				ps.Leader, ps.Term, ps.Replicas, ps.AppliedIndex, ps.CommitIndex = ls.Name, lp.Term, lp.Servers, lp.AppliedIndex, lp.CommitIndex
			}
		}
		if ps.Leader != "" {
			leaders[ps.Leader]++
		}
		out.Partitions = append(out.Partitions, ps)
	}
	replicas := map[string]int{}
	for _, ps := range out.Partitions {
		for _, r := range ps.Replicas {
			replicas[r]++
		}
	}
	for _, m := range st.GetMembers() {
		ms := MemberStatus{Name: m.GetName(), HTTP: m.GetHttpAddr(), Raft: m.GetRaftAddr(), Replicas: replicas[m.GetName()], Leaders: leaders[m.GetName()]}
		switch m.GetState() {
		case protocol.MemberState_MEMBER_STATE_ACTIVE:
			ms.State = gossip[m.GetName()]
			if ms.State == "" {
				ms.State = "unknown"
			}
		case protocol.MemberState_MEMBER_STATE_DRAINING:
			ms.State = "draining"
		case protocol.MemberState_MEMBER_STATE_DEAD:
			ms.State = "dead"
		case protocol.MemberState_MEMBER_STATE_REMOVED:
			ms.State = "removed"
		}
		out.Members = append(out.Members, ms)
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Name < out.Members[j].Name })
	return out, nil
}

// ErrUnknownMember: drain or remove named no member of the cluster.
var ErrUnknownMember = errors.New("no such member")

// ErrMemberRemoved: drain named a member that was removed; removal is
// final (its name cannot come back into the cluster).
var ErrMemberRemoved = errors.New("member was removed from the cluster for good")

// Drain asks the meta leader to move every replica and leadership off the
// named node; it returns once the request is committed (the moves follow).
func (n *Node) Drain(ctx context.Context, name string) error {
	return n.setMemberState(ctx, name, protocol.MemberState_MEMBER_STATE_DRAINING, DrainPath)
}

// Remove takes the named node out of the cluster for good: its replicas
// are re-created elsewhere and it leaves the meta group.
func (n *Node) Remove(ctx context.Context, name string) error {
	return n.setMemberState(ctx, name, protocol.MemberState_MEMBER_STATE_REMOVED, RemovePath)
}

func (n *Node) setMemberState(ctx context.Context, name string, state protocol.MemberState, path string) error {
	st := n.meta.State()
	cur := meta.FindMember(st, name)
	if cur == nil {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	if cur.GetState() == protocol.MemberState_MEMBER_STATE_REMOVED && state != protocol.MemberState_MEMBER_STATE_REMOVED {
		return fmt.Errorf("%w: %q", ErrMemberRemoved, name)
	}
	if !n.meta.IsLeader() {
		ctx, cancel := context.WithTimeout(ctx, peerTimeout)
		defer cancel()
		return n.forwardMeta(ctx, http.MethodPost, path+"?name="+url.QueryEscape(name), nil, nil)
	}
	return n.meta.Apply(ctx, &protocol.MetaCommand{Command: &protocol.MetaCommand_SetState{SetState: &protocol.MetaSetState{Name: name, State: state}}})
}

// AdminError is a non-2xx answer of a node's admin endpoint. Problem is
// set when the answer was RFC 9457 problem details (Title and Message are
// its title and detail); otherwise Message is the body as sent.
type AdminError struct {
	Status  int
	Title   string
	Message string
	Problem bool
}

func (e *AdminError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// maxAdminAnswer bounds an admin answer read into memory.
const maxAdminAnswer = 8 << 20

// AdminCall calls the admin endpoint path of the node at base (an
// http:// or https:// URL) with the operator token (when not empty) and
// decodes a 2xx JSON answer into into (when not nil); it also returns the
// raw body. The caller's context bounds it. `ward cluster` uses it, and
// nodes use it with each other.
func AdminCall(ctx context.Context, method, base, path, token string, into any) ([]byte, error) {
	return AdminCallJSON(ctx, method, base, path, token, nil, into)
}

// AdminCallJSON is AdminCall with body (when not nil) sent as JSON.
func AdminCallJSON(ctx context.Context, method, base, path, token string, body, into any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		ae := &AdminError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		var pd struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(b, &pd) == nil && pd.Detail != "" {
			ae.Title, ae.Message, ae.Problem = pd.Title, pd.Detail, true
		}
		return nil, ae
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			return nil, fmt.Errorf("decode answer of %s%s: %w", base, path, err)
		}
	}
	return b, nil
}

// peerTimeout bounds one node-to-node admin call.
const peerTimeout = 3 * time.Second

func (n *Node) adminCall(ctx context.Context, method, addr, path string, into any) error {
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	_, err := AdminCall(ctx, method, "http://"+addr, path, n.peerToken(), into)
	return err
}

// forwardMeta sends an admin request to the meta leader's HTTP edge, with
// the operator token, under the caller's deadline.
func (n *Node) forwardMeta(ctx context.Context, method, path string, body, into any) error {
	leader := meta.FindMember(n.meta.State(), string(n.meta.Leader()))
	if leader == nil || leader.GetHttpAddr() == "" {
		return fmt.Errorf("cluster: %w: the meta leader is not known yet; retry", meta.ErrNotLeader)
	}
	_, err := AdminCallJSON(ctx, method, "http://"+leader.GetHttpAddr(), path, n.peerToken(), body, into)
	return err
}
