package oidcbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/oidcclient"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/membership"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/oidc"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

// The 3-node benchmarks (BenchmarkCluster3*) run the provider on a real
// 3-node cluster in this process: three cluster.Nodes, each with its own
// pebble store, gossip over loopback, raft over loopback TCP and actor
// remoting, R=3 and P=16 (the production defaults; the one-node bench has
// P=4, R=1), membership.LocalTiming. Each node has its own Hasher and one
// provider per signing alg on its own httptest server. All three nodes
// share the 2 cores with each other and with the load generator, so the
// figures say what replication and remoting cost, not what three machines
// would do.
//
// Run (a few minutes: cluster start, 16 argon2id logins per alg, and two
// load runs per benchmark):
//
//	go test ./bench/oidc -run '^$' -bench 'Cluster3' -benchtime 1x [-tags openssl] [-load.d 10s]
//
// Raft's own warnings while the cluster forms and while it stops (elections,
// refused dials) go to stderr: the node has no setting to silence them.
// Each sub-benchmark reports where the partitions are led (leads-nK) and
// the process's CPU use during the load (cpu-cores).
//
// One issuer per alg: a deployment has one issuer URL behind a load
// balancer, so every node's provider of an alg is configured with the
// first node's server URL as its Issuer. op builds its redirects as
// absolute URLs under the issuer (the login page, the authorize callback),
// so a load client always addresses the issuer URL and its transport dials
// the node it is pinned to (nodeClient): a load balancer with sticky
// routing. The whole code flow of client i, and all its later requests,
// enter the cluster at node i mod 3; whatever actor they reach lives on its
// partition's leader, wherever that is.

const (
	cluster3Size       = 3
	cluster3Replicas   = 3
	cluster3Partitions = cluster.DefaultPartitions
)

type cluster3 struct {
	nodes   []*cluster.Node
	stores  []*persistence.Store
	hashers []*password.Hasher
	// srv[alg][k] is node k's provider; issuer[alg] is srv[alg][0].URL.
	srv    map[protocol.KeyAlg][]*httptest.Server
	issuer map[protocol.KeyAlg]string
}

var (
	c3     *cluster3
	c3Once sync.Once
	c3Err  error
	// stopCluster3 stops the 3-node cluster and removes its data; called
	// by TestMain.
	stopCluster3 func()
)

func provider3(b *testing.B) *cluster3 {
	b.Helper()
	c3Once.Do(func() { c3, c3Err = startCluster3() })
	if c3Err != nil {
		b.Fatal(c3Err)
	}
	return c3
}

func freeAddr3() (string, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port for gossip")
}

// waitFor polls cond every 20 ms until it holds or d passed.
func waitFor(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster3: %s not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func startCluster3() (*cluster3, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := os.MkdirTemp("", "ward-oidcbench3-")
	if err != nil {
		return nil, err
	}
	c := &cluster3{srv: map[protocol.KeyAlg][]*httptest.Server{}, issuer: map[protocol.KeyAlg]string{}}
	stopCluster3 = func() {
		for _, ss := range c.srv {
			for _, s := range ss {
				s.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// One after the other, as bench/cluster does: a stopping node hands
		// its leaderships to the ones still running.
		for _, n := range c.nodes {
			_ = n.Stop(ctx)
		}
		for _, s := range c.stores {
			_ = s.Close()
		}
		_ = os.RemoveAll(dir)
	}
	var gossip []string
	for range cluster3Size {
		a, err := freeAddr3()
		if err != nil {
			return nil, err
		}
		gossip = append(gossip, a)
	}
	kinds := []actors.Kind{authrequest.Kind, session.Kind, usersessions.Kind, user.Kind, emailindex.Kind, consent.Kind, assertion.Kind}
	for i := range cluster3Size {
		store, err := persistence.Open(filepath.Join(dir, fmt.Sprintf("n%d", i+1)), persistence.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		c.stores = append(c.stores, store)
		n, err := cluster.StartNode(cluster.NodeConfig{
			Host:  cluster.Config{Kinds: kinds, Logger: log, Registerer: prometheus.NewRegistry()},
			Store: store, Name: fmt.Sprintf("n%d", i+1), Partitions: cluster3Partitions,
			Replicas: cluster3Replicas, GossipAddr: gossip[i], Timing: membership.LocalTiming(),
			Join: gossip, BootstrapExpect: cluster3Size,
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := waitFor(60*time.Second, "every node ready", func() bool {
		for _, n := range c.nodes {
			if !n.Ready() {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}
	// Let rebalancing settle (replicas moved, preferred leaders) before
	// anything is measured, as bench/cluster does.
	time.Sleep(3 * time.Second)

	// The clients go through the meta leader; leadership may move while we
	// look, so retry on every node until one put of each succeeds.
	ctx := context.Background()
	for _, cl := range []*protocol.OIDCClient{
		{Id: "web", Public: true, DevMode: true, FirstParty: true, RedirectUris: []string{redirectURI}, GrantTypes: []string{oidcclient.GrantAuthorizationCode, oidcclient.GrantRefreshToken}, Scopes: []string{"email"}},
		{Id: "svc", SecretSha256: oidcclient.HashSecret(svcSecret), GrantTypes: []string{oidcclient.GrantClientCredentials}, Scopes: []string{"vitals.read"}},
	} {
		v, _ := proto.Marshal(cl)
		var last error
		if err := waitFor(30*time.Second, "put of client "+cl.Id, func() bool {
			for _, n := range c.nodes {
				if !n.Meta().IsLeader() {
					continue
				}
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				last = n.PutMetaValue(pctx, oidcclient.Key(cl.Id), v)
				cancel()
				if last == nil {
					return true
				}
			}
			return false
		}); err != nil {
			return nil, fmt.Errorf("%w (last: %v)", err, last)
		}
	}
	// Every node must read the clients and the signing keys before its
	// providers can answer.
	if err := waitFor(30*time.Second, "clients and signing keys on every node", func() bool {
		for _, n := range c.nodes {
			if _, err := n.KeySet(); err != nil {
				return false
			}
			for _, id := range []string{"web", "svc"} {
				if _, ok := n.MetaValue(oidcclient.Key(id)); !ok {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return nil, err
	}

	var secret [32]byte
	copy(secret[:], "0123456789abcdef0123456789abcdef")
	for range c.nodes {
		h, err := password.New(password.Config{Params: password.DefaultParams()})
		if err != nil {
			return nil, err
		}
		c.hashers = append(c.hashers, h)
	}
	for _, alg := range []protocol.KeyAlg{protocol.KeyAlg_KEY_ALG_RS256, protocol.KeyAlg_KEY_ALG_ES256} {
		for k, n := range c.nodes {
			var h http.Handler
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
			c.srv[alg] = append(c.srv[alg], srv)
			if k == 0 {
				c.issuer[alg] = srv.URL
			}
			h, err = oidc.New(oidc.Config{Issuer: c.issuer[alg], Insecure: true, Actors: n, Meta: n, Keys: n, Passwords: c.hashers[k],
				Secret: secret, SigningAlg: alg, Logger: log})
			if err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// nodeClient is an HTTP client for the issuer URL of alg that reaches node
// k: its transport dials node k's server whenever a request names the
// issuer's host, as a load balancer pinning this client to node k would.
func (c *cluster3) nodeClient(alg protocol.KeyAlg, k, conns int) *http.Client {
	hc := Client(conns)
	issuerHost := strings.TrimPrefix(c.issuer[alg], "http://")
	nodeHost := c.srv[alg][k].Listener.Addr().String()
	t := hc.Transport.(*http.Transport)
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == issuerHost {
			addr = nodeHost
		}
		return d.DialContext(ctx, network, addr)
	}
	return hc
}

// nodeClients is one client per node, each with conns connections.
func (c *cluster3) nodeClients(alg protocol.KeyAlg, conns int) []*http.Client {
	hcs := make([]*http.Client, len(c.nodes))
	for k := range hcs {
		hcs[k] = c.nodeClient(alg, k, conns)
	}
	return hcs
}

// reportLeaders logs and reports where the meta group and the partitions
// are led: with all leaders on one node, every request entering elsewhere
// takes a remoting hop, and the figures mean something else.
func (c *cluster3) reportLeaders(b *testing.B) []string {
	b.Helper()
	leaders := make([]string, cluster3Partitions)
	counts := make([]int, len(c.nodes))
	metaLeader := "?"
	for k, n := range c.nodes {
		if n.Meta().IsLeader() {
			metaLeader = n.Name()
		}
		for p := range cluster3Partitions {
			if pt := n.Partition(p); pt != nil && pt.Raft().State() == raft.Leader {
				leaders[p] = n.Name()
				counts[k]++
			}
		}
	}
	var parts []string
	for k, n := range c.nodes {
		parts = append(parts, fmt.Sprintf("%s %d", n.Name(), counts[k]))
		b.ReportMetric(float64(counts[k]), "leads-"+n.Name())
	}
	b.Logf("partition leaders: %s; meta leader %s", strings.Join(parts, ", "), metaLeader)
	return leaders
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runCPU is Run, also reporting the process's CPU use during it (warm-up
// included) in cores: near runtime.NumCPU() the run was CPU-bound, well
// below it latency-bound (raft rounds, fsyncs).
func runCPU(b *testing.B, op Op) Result {
	b.Helper()
	cpu0, t0 := cpuTime(), time.Now()
	r := Run(context.Background(), *loadClient, *loadWarm, *loadDur, op)
	b.ReportMetric((cpuTime()-cpu0).Seconds()/time.Since(t0).Seconds(), "cpu-cores")
	return r
}

// checkJWKS: every node publishes the same key set.
func (c *cluster3) checkJWKS(b *testing.B, alg protocol.KeyAlg, hcs []*http.Client) {
	b.Helper()
	var first string
	for k, hc := range hcs {
		resp, err := hc.Get(c.issuer[alg] + "/keys")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("node %d /keys: status %d", k, resp.StatusCode)
		}
		if k == 0 {
			first = string(body)
		} else if string(body) != first {
			b.Fatalf("node %d publishes another JWKS than node 0:\n%s\n%s", k, body, first)
		}
	}
}

func svcToken(hc *http.Client, tokenURL string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader("grant_type=client_credentials&scope=vitals.read"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc", svcSecret)
	out, err := PostJSON(hc, req)
	if err != nil {
		return "", err
	}
	tok, _ := out["access_token"].(string)
	if tok == "" {
		return "", errors.New("no access_token in the answer")
	}
	return tok, nil
}

// checkCrossNodeSvc: a client_credentials token issued by node k is active
// when introspected (as svc) at node k+1.
func (c *cluster3) checkCrossNodeSvc(b *testing.B, alg protocol.KeyAlg, hcs []*http.Client) {
	b.Helper()
	base := c.issuer[alg]
	for k := range hcs {
		tok, err := svcToken(hcs[k], base+"/oauth/token")
		if err != nil {
			b.Fatalf("token from node %d: %v", k, err)
		}
		j := (k + 1) % len(hcs)
		req, _ := http.NewRequest(http.MethodPost, base+"/oauth/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", svcSecret)
		out, err := PostJSON(hcs[j], req)
		if err != nil {
			b.Fatalf("introspection at node %d of node %d's token: %v", j, k, err)
		}
		if out["active"] != true {
			b.Fatalf("node %d says node %d's client_credentials token is not active: %v", j, k, out)
		}
	}
}

// BenchmarkCluster3ClientCredentials: BenchmarkClientCredentials on the
// 3-node cluster: 16 clients, client i on node i mod 3. No actor is
// involved (the client is read from the local meta replica, the token
// signed with the local copy of the key set), so this is the signing
// capacity of three providers sharing the same cores; the bound is the
// one-node bench's (cores / one signature's time). After the run, a token
// from each node must be active at the next node (introspection) and
// every node must publish the same JWKS.
func BenchmarkCluster3ClientCredentials(b *testing.B) {
	c := provider3(b)
	for _, a := range algs {
		b.Run(a.name+"/"+jose.Backend, func(b *testing.B) {
			c.reportLeaders(b)
			base := c.issuer[a.proto]
			hcs := c.nodeClients(a.proto, *loadClient)
			ops := make([]Op, len(hcs))
			for k, hc := range hcs {
				checkTokenAlg(b, hc, base+"/oauth/token", a.name)
				ops[k] = ClientCredentials(hc, base+"/oauth/token", "svc", svcSecret, url.Values{"scope": {"vitals.read"}})
			}
			op := func(ctx context.Context, i int) error { return ops[i%len(ops)](ctx, i) }
			sign := signTime(b, a.jose)
			bound := float64(runtime.NumCPU()) / sign.Seconds()
			r := runCPU(b, op)
			c.checkCrossNodeSvc(b, a.proto, hcs)
			c.checkJWKS(b, a.proto, hcs)
			b.ReportMetric(float64(sign.Nanoseconds())/1000, "sign-µs")
			report(b, r, "tokens", bound)
		})
	}
}

var (
	users3Once sync.Once
	users3Err  error
)

func users3(b *testing.B, c *cluster3) {
	b.Helper()
	users3Once.Do(func() {
		// Through node 0; the user and e-mail actors live on their
		// partitions' leaders wherever they are.
		p := &bench{node: c.nodes[0], hasher: c.hashers[0]}
		for i := range nUsers {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			users3Err = registerUser(ctx, p, userEmail(i))
			cancel()
			if users3Err != nil {
				return
			}
		}
	})
	if users3Err != nil {
		b.Fatal(users3Err)
	}
}

func refreshOnce(hc *http.Client, tokenURL, rt string) (next, access string, err error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"web"}}
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out, err := PostJSON(hc, req)
	if err != nil {
		return "", "", err
	}
	next, _ = out["refresh_token"].(string)
	access, _ = out["access_token"].(string)
	if next == "" || next == rt || access == "" {
		return "", "", errors.New("refresh answer without a new refresh token")
	}
	return next, access, nil
}

// BenchmarkCluster3RefreshRotation: BenchmarkRefreshRotation on the 3-node
// cluster. 16 sessions are made through the authorization code flow,
// client i entirely on node i mod 3 (4×cores flows at a time, reported as
// codeflow-*); then each client rotates its own refresh token on its node
// for the load duration. A rotation is one session-actor step committed
// through raft to 3 replicas; when the session's partition is led by
// another node than the one the request entered, the step takes a
// remoting hop (reported as remote-%, the share of sessions in that case).
// After the run, every client's last access token must be accepted by
// /userinfo at the next node, and its refresh token must rotate there.
func BenchmarkCluster3RefreshRotation(b *testing.B) {
	c := provider3(b)
	users3(b, c)
	for _, a := range algs {
		b.Run(a.name+"/"+jose.Backend, func(b *testing.B) {
			leaders := c.reportLeaders(b)
			base := c.issuer[a.proto]
			tokenURL := base + "/oauth/token"
			hcs := c.nodeClients(a.proto, *loadClient)
			nn := len(hcs)
			tokens := codeFlows(b, *loadClient, func(i int) (string, error) { return codeFlow(hcs[i%nn], base, userEmail(i%nUsers)) })
			access := make([]string, *loadClient)
			remote := 0
			for i, rt := range tokens {
				sid, _, err := session.ParseRefreshToken(rt)
				if err != nil {
					b.Fatal(err)
				}
				if leaders[placement.PartitionOf(session.KindName, sid, cluster3Partitions)] != c.nodes[i%nn].Name() {
					remote++
				}
			}
			b.ReportMetric(100*float64(remote)/float64(len(tokens)), "remote-%")

			var mu sync.Mutex
			op := func(_ context.Context, i int) error {
				mu.Lock()
				rt := tokens[i]
				mu.Unlock()
				next, at, err := refreshOnce(hcs[i%nn], tokenURL, rt)
				if err != nil {
					return err
				}
				mu.Lock()
				tokens[i], access[i] = next, at
				mu.Unlock()
				return nil
			}
			r := runCPU(b, op)
			if r.OK == 0 || r.Failed > 0 {
				b.Fatalf("load run: %s", r)
			}
			// Cross-node agreement: node i's tokens at node i+1.
			for i := range tokens {
				j := (i + 1) % nn
				req, _ := http.NewRequest(http.MethodGet, base+"/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+access[i])
				out, err := PostJSON(hcs[j], req)
				if err != nil {
					b.Fatalf("userinfo at node %d with node %d's access token: %v", j, i%nn, err)
				}
				if s, _ := out["sub"].(string); s == "" {
					b.Fatalf("userinfo at node %d with node %d's access token: no sub: %v", j, i%nn, out)
				}
				if _, _, err := refreshOnce(hcs[j], tokenURL, tokens[i]); err != nil {
					b.Fatalf("refresh at node %d of a token from node %d: %v", j, i%nn, err)
				}
			}
			c.checkJWKS(b, a.proto, hcs)
			report(b, r, "rotations", 0)
		})
	}
}
