package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mailer sends the release log.
type Mailer interface {
	Send(ctx context.Context, subject, body string) error
}

// SMTPMailer sends mail through an SMTP relay with STARTTLS and PLAIN auth.
type SMTPMailer struct {
	addr     string
	host     string
	from     string
	to       []string
	header   string // "To:" header value
	username string
	password string
	starttls bool
	tls      *tls.Config
	// Now stamps the Date header; nil means time.Now.
	Now func() time.Time
}

var _ Mailer = (*SMTPMailer)(nil)

// NewMailer builds the mailer from config, reading the password file or
// variable. lookupEnv nil means os.LookupEnv. It returns nil, nil when mail
// is not configured.
func NewMailer(cfg MailConfig, lookupEnv func(string) (string, bool)) (*SMTPMailer, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("release: mail addr %q: expected host:port, such as smtp.example.com:587", cfg.Addr)
	}
	starttls := cfg.StartTLS == nil || *cfg.StartTLS
	if !starttls && !isLoopback(host) {
		return nil, fmt.Errorf("release: mail starttls may be turned off only for a loopback relay, found %s", host)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("release: mail from %q: expected an address: %w", cfg.From, err)
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("release: mail to is empty, expected at least one recipient")
	}
	m := &SMTPMailer{addr: cfg.Addr, host: host, from: from.Address, starttls: starttls, username: cfg.Username}
	var hdr []string
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("release: mail to %q: expected an address: %w", t, err)
		}
		m.to = append(m.to, a.Address)
		hdr = append(hdr, a.String())
	}
	m.header = strings.Join(hdr, ", ")
	if cfg.Username != "" {
		if strings.ContainsAny(cfg.Username, "\x00\r\n") {
			return nil, errors.New("release: mail username contains control characters")
		}
		if m.password, err = secret("mail password", cfg.PasswordFile, cfg.PasswordEnv, lookupEnv); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
	}
	m.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		path, err := expandHome(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("release: mail ca_file: %w", err)
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("release: mail ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("release: mail ca_file %s: no PEM certificate found", path)
		}
		m.tls.RootCAs = pool
	}
	return m, nil
}

// Send mails body to every recipient. The context's deadline (or one
// minute) bounds the whole exchange.
func (m *SMTPMailer) Send(ctx context.Context, subject, body string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	msg, err := m.message(subject, body)
	if err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("mail: connect to %s: %w", m.addr, err)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var c *smtp.Client
	if m.starttls {
		if c, err = smtp.NewClientStartTLS(conn, m.tls); err != nil {
			conn.Close()
			return fmt.Errorf("mail: starttls with %s: %w", m.addr, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	// go-smtp runs the TLS handshake lazily, on the next command: greet now
	// so that a certificate error is reported as one, then make sure the
	// connection really is encrypted before any password is sent.
	if err := c.Hello("localhost"); err != nil {
		if m.starttls {
			return fmt.Errorf("mail: starttls with %s: %w", m.addr, err)
		}
		return fmt.Errorf("mail: greet %s: %w", m.addr, err)
	}
	if st, ok := c.TLSConnectionState(); m.starttls && (!ok || !st.HandshakeComplete) {
		return fmt.Errorf("mail: starttls with %s: connection is not encrypted", m.addr)
	}
	if m.username != "" {
		if !c.SupportsAuth(sasl.Plain) {
			return fmt.Errorf("mail: %s does not offer PLAIN authentication", m.addr)
		}
		if err := c.Auth(sasl.NewPlainClient("", m.username, m.password)); err != nil {
			return fmt.Errorf("mail: authenticate as %s: %w", m.username, err)
		}
	}
	if err := c.SendMail(m.from, m.to, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("mail: send to %s: %w", strings.Join(m.to, ", "), err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("mail: quit: %w", err)
	}
	return nil
}

// message builds an RFC 5322 plain-text message with a quoted-printable
// body, so that long log lines and any bytes survive every relay.
func (m *SMTPMailer) message(subject, body string) ([]byte, error) {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	subject = strings.Join(strings.Fields(subject), " ") // no header injection
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", m.from)
	fmt.Fprintf(&b, "To: %s\r\n", m.header)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@signet.invalid>\r\n", hex.EncodeToString(id[:]))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
