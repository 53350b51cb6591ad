package releasetest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The release tests drive these servers with the real clients; this test
// proves the refusals those clients never provoke, so that a fake that
// accepted anything could not pass for one.
func TestServersRefuse(t *testing.T) {
	jira := NewJira(t, JiraOptions{Key: "OPS-1", Auth: "Bearer right", Summary: "s"})
	gh := NewGitHub(t, GitHubOptions{Path: "/repos/o/r/issues/1", Token: "right"})
	chat := NewChat(t)
	tests := []struct {
		name, method, url, auth, ctype, body string
		want                                 int
		wantBody                             string
	}{
		{"jira wrong auth", "GET", jira.URL + "/rest/api/2/issue/OPS-1", "Bearer wrong", "", "", 401, "not authenticated"},
		{"jira other issue", "GET", jira.URL + "/rest/api/2/issue/OPS-2", "Bearer right", "", "", 404, "does not exist"},
		{"jira comment not json", "POST", jira.URL + "/rest/api/2/issue/OPS-1/comment", "Bearer right", "text/plain", `{"body":"x"}`, 415, "application/json"},
		{"jira comment bad json", "POST", jira.URL + "/rest/api/2/issue/OPS-1/comment", "Bearer right", "application/json", `{"body":`, 400, "parsing JSON"},
		{"jira unknown transition", "POST", jira.URL + "/rest/api/2/issue/OPS-1/transitions", "Bearer right", "application/json", `{"transition":{"id":"99"}}`, 400, "'99' is not valid"},
		{"github wrong token", "GET", gh.URL + "/repos/o/r/issues/1", "Bearer wrong", "", "", 401, "Bad credentials"},
		{"github bad state", "PATCH", gh.URL + "/repos/o/r/issues/1", "Bearer right", "application/json", `{"state":"merged"}`, 422, "Validation Failed"},
		{"github other issue", "GET", gh.URL + "/repos/o/r/issues/2", "Bearer right", "", "", 404, "Not Found"},
		{"chat wrong path", "POST", chat.Server.URL + "/hooks/T000/B000/guess", "", "application/json", `{"text":"x"}`, 404, "no_service"},
		{"chat get", "GET", chat.URL(), "", "", "", 404, "no_service"},
		{"chat not json", "POST", chat.URL(), "", "text/plain", `{"text":"x"}`, 400, "invalid_payload"},
		{"chat no text", "POST", chat.URL(), "", "application/json", `{"txt":"x"}`, 400, "invalid_payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", tt.auth)
			req.Header.Set("Accept", "application/vnd.github+json")
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, b, tt.want, tt.wantBody)
			}
		})
	}
	if n := len(jira.Comments()) + len(jira.Transitions()) + len(gh.Comments()) + len(chat.Texts()); n != 0 || gh.State() != "open" {
		t.Errorf("%d things recorded and issue %s after refusals, want none and open", n, gh.State())
	}
}

func TestChatSetStatus(t *testing.T) {
	chat := NewChat(t)
	chat.SetStatus(http.StatusGone)
	resp, err := http.Post(chat.URL(), "application/json", strings.NewReader(`{"text":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone || !strings.Contains(string(b), "channel_is_archived") || len(chat.Texts()) != 0 {
		t.Errorf("%d %s, %d texts; want 410 channel_is_archived and nothing recorded", resp.StatusCode, b, len(chat.Texts()))
	}
}

// dialMail connects to m with go-smtp's client and does STARTTLS,
// trusting only m.CAFile.
func dialMail(t *testing.T, m *Mail) *smtp.Client {
	t.Helper()
	pem, err := os.ReadFile(m.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	c, err := smtp.DialStartTLS(m.Addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestMailRefusesMailBeforeAuth: after STARTTLS but before AUTH, MAIL FROM
// is refused (go-smtp's 502 for ErrAuthRequired), and so is a wrong
// password (454: go-smtp's code for an error from the SASL server).
func TestMailRefusesMailBeforeAuth(t *testing.T) {
	m := NewMail(t, "u", "p", true)
	c := dialMail(t, m)
	var se *smtp.SMTPError
	if err := c.Mail("a@example.test", nil); !errors.As(err, &se) || se.Code != 502 || se.Message != "Please authenticate first" {
		t.Errorf("MAIL before AUTH: %v, want 502 Please authenticate first", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); !errors.As(err, &se) || se.Code != 454 || se.Message != "invalid username or password" {
		t.Errorf("AUTH with a wrong password: %v, want 454 invalid username or password", err)
	}
	if len(m.Messages()) != 0 {
		t.Error("message recorded")
	}
}

// TestMailRecords sends one message after STARTTLS and AUTH and reads it
// back: envelope, user, TLS, Subject and the decoded quoted-printable body.
func TestMailRecords(t *testing.T) {
	m := NewMail(t, "u", "p", true)
	c := dialMail(t, m)
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatal(err)
	}
	data := "From: a@example.test\r\nSubject: [signet] hello\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nsoft=\r\nbreak =C3=BC\r\nline two\r\n"
	if err := c.SendMail("a@example.test", []string{"b@example.test", "c@example.test"}, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	msgs := m.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	got := msgs[0]
	if got.From != "a@example.test" || strings.Join(got.To, ",") != "b@example.test,c@example.test" || got.User != "u" || !got.TLS {
		t.Errorf("recorded %+v", got)
	}
	if s := got.Subject(t); s != "[signet] hello" {
		t.Errorf("subject %q", s)
	}
	if b := got.Body(t); b != "softbreak ü\nline two\n" {
		t.Errorf("body %q", b)
	}
}
