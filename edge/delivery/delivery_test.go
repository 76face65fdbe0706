package delivery

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardhq/ward/protocol"
)

// fakeSMTP is a minimal relay: it records what it was sent and whether the
// conversation moved to TLS before MAIL.
type fakeSMTP struct {
	ln       net.Listener
	tlsCfg   *tls.Config
	mu       sync.Mutex
	data     []string
	rcpt     []string
	tlsSeen  bool
	rejectTo string
}

func startFake(t *testing.T, offerTLS bool) *fakeSMTP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSMTP{ln: ln}
	if offerTLS {
		f.tlsCfg = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	_ = tp.PrintfLine("220 fake ESMTP")
	secure := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case cmd == "EHLO":
			if f.tlsCfg != nil && !secure {
				_ = tp.PrintfLine("250-fake")
				_ = tp.PrintfLine("250 STARTTLS")
			} else {
				_ = tp.PrintfLine("250 fake")
			}
		case cmd == "STARTTLS":
			_ = tp.PrintfLine("220 go ahead")
			tc := tls.Server(c, f.tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			tp = textproto.NewConn(tc)
			f.mu.Lock()
			f.tlsSeen = true
			f.mu.Unlock()
		case cmd == "MAIL":
			_ = tp.PrintfLine("250 ok")
		case cmd == "RCPT":
			if f.rejectTo != "" && strings.Contains(line, f.rejectTo) {
				_ = tp.PrintfLine("550 no such mailbox")
				continue
			}
			f.mu.Lock()
			f.rcpt = append(f.rcpt, line)
			f.mu.Unlock()
			_ = tp.PrintfLine("250 ok")
		case cmd == "DATA":
			_ = tp.PrintfLine("354 go")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.data = append(f.data, string(b))
			f.mu.Unlock()
			_ = tp.PrintfLine("250 queued")
		case cmd == "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 unknown")
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func mail(to, subject, body string) *protocol.OutboxMessage {
	return &protocol.OutboxMessage{Id: "m1", Channel: protocol.OutboxChannel_OUTBOX_CHANNEL_MAIL, To: to, Subject: subject, Body: body}
}

func TestSMTPDelivers(t *testing.T) {
	f := startFake(t, false)
	s := &SMTP{Addr: f.ln.Addr().String(), From: "ward@example.com"}
	via, err := s.Deliver(context.Background(), mail("ada@example.com", "Bestätigen", "Open\nhttp://x/verify-email?u=1&t=abc\n.\nbye"))
	if err != nil || via != protocol.OutboxVia_OUTBOX_VIA_SMTP {
		t.Fatalf("deliver: %v %v", via, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.data) != 1 || !strings.Contains(f.rcpt[0], "ada@example.com") {
		t.Fatalf("relay got %v %v", f.rcpt, f.data)
	}
	d := f.data[0]
	for _, want := range []string{"From: ward@example.com", "To: ada@example.com", "Subject: =?utf-8?q?Best=C3=A4tigen?=", "Content-Transfer-Encoding: quoted-printable", "verify-email?u=3D1&t=3Dabc", "\n.\nbye"} {
		if !strings.Contains(d, want) {
			t.Errorf("message lacks %q:\n%s", want, d)
		}
	}
}

func TestSMTPUsesSTARTTLSWhenOffered(t *testing.T) {
	f := startFake(t, true)
	// The fake's certificate is self-signed: an unverified relay is refused.
	s := &SMTP{Addr: f.ln.Addr().String(), From: "ward@example.com"}
	if _, err := s.Deliver(context.Background(), mail("ada@example.com", "s", "b")); err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Fatalf("untrusted relay certificate: %v, want a starttls error", err)
	}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(f.tlsCfg.Certificates[0].Certificate[0])
	pool.AddCert(cert)
	s.TLS = &tls.Config{RootCAs: pool}
	if _, err := s.Deliver(context.Background(), mail("ada@example.com", "s", "b")); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tlsSeen || len(f.data) != 1 {
		t.Fatalf("tls %v, data %d", f.tlsSeen, len(f.data))
	}
}

func TestSMTPErrors(t *testing.T) {
	f := startFake(t, false)
	f.rejectTo = "ghost@"
	s := &SMTP{Addr: f.ln.Addr().String(), From: "ward@example.com"}
	if _, err := s.Deliver(context.Background(), mail("ghost@example.com", "s", "b")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("rejected recipient: %v", err)
	}
	if _, err := s.Deliver(context.Background(), mail("ada@example.com", "s\r\nBcc: eve@example.com", "b")); err == nil {
		t.Fatal("a subject with a line break was sent")
	}
	if _, err := s.Deliver(context.Background(), &protocol.OutboxMessage{Channel: protocol.OutboxChannel_OUTBOX_CHANNEL_SMS, To: "+41791234567", Body: "x"}); err != ErrNoSMSGateway {
		t.Fatalf("sms over smtp: %v", err)
	}
	dead := &SMTP{Addr: "127.0.0.1:1", From: "ward@example.com"}
	if _, err := dead.Deliver(context.Background(), mail("ada@example.com", "s", "b")); err == nil {
		t.Fatal("delivered to a closed port")
	}
}
