package web

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/wardhq/ward/actors/outbox"
	"github.com/wardhq/ward/protocol"
)

type mailboxRow struct {
	ID, Channel, To, Subject, Body, Link, Code, Created, Status string
}

type mailboxPage struct {
	page
	Messages []mailboxRow
}

var (
	linkRE = regexp.MustCompile(`https?://[^\s<>"]+`)
	codeRE = regexp.MustCompile(`\b[0-9]{6}\b`)
)

// Mailbox serves GET /dev/mailbox: the outbox of cfg.Tenant, newest first,
// with each message's link or code picked out. It shows one-time secrets
// to whoever can reach it, so only `ward dev` mounts it, never `ward node`.
// ?to= narrows it to one recipient.
func Mailbox(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	return headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.message(w, http.StatusMethodNotAllowed, "Method not allowed", "Use GET.", "", "")
			return
		}
		to := strings.TrimSpace(r.URL.Query().Get("to"))
		if len(to) > outbox.MaxToLen {
			s.message(w, http.StatusBadRequest, "Bad request", "The recipient is too long.", "", "")
			return
		}
		m, err := s.cfg.Actors.Request(r.Context(), outbox.KindName, s.cfg.Tenant, &protocol.OutboxListMessages{Limit: 100, To: normalizeTo(to)})
		if err != nil {
			s.internal(w, "list outbox", err)
			return
		}
		p := &mailboxPage{page: page{Title: "Dev mailbox", Nonce: nonce(), Wide: true}}
		for _, msg := range m.(*protocol.OutboxList).GetMessages() {
			row := mailboxRow{ID: msg.GetId(), To: msg.GetTo(), Subject: msg.GetSubject(), Body: msg.GetBody(), Created: when(msg.GetCreatedUnixNano())}
			row.Channel = strings.ToLower(strings.TrimPrefix(msg.GetChannel().String(), "OUTBOX_CHANNEL_"))
			row.Status = strings.ToLower(strings.TrimPrefix(msg.GetStatus().String(), "OUTBOX_STATUS_"))
			if msg.GetVia() == protocol.OutboxVia_OUTBOX_VIA_DEV_MAILBOX {
				row.Status = "sent to dev mailbox"
			}
			if msg.GetChannel() == protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL {
				row.Link = linkRE.FindString(row.Body)
			} else {
				row.Code = codeRE.FindString(row.Body)
			}
			p.Messages = append(p.Messages, row)
		}
		s.render(w, http.StatusOK, "mailbox.html", p, &p.page)
	})), nil
}

// normalizeTo lets ?to= name a phone the way it was typed.
func normalizeTo(to string) string {
	if strings.Contains(to, "@") {
		return to
	}
	return normalizePhone(to)
}
