package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/wardhq/ward/protocol"
)

// SMTP delivers mail to a relay with net/smtp: no authentication (a local
// relay or a smart host that trusts the node), STARTTLS whenever the server
// offers it, and the server's certificate verified. SMS are refused with
// ErrNoSMSGateway until an SMS transport exists.
type SMTP struct {
	// Addr is the relay's host:port.
	Addr string
	// From is the envelope and header sender.
	From string
	// Hello is the name given in EHLO; default "localhost".
	Hello string
	// TLS configures STARTTLS; nil verifies against the system roots with
	// the relay's host name.
	TLS *tls.Config
}

// Deliver implements Transport.
func (s *SMTP) Deliver(ctx context.Context, m *protocol.OutboxMessage) (protocol.OutboxVia, error) {
	if m.GetChannel() != protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL {
		return 0, ErrNoSMSGateway
	}
	msg, err := s.compose(m)
	if err != nil {
		return 0, err
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return 0, fmt.Errorf("smtp address %q: %w", s.Addr, err)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	deadline := time.Now().Add(time.Minute)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	hello := s.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return 0, err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if err := c.StartTLS(cfg); err != nil {
			return 0, fmt.Errorf("starttls: %w", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return 0, err
	}
	if err := c.Rcpt(m.GetTo()); err != nil {
		return 0, err
	}
	w, err := c.Data()
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(msg); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	_ = c.Quit()
	return protocol.OutboxVia_OUTBOX_VIA_SMTP, nil
}

// compose builds the RFC 5322 message. Header values cannot carry line
// breaks (the outbox actor refuses them); the subject is RFC 2047 encoded
// and the body quoted-printable, so any UTF-8 passes 7-bit relays.
func (s *SMTP) compose(m *protocol.OutboxMessage) ([]byte, error) {
	for _, v := range []string{s.From, m.GetTo(), m.GetSubject()} {
		if strings.ContainsAny(v, "\r\n") {
			return nil, errors.New("header value contains a line break")
		}
	}
	var b bytes.Buffer
	domain := "ward.invalid"
	if _, d, ok := strings.Cut(s.From, "@"); ok && d != "" {
		domain = d
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
		s.From, m.GetTo(), mime.QEncoding.Encode("utf-8", m.GetSubject()), time.Now().UTC().Format(time.RFC1123Z), hex.EncodeToString(id), domain)
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(m.GetBody(), "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
