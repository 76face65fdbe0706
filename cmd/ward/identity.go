package main

import (
	"log/slog"
	"net/http"

	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/identity"
)

// mountIdentity routes /identity/ (access context, API keys) on mux. It
// accepts the access tokens of this node's provider, so it takes the same
// issuer newOIDC does.
func mountIdentity(mux *http.ServeMux, part *cluster.Node, issuer, httpAddr string, log *slog.Logger) error {
	if issuer == "" {
		issuer = "http://" + httpAddr
	}
	h, err := identity.New(identity.Config{Issuer: issuer, Actors: part, Keys: part, Logger: log.With("component", "identity")})
	if err != nil {
		return err
	}
	mux.Handle(identity.PathPrefix, h)
	return nil
}
