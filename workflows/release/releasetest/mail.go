package releasetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"mime/quotedprintable"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is a real SMTP server (go-smtp) on 127.0.0.1. It offers PLAIN auth
// only after STARTTLS, refuses MAIL before auth, and records every message
// it accepts.
type Mail struct {
	// Addr is the server's host:port.
	Addr string
	// CAFile is a PEM file holding the server's self-signed certificate,
	// the CA a client must trust.
	CAFile string
	// User and Password are the only credentials accepted.
	User, Password string

	mu   sync.Mutex
	msgs []Message
}

// Message is one message the server accepted.
type Message struct {
	// From and To are the envelope sender and recipients.
	From string
	To   []string
	// Data is the message as sent: headers, a blank line, the body.
	Data string
	// User is the name the client authenticated as.
	User string
	// TLS says whether the session had done STARTTLS.
	TLS bool
}

// NewMail starts a mail server accepting user and pass. With startTLS
// false it offers no STARTTLS, and so no auth and no delivery at all.
func NewMail(t testing.TB, user, pass string, startTLS bool) *Mail {
	t.Helper()
	certPEM, keyPEM := SelfSigned(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &Mail{Addr: ln.Addr().String(), CAFile: ca, User: user, Password: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: m, conn: c}, nil
	}))
	srv.Domain = "localhost"
	if startTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	srv.AllowInsecureAuth = false // PLAIN only after STARTTLS
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m
}

// Messages returns the messages accepted, in order.
func (m *Mail) Messages() []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Message(nil), m.msgs...)
}

// Subject returns the value of the message's Subject header, or "" if it
// has none.
func (msg Message) Subject(t testing.TB) string {
	t.Helper()
	head, _ := msg.split(t)
	for _, l := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Subject: "); ok {
			return v
		}
	}
	return ""
}

// Body returns the message's quoted-printable body decoded, with "\n" line
// ends.
func (msg Message) Body(t testing.TB) string {
	t.Helper()
	_, raw := msg.split(t)
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("quoted-printable body: %v", err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func (msg Message) split(t testing.TB) (head, body string) {
	t.Helper()
	head, body, ok := strings.Cut(msg.Data, "\r\n\r\n")
	if !ok {
		t.Fatalf("mail without a header/body separator:\n%s", msg.Data)
	}
	return head, body
}

type mailSession struct {
	srv  *Mail
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.srv.User || password != s.srv.Password {
			return errors.New("invalid username or password")
		}
		s.user = username
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, tlsOn := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, Message{From: s.from, To: s.to, Data: string(b), User: s.user, TLS: tlsOn})
	s.srv.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// SelfSigned makes a P-256 certificate for 127.0.0.1, valid for an hour,
// that is its own CA, and returns it and its key in PEM.
func SelfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "signet test smtp"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
