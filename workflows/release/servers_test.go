package release

// Test servers. Jira, GitHub and Slack cannot run here, so jiraServer,
// githubServer and chatServer are httptest servers speaking the documented
// formats: Jira REST API v2 (issue, comment, transitions), GitHub REST
// issues (issue, comments, PATCH state) and the Slack incoming-webhook JSON
// {"text": ...}. They check the auth headers, refuse what the real services
// refuse, and record what they receive. The SMTP server is real: go-smtp
// with STARTTLS (a self-signed certificate made here) and PLAIN auth.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// jiraServer implements the Jira v2 endpoints release uses for one issue.
type jiraServer struct {
	*httptest.Server
	t           *testing.T
	key         string
	auth        string // the exact Authorization header accepted
	summary     string
	description any // string or nil (Jira sends null for an empty description)
	transitions []jiraTransition

	mu       sync.Mutex
	comments []string
	posted   []string // transition ids posted
	calls    []string
}

type jiraTransition struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func newJiraServer(t *testing.T, key, auth, summary string, description any) *jiraServer {
	s := &jiraServer{t: t, key: key, auth: auth, summary: summary, description: description,
		transitions: []jiraTransition{{"11", "In Progress"}, {"31", "Done"}}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jiraServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != s.auth {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}`)
		return
	}
	issue := "/rest/api/2/issue/" + s.key
	switch {
	case r.Method == http.MethodGet && r.URL.Path == issue:
		if got := r.URL.Query().Get("fields"); got != "summary,description" {
			s.t.Errorf("jira: fields=%q, want summary,description", got)
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": "10001", "key": s.key,
			"fields": map[string]any{"summary": s.summary, "description": s.description}})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/comment":
		var in struct {
			Body string `json:"body"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.comments = append(s.comments, in.Body)
		writeJSON(w, http.StatusCreated, map[string]any{"id": "1", "body": in.Body})
	case r.Method == http.MethodGet && r.URL.Path == issue+"/transitions":
		writeJSON(w, http.StatusOK, map[string]any{"expand": "transitions", "transitions": s.transitions})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/transitions":
		var in struct {
			Transition struct {
				ID string `json:"id"`
			} `json:"transition"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		known := false
		for _, tr := range s.transitions {
			known = known || tr.ID == in.Transition.ID
		}
		if !known {
			writeJSON(w, http.StatusBadRequest, map[string]any{"errorMessages": []string{"Transition id '" + in.Transition.ID + "' is not valid for this issue."}})
			return
		}
		s.posted = append(s.posted, in.Transition.ID)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"errorMessages": []string{"Issue does not exist or you do not have permission to see it."}})
	}
}

func (s *jiraServer) Comments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...)
}

func (s *jiraServer) Transitions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.posted...)
}

// githubServer implements the GitHub REST issue endpoints for one issue.
type githubServer struct {
	*httptest.Server
	t      *testing.T
	prefix string // "" for api.github.com, "/api/v3" for Enterprise
	path   string // /repos/o/r/issues/n
	token  string
	title  string
	body   any

	mu       sync.Mutex
	comments []string
	state    string
}

func newGitHubServer(t *testing.T, prefix, path, token, title string, body any) *githubServer {
	s := &githubServer{t: t, prefix: prefix, path: path, token: token, title: title, body: body, state: "open"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *githubServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	if a := r.Header.Get("Accept"); a != "application/vnd.github+json" {
		s.t.Errorf("github: Accept %q, want application/vnd.github+json", a)
	}
	issue := s.prefix + s.path
	switch {
	case r.Method == http.MethodGet && r.URL.Path == issue:
		writeJSON(w, http.StatusOK, map[string]any{"number": 42, "title": s.title, "body": s.body, "state": s.state})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/comments":
		var in struct {
			Body string `json:"body"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.comments = append(s.comments, in.Body)
		writeJSON(w, http.StatusCreated, map[string]any{"id": 1, "body": in.Body})
	case r.Method == http.MethodPatch && r.URL.Path == issue:
		var in struct {
			State string `json:"state"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		if in.State != "open" && in.State != "closed" {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed"})
			return
		}
		s.state = in.State
		writeJSON(w, http.StatusOK, map[string]any{"number": 42, "state": s.state})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
	}
}

func (s *githubServer) snapshot() (comments []string, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...), s.state
}

// chatServer is a Slack-compatible incoming webhook recording messages in
// order. Its secret path stands for the token a real webhook URL holds.
type chatServer struct {
	*httptest.Server
	mu     sync.Mutex
	texts  []string
	status int // answer status; 0 means 200
}

const chatSecretPath = "/hooks/T000/B000/s3cr3tW3bh00k"

func newChatServer(t *testing.T) *chatServer {
	s := &chatServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != chatSecretPath {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		var in struct {
			Text *string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Text == nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		if s.status != 0 {
			http.Error(w, "channel_is_archived", s.status)
			return
		}
		s.texts = append(s.texts, *in.Text)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *chatServer) URL() string { return s.Server.URL + chatSecretPath }

func (s *chatServer) Texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.texts...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Header.Get("Content-Type") != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]any{"message": "expected application/json"})
		return false
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Problems parsing JSON"})
		return false
	}
	return true
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// writeSecret writes a 0600 secret file, as an operator would.
func writeSecret(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mailServer is a real SMTP server (go-smtp) on 127.0.0.1 requiring
// STARTTLS before PLAIN auth, recording what it receives.
type mailServer struct {
	Addr   string
	CAFile string // PEM of its self-signed certificate
	user   string
	pass   string

	mu    sync.Mutex
	mails []receivedMail
}

type receivedMail struct {
	From string
	To   []string
	Data string
	User string
	TLS  bool
}

func newMailServer(t *testing.T, user, pass string) *mailServer {
	t.Helper()
	return newMailServerTLS(t, user, pass, true)
}

// newMailServerTLS starts the server; withTLS false means it offers no
// STARTTLS (and so no AUTH).
func newMailServerTLS(t *testing.T, user, pass string, withTLS bool) *mailServer {
	t.Helper()
	certPEM, keyPEM := selfSigned(t)
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
	ms := &mailServer{Addr: ln.Addr().String(), CAFile: ca, user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: ms, conn: c}, nil
	}))
	srv.Domain = "localhost"
	if withTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	srv.AllowInsecureAuth = false // PLAIN only after STARTTLS
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ms
}

func (ms *mailServer) Mails() []receivedMail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]receivedMail(nil), ms.mails...)
}

type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != s.srv.user || password != s.srv.pass {
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
	s.srv.mails = append(s.srv.mails, receivedMail{From: s.from, To: s.to, Data: string(b), User: s.user, TLS: tlsOn})
	s.srv.mu.Unlock()
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1, valid for an hour.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
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

// mailConfig points a MailConfig at ms with its password in a file.
func (ms *mailServer) config(t *testing.T) MailConfig {
	return MailConfig{
		Addr:         ms.Addr,
		From:         "signet@example.test",
		To:           []string{"releases@example.test", "Ops Team <ops@example.test>"},
		Username:     ms.user,
		PasswordFile: writeSecret(t, "smtp.password", ms.pass),
		CAFile:       ms.CAFile,
	}
}

// mailBody returns the decoded body of the quoted-printable body of a received message.
func mailBody(t *testing.T, data string) string {
	t.Helper()
	_, body, ok := strings.Cut(data, "\r\n\r\n")
	if !ok {
		t.Fatalf("mail without a header/body separator:\n%s", data)
	}
	return qpDecode(t, body)
}

func qpDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(s)))
	if err != nil {
		t.Fatalf("quoted-printable body: %v", err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}
