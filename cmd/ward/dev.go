package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/apikey"
	"github.com/wardhq/ward/actors/assertion"
	"github.com/wardhq/ward/actors/authrequest"
	"github.com/wardhq/ward/actors/consent"
	"github.com/wardhq/ward/actors/emailindex"
	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/actors/tenant"
	"github.com/wardhq/ward/actors/user"
	"github.com/wardhq/ward/actors/usersessions"
	"github.com/wardhq/ward/actors/usertenants"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/admin"
	"github.com/wardhq/ward/edge/jose"
	"github.com/wardhq/ward/edge/jwks"
	"github.com/wardhq/ward/edge/ops"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/edge/registers"
	"github.com/wardhq/ward/persistence"
)

func init() { subcommands = append(subcommands, newDevCmd()) }

// nodeConfig is what `ward dev` and `ward node` wire together.
type nodeConfig struct {
	DataDir        string
	HTTPAddr       string
	PassivateAfter time.Duration
	SnapshotEvery  int
	// Cluster settings (see cluster.NodeConfig); ward dev leaves them zero
	// but for Partitions and Replicas=1: a one-node cluster on loopback.
	Name            string
	Partitions      int
	Replicas        int
	RaftAddr        string
	GossipAddr      string
	QUICAddr        string
	RemoteAddr      string
	Join            []string
	BootstrapExpect int
	DeadAfter       time.Duration
	GossipKey       []byte
	// MasterKeyFile seals the cluster's secrets at rest (see cluster/seal).
	MasterKeyFile string
	// AdminTokenFile is where the node keeps the operator token for the
	// CLI; "" means <data>/admin-token.
	AdminTokenFile string
	// MetricsAddr, when set, serves /metrics (and the health endpoints)
	// on a listener of its own instead of on HTTPAddr.
	MetricsAddr string
	// Signing keys (see keyring.Policy); zero takes the defaults.
	KeyRotation   time.Duration
	TokenLifetime time.Duration
	// OpenID Connect provider (edge/oidc).
	Issuer       string        // "" means http://<http address> (development)
	RefreshGrace time.Duration // a lost refresh answer can be retried this long
	// Outgoing verification mail (edge/delivery): SMTP relay and sender.
	SMTPAddr string
	SMTPFrom string
	// Demo seeds the demo tenant, users and clients and writes
	// <data>/demo.json (ward dev only).
	Demo bool
	// WaitReady bounds how long startNode waits for every partition to
	// have a leader; 0 returns at once (a cluster node waiting for peers).
	WaitReady time.Duration
	Logger    *slog.Logger
}

// kinds are the actor kinds every node hosts.
var kinds = []actors.Kind{
	session.Kind, usersessions.Kind, register.Kind, authrequest.Kind, consent.Kind, assertion.Kind, user.Kind, emailindex.Kind, tenant.Kind, usertenants.Kind,
	apikey.Kind, apikey.IndexKind,
}

// node is one running Ward node: storage, cluster node, HTTP edge.
type node struct {
	cfg      nodeConfig
	hasher   *password.Hasher
	oidc     *lazyHandler
	web      *webEdge
	store    *persistence.Store
	host     *cluster.Host
	part     *cluster.Node
	http     *http.Server
	listener net.Listener
	httpDone chan error
	metrics  *http.Server  // on --metrics-addr, if set
	closing  chan struct{} // closed when close starts
}

// hugePageMode reports the kernel's transparent huge page mode ("always",
// "madvise", "never"), or "unknown". libsodium's argon2id runs about twice as
// fast with "always" (bench/RESULTS.md).
func hugePageMode() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return "unknown"
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return "unknown"
	}
	return s[i+1 : j]
}

func startNode(cfg nodeConfig) (*node, error) {
	log := cfg.Logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	store, err := persistence.Open(filepath.Join(cfg.DataDir, "store"), persistence.Options{Registerer: reg, Logger: log})
	if err != nil {
		if errors.Is(err, persistence.ErrLocked) {
			// The store's own error names the lock file; the operator needs
			// only what to do about it.
			return nil, fmt.Errorf("data directory %s is in use by another ward process: stop it, or pass a different --data", cfg.DataDir)
		}
		return nil, fmt.Errorf("open storage in %s: %w", cfg.DataDir, err)
	}
	hasher, err := password.New(password.Config{Registerer: reg})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	// Which build serves the hot crypto decides login and token figures
	// (README "Faster builds"), so the operator sees it at start.
	log.Info("crypto backends", "argon2id", password.Backend, "rs256", jose.Backend,
		"transparent_hugepage", hugePageMode())
	n := &node{cfg: cfg, store: store, hasher: hasher, oidc: &lazyHandler{}, httpDone: make(chan error, 1), closing: make(chan struct{})}
	// The HTTP listener comes first: its address is advertised to the
	// other members.
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("listen on --http %s: %w", cfg.HTTPAddr, err)
		}
		n.listener = ln
	}
	httpAddr := ""
	if n.listener != nil {
		httpAddr = n.listener.Addr().String()
	}
	remoteHost, remotePort := "127.0.0.1", 0
	if cfg.RemoteAddr != "" {
		h, p, err := net.SplitHostPort(cfg.RemoteAddr)
		if err != nil {
			n.close(context.Background())
			return nil, fmt.Errorf("--remote %q: %w", cfg.RemoteAddr, err)
		}
		remoteHost = h
		if remotePort, err = strconv.Atoi(p); err != nil {
			n.close(context.Background())
			return nil, fmt.Errorf("--remote %q: bad port", cfg.RemoteAddr)
		}
	}
	masterKey, err := loadMasterKey(cfg.MasterKeyFile, cfg.DataDir, log)
	if err != nil {
		n.close(context.Background())
		return nil, err
	}
	part, err := cluster.StartNode(cluster.NodeConfig{
		Host: cluster.Config{
			Kinds:          kinds,
			PassivateAfter: cfg.PassivateAfter,
			SnapshotEvery:  cfg.SnapshotEvery,
			Logger:         log,
			Registerer:     reg,
			BindHost:       remoteHost,
			Port:           remotePort,
		},
		Store:           store,
		Name:            cfg.Name,
		Partitions:      cfg.Partitions,
		Replicas:        cfg.Replicas,
		RaftAddr:        cfg.RaftAddr,
		GossipAddr:      cfg.GossipAddr,
		Join:            cfg.Join,
		BootstrapExpect: cfg.BootstrapExpect,
		HTTPAddr:        httpAddr,
		QUICAddr:        cfg.QUICAddr,
		GossipKey:       cfg.GossipKey,
		DeadAfter:       cfg.DeadAfter,
		Version:         version,
		KeyPolicy:       keyring.Policy{RotateEvery: cfg.KeyRotation, MaxTokenLifetime: cfg.TokenLifetime},
		MasterKey:       masterKey,
	})
	if err != nil {
		n.close(context.Background())
		return nil, fmt.Errorf("start cluster node: %w", err)
	}
	n.part, n.host = part, part.Host
	go n.writeAdminToken(cfg.adminTokenPath(), log)
	if n.listener != nil {
		checks := map[string]ops.Check{
			"storage": func() error { return nil }, // Open succeeded and Close has not run
			"actors": func() error {
				if !part.Ready() {
					return errors.New("not every partition has a known leader yet")
				}
				return nil
			},
		}
		mux := http.NewServeMux()
		mux.Handle("/cluster/", admin.Handler(part))
		mux.Handle("/v1/registers/", registers.Handler(part))
		mux.Handle(jwks.Path, jwks.Handler(part, jwks.Options{MaxAge: jwksMaxAge(cfg.TokenLifetime)}))
		mountOIDC(mux, n.oidc)
		n.web = mountWeb(mux, part, hasher, cfg, httpAddr, log)
		if err := mountIdentity(mux, part, cfg.Issuer, httpAddr, log); err != nil {
			n.close(context.Background())
			return nil, err
		}
		var gatherer prometheus.Gatherer = reg
		if cfg.MetricsAddr != "" {
			// Metrics name members, partitions and traffic: an operator
			// may keep them off the public edge, as Keycloak's
			// management port does.
			mln, err := net.Listen("tcp", cfg.MetricsAddr)
			if err != nil {
				n.close(context.Background())
				return nil, fmt.Errorf("listen on --metrics-addr %s: %w", cfg.MetricsAddr, err)
			}
			n.metrics = &http.Server{Handler: ops.Handler(checks, reg), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			go func() { _ = n.metrics.Serve(mln) }()
			gatherer = nil
		}
		mux.Handle("/", ops.Handler(checks, gatherer))
		n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { n.httpDone <- n.http.Serve(n.listener) }()
	}
	if n.listener != nil {
		// The provider needs the cluster's provider secret, which the meta
		// leader creates once the cluster has formed: build it in the
		// background and answer 503 until then.
		go func() {
			h, err := newOIDC(context.Background(), part, hasher, httpAddr, oidcOptions{Issuer: cfg.Issuer, Tenant: cfg.tenant(), RefreshGrace: cfg.RefreshGrace}, log)
			if err != nil {
				log.Error("OpenID Connect provider not started", "err", err)
				return
			}
			n.oidc.set(h)
		}()
	}
	if cfg.WaitReady > 0 {
		deadline := time.Now().Add(cfg.WaitReady)
		for !part.Ready() {
			select {
			case <-part.Fatal():
				err := part.Err()
				n.close(context.Background())
				return nil, err
			default:
			}
			if time.Now().After(deadline) {
				n.close(context.Background())
				return nil, fmt.Errorf("node not ready after %s: not every partition has a leader", cfg.WaitReady)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return n, nil
}

// adminTokenFile is the file in a node's data directory that holds the
// cluster's operator token for the CLI (ward cluster, ward keys
// --token-file).
const adminTokenFile = "admin-token"

// adminTokenPath is --admin-token-file, by default in the data directory.
func (c nodeConfig) adminTokenPath() string {
	if c.AdminTokenFile != "" {
		return c.AdminTokenFile
	}
	return filepath.Join(c.DataDir, adminTokenFile)
}

// writeAdminToken keeps path (mode 0600) holding the cluster's operator
// token as this node's replica of the meta key state has it: the meta
// leader creates it when the cluster forms, so it can take a moment, and an
// operator may rotate it (ward cluster rotate-token) at any time. It looks
// again after every meta change, and retries a failed write.
func (n *node) writeAdminToken(path string, log *slog.Logger) {
	changes, cancel := n.part.MetaChanges()
	defer cancel()
	written, failed := "", "" // the token in the file; one that could not be written (logged once)
	if cur, err := os.ReadFile(path); err == nil {
		written = strings.TrimSpace(string(cur))
	}
	for {
		var retry <-chan time.Time
		if tok, err := n.part.AdminToken(); err == nil && tok != written {
			tmp := path + ".tmp"
			err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600)
			if err == nil {
				err = os.Rename(tmp, path)
			}
			if err != nil {
				if failed != tok {
					log.Error("writing the operator token file", "path", path, "err", err)
					failed = tok
				}
				retry = time.After(adminTokenRetry)
			} else {
				log.Info("operator token written", "path", path)
				written = tok
			}
		}
		select {
		case <-n.closing:
			return
		case <-n.part.Fatal():
			return
		case <-changes:
		case <-retry:
		}
	}
}

// adminTokenRetry is how soon a failed write of the token file is tried
// again.
const adminTokenRetry = time.Second

// close shuts down in dependency order: stop taking requests, let in-flight
// actor steps finish and their commits flush, then close storage.
func (n *node) close(ctx context.Context) error {
	var errs []error
	select {
	case <-n.closing: // closed before (close is called from one goroutine)
	default:
		close(n.closing)
	}
	n.web.stop()
	if n.metrics != nil {
		if err := n.metrics.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics listener shutdown: %w", err))
		}
	}
	if n.http != nil {
		if err := n.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	} else if n.listener != nil {
		n.listener.Close()
	}
	if n.part != nil {
		if err := n.part.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node stop: %w", err))
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("storage close: %w", err))
		}
	}
	return errors.Join(errs...)
}

// serve runs until a signal, a dead HTTP server or a fatal node error, then
// shuts down gracefully.
func (n *node) serve(ctx context.Context, log *slog.Logger) error {
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", "signal")
	case serveErr = <-n.httpDone:
		log.Error("http server stopped", "err", serveErr)
	case <-n.part.Fatal():
		serveErr = n.part.Err()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.close(shutdownCtx); err != nil {
		return errors.Join(serveErr, err)
	}
	log.Info("stopped cleanly")
	return serveErr
}

func newDevCmd() *cobra.Command {
	cfg := nodeConfig{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run one Ward node on embedded storage, for development",
		Long: `dev runs a single-node Ward (one-node cluster, embedded pebble storage) with
the HTTP edge on --http. It stops gracefully on SIGINT or SIGTERM, flushing
every acknowledged write. A second dev on the same --data refuses to start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			if err := checkKeyFlags(cfg); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg.Replicas = 1
			cfg.WaitReady = 60 * time.Second
			cfg.Demo = true
			n, err := startNode(cfg)
			if err != nil {
				return err
			}
			base := "http://" + n.listener.Addr().String()
			issuer := cfg.Issuer
			if issuer == "" {
				issuer = base
			}
			demo, err := n.seedDemo(ctx, issuer)
			if err != nil {
				if ctx.Err() != nil {
					// Stopped while seeding: the plan is kept and the next
					// start finishes it.
					return n.serve(ctx, log)
				}
				_ = n.close(context.Background())
				return fmt.Errorf("demo data: %w", err)
			}
			log.Info("demo data", "file", filepath.Join(cfg.DataDir, "demo.json"), "tenant", demo.Tenant, "users", len(demo.Users), "clients", len(demo.Clients))
			log.Info("ward dev is up", "data", cfg.DataDir, "healthz", base+"/healthz", "readyz", base+"/readyz", "metrics", base+"/metrics")
			fmt.Fprintf(cmd.OutOrStdout(), "Ward dev node ready\n  health:  %s/healthz\n  ready:   %s/readyz\n  metrics: %s/metrics\n  cluster: ward cluster status --server %s --token-file %s\n  jwks:    %s%s\n  oidc:    %s/.well-known/openid-configuration\n  demo:    %s (users, passwords, clients)\n  data:    %s\n",
				base, base, base, base, cfg.adminTokenPath(), base, jwks.Path, issuer, filepath.Join(cfg.DataDir, "demo.json"), cfg.DataDir)
			fmt.Fprintf(cmd.OutOrStdout(), "  register: %s/register\n  account: %s/account\n  mailbox: %s/dev/mailbox\n", base, base, base)
			return n.serve(ctx, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", "./.ward/dev", "data directory (pebble store, demo credentials)")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "HTTP edge listen address")
	f.DurationVar(&cfg.PassivateAfter, "passivate-after", 5*time.Minute, "stop an actor after this long idle")
	f.IntVar(&cfg.SnapshotEvery, "snapshot-every", 100, "snapshot an actor's state every N events")
	f.IntVar(&cfg.Partitions, "partitions", cluster.DefaultPartitions, "Raft partitions holding the actors' state (fixed when the data directory is created)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	addKeyFlags(f, &cfg)
	addOIDCFlags(f, &cfg)
	addWebFlags(f, &cfg)
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
