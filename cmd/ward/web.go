package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/edge/delivery"
	"github.com/wardhq/ward/edge/password"
	"github.com/wardhq/ward/edge/web"
)

// The outbox kind is hosted wherever the pages are, which is every node.
func init() { kinds = append(kinds, outbox.Kind) }

func addWebFlags(f *pflag.FlagSet, cfg *nodeConfig) {
	f.StringVar(&cfg.SMTPAddr, "smtp", "", "SMTP relay HOST:PORT for verification mail (STARTTLS when offered); ward dev captures mail in /dev/mailbox when unset")
	f.StringVar(&cfg.SMTPFrom, "smtp-from", "ward@localhost", "sender address of mail sent through --smtp")
}

// webEdge is the people-facing pages and the outbox sender of one node.
type webEdge struct {
	stopSender context.CancelFunc
	done       chan struct{}
}

// stop ends the sender and waits for it (a report in flight finishes).
func (w *webEdge) stop() {
	if w == nil {
		return
	}
	w.stopSender()
	<-w.done
}

// mountWeb routes the pages (edge/web) on mux, and in ward dev the dev
// mailbox, and starts the outbox sender: SMTP with --smtp, otherwise the
// dev mailbox in ward dev, and nothing on ward node without --smtp (mail
// then waits in the outbox). The pages answer 503 until the cluster's
// provider secret, which keys their MACs, exists.
func mountWeb(mux *http.ServeMux, part *cluster.Node, hasher *password.Hasher, cfg nodeConfig, httpAddr string, log *slog.Logger) *webEdge {
	log = log.With("component", "web")
	base := cfg.Issuer
	if base == "" {
		base = "http://" + httpAddr
	}
	tenant := cfg.tenant()
	var transport delivery.Transport
	switch {
	case cfg.SMTPAddr != "":
		transport = &delivery.SMTP{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom}
	case cfg.Demo:
		transport = delivery.Capture{}
	default:
		log.Warn("no --smtp: verification mail and SMS stay queued in the outbox")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &webEdge{stopSender: cancel, done: make(chan struct{})}
	sender := &delivery.Sender{Actors: part, Tenants: []string{tenant}, Transport: transport, Logger: log.With("component", "outbox-sender")}
	if transport != nil {
		due, unsubscribe := part.Host.Subscribe(outbox.Topic, 16)
		sender.Due = due
		go func() {
			defer close(w.done)
			defer unsubscribe()
			sender.Run(ctx)
		}()
	} else {
		close(w.done)
	}

	pages, mailbox := &lazyHandler{}, &lazyHandler{}
	for _, p := range web.Paths {
		mux.Handle(p, pages)
	}
	if cfg.Demo {
		mux.Handle(web.MailboxPath, mailbox)
	}
	go func() {
		secret, err := providerSecret(ctx, part)
		if err != nil {
			log.Error("web pages not started", "err", err)
			return
		}
		wc := web.Config{BaseURL: base, Actors: part, Passwords: hasher, Secret: secret, Tenant: tenant, Logger: log}
		if transport != nil {
			wc.Notify = sender.Wake
		}
		h, err := web.New(wc)
		if err != nil {
			log.Error("web pages not started", "err", err)
			return
		}
		pages.set(h)
		if cfg.Demo {
			m, err := web.Mailbox(wc)
			if err != nil {
				log.Error("dev mailbox not started", "err", err)
				return
			}
			mailbox.set(m)
		}
	}()
	return w
}
