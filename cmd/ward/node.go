package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardhq/ward/cluster"
)

// version is advertised to the other members.
var version = "dev"

func init() { subcommands = append(subcommands, newNodeCmd(), newClusterCmd()) }

func newNodeCmd() *cobra.Command {
	cfg := nodeConfig{}
	var (
		logLevel, join, gossipKey string
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one node of a Ward cluster",
		Long: `node runs one member of a Ward cluster: gossip on --gossip, Raft (every
group, one port) on --raft, the HTTP edge on --http, gateways on --quic (UDP),
actor remoting on --remote (TCP; default: the --quic address).

A new cluster forms when --bootstrap-expect nodes see each other; a node
with --join and no --bootstrap-expect joins an existing cluster and is given
replicas by the meta leader. --partitions is fixed when a cluster is created:
a node started with another value is refused.`,
		Example: `  ward node --name n1 --data /var/lib/ward --gossip 10.0.0.1:7946 --raft 10.0.0.1:7000 \
    --http 10.0.0.1:8080 --quic 10.0.0.1:8443 --join 10.0.0.2:7946,10.0.0.3:7946 --bootstrap-expect 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log.With("node", cfg.Name)
			for _, f := range []struct{ name, v string }{{"name", cfg.Name}, {"data", cfg.DataDir}, {"gossip", cfg.GossipAddr}, {"raft", cfg.RaftAddr}, {"http", cfg.HTTPAddr}, {"quic", cfg.QUICAddr}} {
				if f.v == "" {
					return fmt.Errorf("--%s is required", f.name)
				}
			}
			for _, a := range []struct{ name, v string }{{"gossip", cfg.GossipAddr}, {"raft", cfg.RaftAddr}, {"http", cfg.HTTPAddr}, {"quic", cfg.QUICAddr}} {
				if _, _, err := net.SplitHostPort(a.v); err != nil {
					return fmt.Errorf("--%s %q: want HOST:PORT", a.name, a.v)
				}
			}
			if cfg.RemoteAddr == "" {
				cfg.RemoteAddr = cfg.QUICAddr // TCP on the QUIC (UDP) port number
			}
			if join != "" {
				cfg.Join = strings.Split(join, ",")
			}
			if cfg.Partitions < 1 || cfg.Partitions > 4096 {
				return fmt.Errorf("--partitions %d: want 1..4096", cfg.Partitions)
			}
			if cfg.Replicas < 1 || cfg.Replicas > 7 {
				return fmt.Errorf("--replicas %d: want 1..7", cfg.Replicas)
			}
			if err := checkKeyFlags(cfg); err != nil {
				return err
			}
			if gossipKey != "" {
				k, err := base64.StdEncoding.DecodeString(gossipKey)
				if err != nil {
					return fmt.Errorf("--gossip-key: want base64: %w", err)
				}
				cfg.GossipKey = k
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			n, err := startNode(cfg)
			if err != nil {
				return err
			}
			log.Info("ward node is up", "name", cfg.Name, "http", n.listener.Addr().String(),
				"raft", n.part.RaftAddr(), "gossip", n.part.GossipAddr())
			fmt.Fprintf(cmd.OutOrStdout(), "Ward node %s up: http://%s (ward cluster status --server http://%s --token-file %s)\n",
				cfg.Name, n.listener.Addr(), n.listener.Addr(), cfg.adminTokenPath())
			return n.serve(ctx, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "node name, stable across restarts (required)")
	f.StringVar(&cfg.DataDir, "data", "", "data directory (required)")
	f.StringVar(&cfg.GossipAddr, "gossip", "", "gossip listen address HOST:PORT, TCP and UDP (required)")
	f.StringVar(&cfg.RaftAddr, "raft", "", "Raft listen address HOST:PORT (required)")
	f.StringVar(&cfg.HTTPAddr, "http", "", "HTTP edge listen address HOST:PORT (required)")
	f.StringVar(&cfg.QUICAddr, "quic", "", "QUIC gateway listen address HOST:PORT, UDP (required)")
	f.StringVar(&cfg.RemoteAddr, "remote", "", "actor remoting listen address HOST:PORT, TCP (default: the --quic address)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve /metrics (and /healthz, /readyz) on this HOST:PORT instead of on --http, e.g. a private interface")
	f.StringVar(&join, "join", "", "comma-separated gossip addresses of members to join")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many nodes see each other")
	f.IntVar(&cfg.Partitions, "partitions", cluster.DefaultPartitions, "Raft partitions (fixed at cluster creation)")
	f.IntVar(&cfg.Replicas, "replicas", cluster.DefaultReplicas, "replication factor of every partition")
	f.DurationVar(&cfg.DeadAfter, "dead-after", cluster.DefaultDeadAfter, "re-create the replicas of a node unreachable this long")
	f.StringVar(&gossipKey, "gossip-key", "", "base64 AES key (16, 24 or 32 bytes) encrypting gossip")
	f.DurationVar(&cfg.PassivateAfter, "passivate-after", 5*time.Minute, "stop an actor after this long idle")
	f.IntVar(&cfg.SnapshotEvery, "snapshot-every", 100, "snapshot an actor's state every N events")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	addKeyFlags(f, &cfg)
	addOIDCFlags(f, &cfg)
	addWebFlags(f, &cfg)
	return cmd
}

func newClusterCmd() *cobra.Command {
	var op operatorFlags
	root := &cobra.Command{
		Use:   "cluster",
		Short: "Operate a running cluster: status, drain, remove, rotate-token",
	}
	op.add(root)

	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show members, the meta group and every partition's leader and replicas",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st cluster.Status
			body, err := op.request(cmd.Context(), http.MethodGet, cluster.StatusPath, nil, &st)
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			printStatus(cmd.OutOrStdout(), &st)
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	memberCmd := func(use, short, path string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				_, err := op.request(cmd.Context(), http.MethodPost, path+"?name="+url.QueryEscape(args[0]), nil, nil)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s requested; watch `ward cluster status`\n", args[0], use)
				return nil
			},
		}
	}
	rotateToken := &cobra.Command{
		Use:   "rotate-token",
		Short: "Replace the cluster's operator token; the old one stops working at once",
		Long: "Replace the cluster's operator token with a new random one and print it (once).\n" +
			"The old token is refused everywhere as soon as each node applies the change;\n" +
			"every node rewrites <data>/admin-token as it applies the change.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ans cluster.AdminTokenAnswer
			if _, err := op.request(cmd.Context(), http.MethodPost, cluster.AdminTokenRotatePath, nil, &ans); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ans.Token)
			return nil
		},
	}
	root.AddCommand(status,
		memberCmd("drain", "Move every replica and leadership off a node", cluster.DrainPath),
		memberCmd("remove", "Take a node out of the cluster for good", cluster.RemovePath),
		rotateToken)
	return root
}

// operatorFlags are the flags of the commands that call a node's admin
// endpoints (ward cluster, ward keys): which node, and the operator token.
type operatorFlags struct {
	server    string
	tokenFile string
}

// adminTokenEnv names the environment variable that may carry the
// operator token instead of --token-file.
const adminTokenEnv = "WARD_ADMIN_TOKEN"

func (o *operatorFlags) add(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.server, "server", "http://127.0.0.1:8080", "HTTP address of any node")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the cluster's operator token (every node writes it to <data>/admin-token); default: $"+adminTokenEnv)
}

// token reads the operator token from --token-file or the environment.
func (o *operatorFlags) token() (string, error) {
	if o.tokenFile == "" {
		return strings.TrimSpace(os.Getenv(adminTokenEnv)), nil
	}
	b, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// request calls the node's admin endpoint path with body (when not nil)
// as JSON; a problem-details answer becomes an error with its title and
// detail.
func (o *operatorFlags) request(ctx context.Context, method, path string, body, into any) ([]byte, error) {
	server := strings.TrimRight(o.server, "/")
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		server = "http://" + server
	}
	if _, err := url.Parse(server); err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	token, err := o.token()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	answer, err := cluster.AdminCallJSON(ctx, method, server, path, token, body, into)
	var ae *cluster.AdminError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && token == "":
		return nil, fmt.Errorf("%s: pass the cluster's operator token with --token-file <data>/admin-token (any node's data directory) or $%s", ae.Title, adminTokenEnv)
	case errors.As(err, &ae) && ae.Problem:
		return nil, fmt.Errorf("%s: %s (HTTP %d)", ae.Title, ae.Message, ae.Status)
	case errors.As(err, &ae):
		return nil, fmt.Errorf("%s answered HTTP %d: %s", server, ae.Status, ae.Message)
	case err != nil:
		return nil, fmt.Errorf("cannot reach %s: %w", server, err)
	}
	return answer, nil
}

func printStatus(w io.Writer, st *cluster.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "cluster %s: %d partitions, replication factor %d\n\n", st.ClusterID, st.Meta.Partitions, st.Meta.Factor)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tHTTP\tREPLICAS\tLEADERS")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", m.Name, m.State, m.HTTP, m.Replicas, m.Leaders)
	}
	fmt.Fprintf(tw, "\nmeta: leader %s, voters %s, replicas %s\n\n", st.Meta.Leader, strings.Join(st.Meta.Voters, ","), strings.Join(st.Meta.Replicas, ","))
	fmt.Fprintln(tw, "PARTITION\tLEADER\tTERM\tREPLICAS\tAPPLIED")
	for _, p := range st.Partitions {
		leader := p.Leader
		if leader == "" {
			leader = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\n", p.ID, leader, p.Term, strings.Join(p.Replicas, ","), p.AppliedIndex)
	}
	for _, e := range st.Errors {
		fmt.Fprintf(tw, "unreachable: %s\n", e)
	}
	_ = tw.Flush()
}
