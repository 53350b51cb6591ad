package deploy

// The release's outside world. Jira and a chat service cannot run here, so
// jiraServer and chatServer are httptest servers on 127.0.0.1 speaking
// Jira REST API v2 (issue, comment, transitions) and the Slack incoming
// webhook JSON; they check the credentials and record what they receive.
// The mail server is real: go-smtp, with STARTTLS (a certificate made
// here) and PLAIN auth.

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
	"fmt"
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

	"github.com/signetbus/signet/internal/stage"
)

const (
	jiraKey     = "OPS-7"
	jiraUser    = "release-bot@example.test"
	jiraToken   = "jira-t0ken-for-tests"
	jiraSummary = "Release demo 1.1 to the lab"
	jiraDoneID  = "31"
	smtpUser    = "signet"
	smtpPass    = "smtp-pa55-for-tests"
	chatPath    = "/hooks/T000/B000/s3cr3t"
)

// jiraServer serves one issue through the Jira REST API v2 endpoints a
// release uses, and records comments and transitions.
type jiraServer struct {
	*httptest.Server
	t *testing.T

	mu          sync.Mutex
	comments    []string
	transitions []string
}

func newJiraServer(t *testing.T) *jiraServer {
	s := &jiraServer{t: t}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jiraServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(jiraUser+":"+jiraToken)) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errorMessages": []string{"You are not authenticated."}})
		return
	}
	issue := "/rest/api/2/issue/" + jiraKey
	switch {
	case r.Method == http.MethodGet && r.URL.Path == issue:
		writeJSON(w, http.StatusOK, map[string]any{"key": jiraKey, "fields": map[string]any{
			"summary": jiraSummary, "description": "# deploy in this order\n\ndemo 1.1\n"}})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/comment":
		var in struct {
			Body string `json:"body"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.comments = append(s.comments, in.Body)
		writeJSON(w, http.StatusCreated, map[string]any{"id": fmt.Sprint(len(s.comments)), "body": in.Body})
	case r.Method == http.MethodGet && r.URL.Path == issue+"/transitions":
		writeJSON(w, http.StatusOK, map[string]any{"transitions": []map[string]string{{"id": "11", "name": "In Progress"}, {"id": jiraDoneID, "name": "Done"}}})
	case r.Method == http.MethodPost && r.URL.Path == issue+"/transitions":
		var in struct {
			Transition struct {
				ID string `json:"id"`
			} `json:"transition"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		s.transitions = append(s.transitions, in.Transition.ID)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"errorMessages": []string{"Issue does not exist or you do not have permission to see it."}})
	}
}

func (s *jiraServer) snapshot() (comments, transitions []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...), append([]string(nil), s.transitions...)
}

// chatServer is a Slack-compatible incoming webhook recording messages in
// the order received.
type chatServer struct {
	*httptest.Server
	mu    sync.Mutex
	texts []string
}

func newChatServer(t *testing.T) *chatServer {
	s := &chatServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Text *string `json:"text"`
		}
		if r.Method != http.MethodPost || r.URL.Path != chatPath {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil || in.Text == nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.texts = append(s.texts, *in.Text)
		s.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

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
	if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(v) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errorMessages": []string{"expected a JSON body"}})
		return false
	}
	return true
}

// mailServer is a real SMTP server (go-smtp) on 127.0.0.1 that requires
// STARTTLS before PLAIN auth and auth before MAIL, recording what arrives.
type mailServer struct {
	Addr   string
	CAFile string

	mu    sync.Mutex
	mails []receivedMail
}

type receivedMail struct {
	From string
	To   []string
	Data string
	TLS  bool
}

func newMailServer(t *testing.T) *mailServer {
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
	ms := &mailServer{Addr: ln.Addr().String(), CAFile: ca}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: ms, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.AllowInsecureAuth = false
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
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
	srv    *mailServer
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != smtpUser || pass != smtpPass {
			return errors.New("invalid username or password")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
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
	s.srv.mails = append(s.srv.mails, receivedMail{From: s.from, To: s.to, Data: string(b), TLS: tlsOn})
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
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signet test smtp"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// mailParts splits a received message into its Subject and decoded body.
func mailParts(t *testing.T, data string) (subject, body string) {
	t.Helper()
	head, raw, ok := strings.Cut(data, "\r\n\r\n")
	if !ok {
		t.Fatalf("mail without a header/body separator:\n%s", data)
	}
	for _, l := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Subject: "); ok {
			subject = v
		}
	}
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("quoted-printable body: %v", err)
	}
	return subject, strings.ReplaceAll(string(b), "\r\n", "\n")
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

// addReleaseConfig appends the release: section to the stage's client
// config: Jira with basic auth from a token file, the chat webhook URL from
// a file, and mail through the SMTP server with STARTTLS, PLAIN auth and
// its CA.
func addReleaseConfig(t *testing.T, s *stage.Stage, jira *jiraServer, chat *chatServer, mail *mailServer) {
	t.Helper()
	cfg := fmt.Sprintf(`# added by test/deploy
release:
  jira:
    url: %q
    user: %q
    token_file: %q
    done_transition: Done
  chat:
    webhook_url_file: %q
  mail:
    addr: %q
    from: signet@example.test
    to: [releases@example.test]
    username: %q
    password_file: %q
    ca_file: %q
`, jira.URL, jiraUser, writeSecret(t, "jira.token", jiraToken), writeSecret(t, "chat.webhook", chat.URL+chatPath),
		mail.Addr, smtpUser, writeSecret(t, "smtp.password", smtpPass), mail.CAFile)
	f, err := os.OpenFile(s.Lab.ClientConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRelease runs `signet release jira:OPS-7 --env lab --yes` in-process,
// the ticket asking for demo 1.1. First with the 1.1 package broken on the
// third host: the release aborts; the first batch is at 1.1, the broken
// host held, later hosts untouched; the ticket gets a comment carrying the
// error and stays open (no transition); chat says started, deploying,
// FAILED with the error; the mail carries the log and the error. Then,
// the package fixed, the same release again: every host serves 1.1 and is
// UP with no silence; chat says started, deploying, deployed, complete, in
// order; the mail carries the deploy's log; the ticket gets the log and is
// moved through Done.
func TestRelease(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	a := loadApp(t, s)
	batches := plan(t, s, op, "1.1")
	victim := batches[1][0]
	jira, chat, mail := newJiraServer(t), newChatServer(t), newMailServer(t)
	addReleaseConfig(t, s, jira, chat, mail)

	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	marks := auditMarks(t, s)
	code, out, errOut := signet(t, s, nil, "release", "jira:"+jiraKey, "--env", s.Env, "--yes")
	wantErr := "release failed after 0 of 1 apps: deploy demo 1.1 (1 of 1): " + victim + ": update: "
	if code != 1 || !strings.Contains(errOut, wantErr) {
		t.Fatalf("failing release: exit %d, stderr:\n%s\nwant exit 1 and %q\nstdout:\n%s", code, errOut, wantErr, out)
	}
	for _, h := range batches[0] {
		if st := fleet(t, s)[h]; st.Installed != "1.1" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s (first batch): %s, want 1.1 in service", h, st)
		}
	}
	wantHeld(t, s, victim, "1.0")
	for _, h := range batches[2] {
		wantUntouched(t, s, a, marks, h, "1.0")
	}
	comments, transitions := jira.snapshot()
	if len(comments) != 1 || !strings.HasPrefix(comments[0], "Release FAILED on lab: deploy demo 1.1 (1 of 1): "+victim+": update: ") ||
		!strings.Contains(comments[0], "The ticket stays open.") || !strings.Contains(comments[0], "{noformat}") {
		t.Errorf("jira comments after the failure: %q, want one carrying the error and the log", comments)
	}
	if len(transitions) != 0 {
		t.Errorf("jira transitions after the failure: %v, want none (the ticket stays open)", transitions)
	}
	texts := chat.Texts()
	wantChat := []string{
		"release started on lab by operator: " + jiraSummary + " (1 apps: demo 1.1)",
		"deploying demo 1.1 (1 of 1) on lab",
		"release FAILED on lab: " + jiraSummary + ": deploy demo 1.1 (1 of 1): " + victim + ": update: ",
	}
	if len(texts) != len(wantChat) {
		t.Fatalf("chat after the failure: %q, want %d messages", texts, len(wantChat))
	}
	for i, w := range wantChat {
		if !strings.HasPrefix(texts[i], w) {
			t.Errorf("chat message %d: %q, want it to start with %q", i+1, texts[i], w)
		}
	}
	mails := mail.Mails()
	if len(mails) != 1 || !mails[0].TLS || mails[0].From != "signet@example.test" {
		t.Fatalf("mails after the failure: %+v, want one, over STARTTLS", mails)
	}
	subject, body := mailParts(t, mails[0].Data)
	if subject != "[signet] release FAILED on lab: "+jiraSummary {
		t.Errorf("mail subject %q", subject)
	}
	for _, w := range []string{"ERROR: deploy demo 1.1 (1 of 1): " + victim + ": update: ", "  demo: batch 1/3: " + strings.Join(batches[0], " "),
		"the ticket stays open", "not deployed: demo 1.1"} {
		if !strings.Contains(body, w) {
			t.Errorf("failure mail lacks %q:\n%s", w, body)
		}
	}

	// The package fixed, the same release again.
	if err := s.FixPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = signet(t, s, nil, "release", "jira:"+jiraKey, "--env", s.Env, "--yes")
	if code != 0 {
		t.Fatalf("release: exit %d\n%s\n%s", code, out, errOut)
	}
	wantDeployed(t, s, "1.1")
	wantEveryStepAudited(t, s, a, marks)
	texts = chat.Texts()[len(wantChat):]
	wantChat = []string{
		"release started on lab by operator: " + jiraSummary + " (1 apps: demo 1.1)",
		"deploying demo 1.1 (1 of 1) on lab",
		"deployed demo 1.1 (1 of 1) on lab",
		"release complete on lab: " + jiraSummary + " (1 apps deployed)",
	}
	if strings.Join(texts, "\n") != strings.Join(wantChat, "\n") {
		t.Errorf("chat: %q, want %q", texts, wantChat)
	}
	mails = mail.Mails()
	if len(mails) != 2 || !mails[1].TLS || len(mails[1].To) != 1 || mails[1].To[0] != "releases@example.test" {
		t.Fatalf("mails: %+v, want a second one to releases@example.test over STARTTLS", mails)
	}
	subject, body = mailParts(t, mails[1].Data)
	if subject != "[signet] release complete on lab: "+jiraSummary {
		t.Errorf("mail subject %q", subject)
	}
	for _, w := range []string{"release complete: 1 apps deployed", "  demo: RECAP", "  demo: " + victim + " ", "deployed demo 1.1 (1 of 1) on lab"} {
		if !strings.Contains(body, w) {
			t.Errorf("mail lacks %q:\n%s", w, body)
		}
	}
	comments, transitions = jira.snapshot()
	if len(comments) != 2 || !strings.HasPrefix(comments[1], "Release complete on lab: all apps deployed.") || !strings.Contains(comments[1], "  demo: RECAP") {
		t.Errorf("jira comments: %q, want a second one with the log", comments)
	}
	if len(transitions) != 1 || transitions[0] != jiraDoneID {
		t.Errorf("jira transitions: %v, want [%s] (Done)", transitions, jiraDoneID)
	}
}
