package release

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows/release/releasetest"
)

// The mail tests run against a real SMTP server (go-smtp) on 127.0.0.1 that
// requires STARTTLS before PLAIN auth, with a certificate made in the test.

func TestMailSTARTTLSAndPlainAuth(t *testing.T) {
	ms := releasetest.NewMail(t, "signet", "smtp-pass", true)
	m, err := NewMailer(mailConfig(t, ms), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Now = func() time.Time { return time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC) }
	body := "2025-05-06T07:08:09Z line one\n.a line starting with a dot\n" + strings.Repeat("long ", 40) + "\nünïcode\n"
	if err := m.Send(context.Background(), "[signet] release complete on prod: R\r\nBcc: evil@example.test", body); err != nil {
		t.Fatal(err)
	}
	mails := ms.Messages()
	if len(mails) != 1 {
		t.Fatalf("%d mails received", len(mails))
	}
	got := mails[0]
	if !got.TLS || got.User != "signet" {
		t.Errorf("tls %v user %q, want STARTTLS and PLAIN as signet", got.TLS, got.User)
	}
	if got.From != "signet@example.test" || strings.Join(got.To, ",") != "releases@example.test,ops@example.test" {
		t.Errorf("envelope from %q to %q", got.From, got.To)
	}
	if strings.Contains(got.Data, "\r\nBcc:") {
		t.Errorf("subject injected a header:\n%s", got.Data)
	}
	for _, h := range []string{"Subject: [signet] release complete on prod: R Bcc: evil@example.test\r\n", "Date: Tue, 06 May 2025 07:08:09 +0000\r\n", "Content-Transfer-Encoding: quoted-printable\r\n"} {
		if !strings.Contains(got.Data, h) {
			t.Errorf("header %q missing:\n%s", h, got.Data)
		}
	}
	if dec := got.Body(t); dec != body {
		t.Errorf("body %q, want %q", dec, body)
	}
}

func TestMailWrongPassword(t *testing.T) {
	ms := releasetest.NewMail(t, "signet", "right", true)
	cfg := mailConfig(t, ms)
	cfg.PasswordFile = releasetest.WriteSecret(t, "pw", "wrong-password-value")
	m, err := NewMailer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), "s", "b")
	if err == nil || !strings.Contains(err.Error(), "authenticate as signet") {
		t.Fatalf("error %v, want an authentication error", err)
	}
	if strings.Contains(err.Error(), "wrong-password-value") {
		t.Errorf("error leaks the password: %v", err)
	}
	if len(ms.Messages()) != 0 {
		t.Error("mail delivered without auth")
	}
}

func TestMailRefusesAnUntrustedCertificate(t *testing.T) {
	ms := releasetest.NewMail(t, "signet", "p", true)
	cfg := mailConfig(t, ms)
	cfg.CAFile = "" // system roots do not know the test certificate
	m, err := NewMailer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), "s", "b"); err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Fatalf("error %v, want a starttls certificate error", err)
	}
	if len(ms.Messages()) != 0 {
		t.Error("mail delivered over an unverified connection")
	}
}

func TestMailServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	m, err := NewMailer(MailConfig{Addr: addr, From: "a@example.test", To: []string{"b@example.test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), "s", "b"); err == nil || !strings.Contains(err.Error(), "connect to "+addr) {
		t.Fatalf("error %v, want a connect error naming %s", err, addr)
	}
}

func TestNewMailerRejects(t *testing.T) {
	off := false
	pw := releasetest.WriteSecret(t, "pw", "p")
	ok := MailConfig{Addr: "smtp.example.test:587", From: "a@example.test", To: []string{"b@example.test"}}
	tests := []struct {
		name string
		edit func(*MailConfig)
		want string
	}{
		{"no port", func(c *MailConfig) { c.Addr = "smtp.example.test" }, "expected host:port"},
		{"starttls off remote", func(c *MailConfig) { c.StartTLS = &off }, "only for a loopback relay"},
		{"bad from", func(c *MailConfig) { c.From = "not an address" }, "mail from"},
		{"no to", func(c *MailConfig) { c.To = nil }, "at least one recipient"},
		{"bad to", func(c *MailConfig) { c.To = []string{"b@example.test\r\nBcc: x@y"} }, "mail to"},
		{"user without password", func(c *MailConfig) { c.Username = "u" }, "mail password"},
		{"user with newline", func(c *MailConfig) { c.Username = "u\r\nRSET"; c.PasswordFile = pw }, "control characters"},
		{"missing ca file", func(c *MailConfig) { c.CAFile = "/nonexistent/ca.pem" }, "ca_file"},
		{"ca file without pem", func(c *MailConfig) { c.CAFile = pw }, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			_, err := NewMailer(c, func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	c := ok
	c.Addr, c.StartTLS = "127.0.0.1:25", &off
	if _, err := NewMailer(c, nil); err != nil {
		t.Errorf("starttls off on loopback: %v", err)
	}
}

func TestMailRequiresSTARTTLS(t *testing.T) {
	ms := releasetest.NewMail(t, "signet", "p", false)
	m, err := NewMailer(mailConfig(t, ms), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(context.Background(), "s", "b"); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("error %v, want STARTTLS refused", err)
	}
	if len(ms.Messages()) != 0 {
		t.Error("mail delivered without STARTTLS")
	}
}

// mailConfig points a MailConfig at ms, with its password in a 0600 file.
func mailConfig(t *testing.T, ms *releasetest.Mail) MailConfig {
	t.Helper()
	return MailConfig{
		Addr:         ms.Addr,
		From:         "signet@example.test",
		To:           []string{"releases@example.test", "Ops Team <ops@example.test>"},
		Username:     ms.User,
		PasswordFile: releasetest.WriteSecret(t, "smtp.password", ms.Password),
		CAFile:       ms.CAFile,
	}
}
