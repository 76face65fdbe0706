package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/oidc"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/edge/problem"
)

// providerSecret returns the cluster's provider secret (cluster.
// ProviderSecretKey: code encryption, CSRF MACs; one value for the whole
// cluster), creating it if this node leads the meta group and nobody has
// yet.
func providerSecret(ctx context.Context, part *cluster.Node) ([32]byte, error) {
	var out [32]byte
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		v, ok, err := part.SecretValue(cluster.ProviderSecretKey)
		if err != nil {
			return out, err
		}
		if ok {
			if len(v) != len(out) {
				return out, fmt.Errorf("provider secret in the key state is %d bytes, want %d", len(v), len(out))
			}
			copy(out[:], v)
			return out, nil
		}
		if part.Meta().IsLeader() {
			fresh := make([]byte, len(out))
			if _, err := rand.Read(fresh); err != nil {
				return out, err
			}
			_, err := part.PutSecretIfAbsent(ctx, cluster.ProviderSecretKey, fresh)
			if err == nil {
				continue
			}
			slog.Debug("provider secret not stored yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("waiting for the provider secret in the meta key state: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// oidcOptions are the provider settings of a node.
type oidcOptions struct {
	Issuer       string // "" means http://<http addr>
	Tenant       string
	RefreshGrace time.Duration
}

func addOIDCFlags(f *pflag.FlagSet, cfg *nodeConfig) {
	f.StringVar(&cfg.Issuer, "issuer", "", "OpenID Connect issuer URL (https in production); empty means http://<--http> for development")
	f.DurationVar(&cfg.RefreshGrace, "refresh-grace", 10*time.Second, "a refresh token presented again this soon after its rotation gets the same successor (a lost answer); 0 disables")
}

// tenant is the tenant logins belong to until tenant selection arrives:
// the demo tenant in ward dev.
func (c nodeConfig) tenant() string {
	if c.Demo {
		return demoTenant
	}
	return "default"
}

// lazyHandler answers 503 until set: the provider is built once the
// cluster has formed.
type lazyHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lazyHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lazyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	problem.Write(w, http.StatusServiceUnavailable, "starting", "the OpenID Connect provider starts once the cluster has formed")
}

// seedDemo waits for the provider's key state to be writable (this node
// leads the meta group) and seeds the demo data.
func (n *node) seedDemo(ctx context.Context, issuer string) (*demoFile, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for !n.part.Meta().IsLeader() {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for meta leadership: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return seedDemo(ctx, n.cfg.DataDir, issuer, n.part, n.hasher)
}

// newOIDC builds the provider edge over a running node.
func newOIDC(ctx context.Context, part *cluster.Node, hasher *password.Hasher, httpAddr string, o oidcOptions, log *slog.Logger) (http.Handler, error) {
	issuer := o.Issuer
	insecure := false
	if issuer == "" {
		issuer = "http://" + httpAddr
		insecure = true
	}
	secret, err := providerSecret(ctx, part)
	if err != nil {
		return nil, err
	}
	h, err := oidc.New(oidc.Config{
		Issuer: issuer, Insecure: insecure, Actors: part, Meta: part, Keys: part,
		Passwords: hasher, Secret: secret, Tenant: o.Tenant, Logger: log.With("component", "oidc"),
		RefreshGrace: grace(o.RefreshGrace),
	})
	if err != nil {
		return nil, errors.Join(errors.New("oidc provider"), err)
	}
	return h, nil
}

// grace maps the flag (0 disables) to the provider's setting (negative
// disables, 0 takes the default).
func grace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// mountOIDC routes the provider's paths on mux.
func mountOIDC(mux *http.ServeMux, h http.Handler) {
	for _, p := range oidc.Paths {
		mux.Handle(p, h)
	}
}
