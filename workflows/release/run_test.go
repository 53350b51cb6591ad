package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signetbus/signet/workflows/release/releasetest"
)

// The Run tests wire a real Jira-format ticket server, a Slack-format
// webhook receiver and a real SMTP server (package releasetest) to a fake
// Deployer that records its calls.

// fakeDeployer records refreshes and deploys, and the last chat message
// seen when each deploy started, to prove chat is told before each app.
type fakeDeployer struct {
	chat       *releasetest.Chat
	failApp    string
	failErr    error
	refreshErr error
	during     func(app string) // runs inside Deploy

	mu       sync.Mutex
	calls    []string
	lastChat []string
}

func (d *fakeDeployer) Refresh(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "refresh")
	return d.refreshErr
}

func (d *fakeDeployer) Deploy(ctx context.Context, app, version string, log io.Writer) error {
	d.mu.Lock()
	d.calls = append(d.calls, "deploy "+app+" "+version)
	if d.chat != nil {
		texts := d.chat.Texts()
		last := ""
		if len(texts) > 0 {
			last = texts[len(texts)-1]
		}
		d.lastChat = append(d.lastChat, last)
	}
	d.mu.Unlock()
	fmt.Fprintf(log, "batch 1/2: host1 %s %s installed\nbatch 2/2: host2 ", app, version)
	fmt.Fprintf(log, "%s %s installed", app, version) // no final newline: Flush writes it
	if d.during != nil {
		d.during(app)
	}
	if app == d.failApp {
		return d.failErr
	}
	return nil
}

func (d *fakeDeployer) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

const (
	jiraToken = "jira-T0KEN-value"
	smtpPass  = "smtp-PASS-value"
)

type fixture struct {
	jira   *releasetest.Jira
	chat   *releasetest.Chat
	mail   *releasetest.Mail
	deploy *fakeDeployer
	out    *bytes.Buffer
	opts   Options
}

// newFixture sets up a release of web 1.0, api 2.0 and db 3.0 from Jira
// issue OPS-7, with chat and mail, answered "yes".
func newFixture(t *testing.T, description string) *fixture {
	t.Helper()
	f := &fixture{
		jira: releasetest.NewJira(t, releasetest.JiraOptions{
			Key: "OPS-7", Auth: releasetest.Basic("bot@example.test", jiraToken), Summary: "Spring release", Description: description,
		}),
		chat: releasetest.NewChat(t),
		mail: releasetest.NewMail(t, "signet", smtpPass, true),
		out:  &bytes.Buffer{},
	}
	f.deploy = &fakeDeployer{chat: f.chat}
	cfg := Config{
		Jira: JiraConfig{URL: f.jira.URL, User: "bot@example.test", TokenFile: releasetest.WriteSecret(t, "jira.token", jiraToken)},
		Chat: ChatConfig{WebhookURLFile: releasetest.WriteSecret(t, "chat.url", f.chat.URL())},
		Mail: mailConfig(t, f.mail),
	}
	tk, err := OpenTicket("jira:OPS-7", cfg.TicketConfig())
	if err != nil {
		t.Fatal(err)
	}
	chat, err := NewNotifier(cfg.Chat, nil)
	if err != nil {
		t.Fatal(err)
	}
	mailer, err := NewMailer(cfg.Mail, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	f.opts = Options{
		Ticket: tk, Chat: chat, Mail: mailer, Deployer: f.deploy,
		In: strings.NewReader("yes\n"), Out: f.out, Env: "prod", User: "alice",
		Now: func() time.Time { clock = clock.Add(time.Second); return clock },
	}
	return f
}

const threeApps = "# spring release\nweb 1.0\napi=2.0\n\ndb 3.0\n"

// noSecrets fails if a credential shows in any text the release produced.
func noSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range []string{jiraToken, smtpPass, releasetest.ChatSecret} {
		if strings.Contains(text, s) {
			t.Errorf("%s contains a secret (%s...)", where, s[:4])
		}
	}
}

var stamped = regexp.MustCompile(`(?m)^2025-03-01T10:00:\d\dZ `)

func TestRunHappyPath(t *testing.T) {
	f := newFixture(t, threeApps)
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}

	wantCalls := []string{"refresh", "deploy web 1.0", "deploy api 2.0", "deploy db 3.0"}
	if got := f.deploy.Calls(); strings.Join(got, "|") != strings.Join(wantCalls, "|") {
		t.Errorf("deployer calls %q, want %q", got, wantCalls)
	}
	wantChat := []string{
		"release started on prod by alice: Spring release (3 apps: web 1.0, api 2.0, db 3.0)",
		"deploying web 1.0 (1 of 3) on prod",
		"deployed web 1.0 (1 of 3) on prod",
		"deploying api 2.0 (2 of 3) on prod",
		"deployed api 2.0 (2 of 3) on prod",
		"deploying db 3.0 (3 of 3) on prod",
		"deployed db 3.0 (3 of 3) on prod",
		"release complete on prod: Spring release (3 apps deployed)",
	}
	if got := f.chat.Texts(); strings.Join(got, "\n") != strings.Join(wantChat, "\n") {
		t.Errorf("chat messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantChat, "\n"))
	}
	for i, last := range f.deploy.lastChat {
		if !strings.HasPrefix(last, "deploying ") {
			t.Errorf("deploy %d started after chat %q, want a deploying message", i+1, last)
		}
	}

	comments := f.jira.Comments()
	if len(comments) != 1 {
		t.Fatalf("%d jira comments, want 1", len(comments))
	}
	c := comments[0]
	for _, want := range []string{"Release complete on prod", "{noformat}", "started by alice",
		"  db: batch 2/2: host2 db 3.0 installed", "release complete: 3 apps deployed", "log mailed"} {
		if !strings.Contains(c, want) {
			t.Errorf("comment lacks %q:\n%s", want, c)
		}
	}
	if n := len(stamped.FindAllString(c, -1)); n < 15 {
		t.Errorf("comment has %d timestamped lines, want every line stamped:\n%s", n, c)
	}
	if got := f.jira.Transitions(); len(got) != 1 || got[0] != "31" {
		t.Errorf("transitions %q, want the Done transition (31)", got)
	}

	mails := f.mail.Messages()
	if len(mails) != 1 {
		t.Fatalf("%d mails, want 1", len(mails))
	}
	if !strings.Contains(mails[0].Data, "Subject: [signet] release complete on prod: Spring release") {
		t.Errorf("mail subject:\n%s", mails[0].Data)
	}
	body := mails[0].Body(t)
	for _, want := range []string{"release \"Spring release\" on prod started by alice", "deployed api 2.0 (2 of 3)", "release complete: 3 apps deployed"} {
		if !strings.Contains(body, want) {
			t.Errorf("mailed log lacks %q:\n%s", want, body)
		}
	}
	out := f.out.String()
	if !strings.Contains(out, "  2. api 2.0") || !strings.Contains(out, "type yes to deploy to prod") || !strings.Contains(out, "ticket closed") {
		t.Errorf("operator output:\n%s", out)
	}
	for where, text := range map[string]string{"comment": c, "mail": mails[0].Data, "output": out, "chat": strings.Join(f.chat.Texts(), "\n")} {
		noSecrets(t, where, text)
	}
}

func TestRunOperatorDeclines(t *testing.T) {
	for _, answer := range []string{"no\n", "\n", "", "YES\n", "y\n", "yes please\n", "yess"} {
		t.Run(fmt.Sprintf("%q", answer), func(t *testing.T) {
			f := newFixture(t, threeApps)
			f.opts.In = strings.NewReader(answer)
			err := Run(context.Background(), f.opts)
			if !errors.Is(err, ErrAborted) {
				t.Fatalf("error %v, want ErrAborted", err)
			}
			if c := f.deploy.Calls(); len(c) != 0 {
				t.Errorf("deployer called: %q", c)
			}
			if n := len(f.chat.Texts()) + len(f.jira.Comments()) + len(f.jira.Transitions()) + len(f.mail.Messages()); n != 0 {
				t.Errorf("%d things posted, want none", n)
			}
		})
	}
}

func TestRunAcceptsYesWithoutNewline(t *testing.T) {
	f := newFixture(t, "web 1.0")
	f.opts.In = strings.NewReader("  yes")
	if err := Run(context.Background(), f.opts); err != nil {
		t.Fatal(err)
	}
	if c := f.deploy.Calls(); len(c) != 2 {
		t.Errorf("calls %q", c)
	}
}

func TestRunSecondOfThreeFails(t *testing.T) {
	f := newFixture(t, threeApps)
	deployErr := errors.New("health check failed on host2: HTTP 503")
	f.deploy.failApp, f.deploy.failErr = "api", deployErr
	err := Run(context.Background(), f.opts)

	if !errors.Is(err, deployErr) {
		t.Fatalf("error %v, want the deploy error", err)
	}
	var re *Error
	if !errors.As(err, &re) || len(re.Deployed) != 1 || len(re.Remaining) != 2 || re.Remaining[0].App != "api" || len(re.Report) != 0 {
		t.Fatalf("error %#v, want web deployed and api, db remaining", err)
	}
	if want := "release failed after 1 of 3 apps: deploy api 2.0 (2 of 3): health check failed"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want prefix %q", err, want)
	}
	wantCalls := []string{"refresh", "deploy web 1.0", "deploy api 2.0"}
	if got := f.deploy.Calls(); strings.Join(got, "|") != strings.Join(wantCalls, "|") {
		t.Errorf("calls %q, want %q (db must not be deployed)", got, wantCalls)
	}
	if got := f.jira.Transitions(); len(got) != 0 {
		t.Errorf("ticket transitioned %q, want it open", got)
	}
	texts := f.chat.Texts()
	if len(texts) != 5 || !strings.HasPrefix(texts[3], "deploying api") {
		t.Fatalf("chat messages %q", texts)
	}
	last := texts[4]
	for _, want := range []string{"release FAILED on prod: Spring release: deploy api 2.0", "HTTP 503", "not deployed: api 2.0, db 3.0", "```"} {
		if !strings.Contains(last, want) {
			t.Errorf("chat failure lacks %q:\n%s", want, last)
		}
	}
	comments := f.jira.Comments()
	if len(comments) != 1 {
		t.Fatalf("%d comments, want 1", len(comments))
	}
	for _, want := range []string{"Release FAILED on prod", "The ticket stays open", "ERROR: deploy api 2.0 (2 of 3): health check failed", "deployed web 1.0", "  api: batch 1/2: host1 api 2.0 installed", "log mailed"} {
		if !strings.Contains(comments[0], want) {
			t.Errorf("comment lacks %q:\n%s", want, comments[0])
		}
	}
	if strings.Contains(comments[0], "deploying db") {
		t.Error("log says db was deployed")
	}
	mails := f.mail.Messages()
	if len(mails) != 1 || !strings.Contains(mails[0].Data, "Subject: [signet] release FAILED on prod") {
		t.Fatalf("mails %v", mails)
	}
	if body := mails[0].Body(t); !strings.Contains(body, "ERROR: deploy api 2.0") {
		t.Errorf("mailed log lacks the error:\n%s", body)
	}
}

// downAddr returns a loopback address where nothing listens.
func downAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRunMailDownDoesNotHideTheDeployError(t *testing.T) {
	f := newFixture(t, threeApps)
	mcfg := mailConfig(t, f.mail)
	mcfg.Addr = downAddr(t)
	mailer, err := NewMailer(mcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.opts.Mail = mailer
	deployErr := errors.New("package web 1.0 not found in repository")
	f.deploy.failApp, f.deploy.failErr = "web", deployErr

	err = Run(context.Background(), f.opts)
	if !errors.Is(err, deployErr) {
		t.Fatalf("error %v, want the deploy error", err)
	}
	var re *Error
	if !errors.As(err, &re) || len(re.Report) != 1 || !strings.Contains(re.Report[0].Error(), "connect to "+mcfg.Addr) {
		t.Fatalf("error %v, want the mail failure reported too", err)
	}
	for _, want := range []string{"deploy web 1.0", "not found in repository", "reporting also failed: mail the log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Chat and the ticket still get the log, which says the mail failed.
	for where, text := range map[string]string{"chat": lastOf(f.chat.Texts()), "comment": lastOf(f.jira.Comments())} {
		if !strings.Contains(text, "not found in repository") || !strings.Contains(text, "ERROR while reporting: mail the log") {
			t.Errorf("%s lacks the deploy error or the mail failure:\n%s", where, text)
		}
	}
	if got := f.jira.Transitions(); len(got) != 0 {
		t.Errorf("ticket transitioned %q", got)
	}
}

func TestRunMailDownAfterAllDeployed(t *testing.T) {
	f := newFixture(t, threeApps)
	mcfg := mailConfig(t, f.mail)
	mcfg.Addr = downAddr(t)
	f.opts.Mail, _ = NewMailer(mcfg, nil)

	err := Run(context.Background(), f.opts)
	var re *Error
	if !errors.As(err, &re) || len(re.Remaining) != 0 || len(re.Deployed) != 3 {
		t.Fatalf("error %v, want all deployed and an *Error", err)
	}
	if !strings.HasPrefix(err.Error(), "release: all 3 apps deployed but the release did not finish: mail the log") {
		t.Errorf("error %q", err)
	}
	if got := f.jira.Transitions(); len(got) != 0 {
		t.Errorf("ticket closed despite the error: %q", got)
	}
	if c := lastOf(f.jira.Comments()); !strings.Contains(c, "Release FAILED") || !strings.Contains(c, "all 3 apps deployed") {
		t.Errorf("comment:\n%s", c)
	}
}

func TestRunChatDownStopsBeforeTouchingHosts(t *testing.T) {
	f := newFixture(t, threeApps)
	f.chat.SetStatus(500)
	err := Run(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "chat: webhook: post message: unexpected status 500") {
		t.Fatalf("error %v, want the chat failure", err)
	}
	if c := f.deploy.Calls(); len(c) != 0 {
		t.Errorf("deployer called %q", c)
	}
	if len(f.mail.Messages()) != 1 || len(f.jira.Comments()) != 1 || len(f.jira.Transitions()) != 0 {
		t.Errorf("mails %d comments %d transitions %d, want 1 1 0", len(f.mail.Messages()), len(f.jira.Comments()), len(f.jira.Transitions()))
	}
}

func TestRunRefreshFails(t *testing.T) {
	f := newFixture(t, threeApps)
	f.deploy.refreshErr = errors.New("apt-get update exited with status 100")
	err := Run(context.Background(), f.opts)
	if !errors.Is(err, f.deploy.refreshErr) {
		t.Fatalf("error %v", err)
	}
	if c := f.deploy.Calls(); len(c) != 1 {
		t.Errorf("calls %q, want only the refresh", c)
	}
	if c := lastOf(f.jira.Comments()); !strings.Contains(c, "refresh package repositories: apt-get update exited") {
		t.Errorf("comment:\n%s", c)
	}
}

func TestRunReportsEvenWhenCancelled(t *testing.T) {
	f := newFixture(t, threeApps)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.deploy.during = func(app string) { cancel() }
	f.deploy.failApp, f.deploy.failErr = "web", context.Canceled

	err := Run(ctx, f.opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if len(f.jira.Comments()) != 1 || len(f.mail.Messages()) != 1 || !strings.Contains(lastOf(f.chat.Texts()), "FAILED") {
		t.Errorf("report incomplete after cancel: comments %d mails %d chat %q", len(f.jira.Comments()), len(f.mail.Messages()), f.chat.Texts())
	}
	if c := f.deploy.Calls(); len(c) != 2 {
		t.Errorf("calls %q, want refresh and web only", c)
	}
}

func TestRunParseErrorPostsNothing(t *testing.T) {
	f := newFixture(t, "web 1.0\napi\ndb 3.0\n")
	err := Run(context.Background(), f.opts)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.Contains(err.Error(), "manifest line 2") {
		t.Fatalf("error %v, want a parse error on line 2", err)
	}
	if n := len(f.deploy.Calls()) + len(f.chat.Texts()) + len(f.jira.Comments()) + len(f.mail.Messages()); n != 0 {
		t.Errorf("%d side effects, want none", n)
	}
}

func TestRunFileTicketWritesLogBeside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "release.md")
	os.WriteFile(path, []byte("# Hotfix\nweb 1.0.1\n"), 0o644)
	tk, err := OpenTicket(path, TicketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDeployer{}
	var out bytes.Buffer
	err = Run(context.Background(), Options{Ticket: tk, Deployer: d, Yes: true, Out: &out, Env: "dev", User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path + ".log")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Release complete on dev", "is a file: the log is written to " + path + ".log", "chat is not configured", "mail is not configured", "deployed web 1.0.1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s.log lacks %q:\n%s", path, want, b)
		}
	}
	if strings.Contains(out.String(), "type yes") {
		t.Error("prompted despite Yes")
	}
	// A file cannot be closed: the log must not then claim it was.
	if strings.Contains(out.String(), "ticket closed") {
		t.Errorf("the log says a file ticket was closed:\n%s", out.String())
	}
}

func TestRunGitHubTicket(t *testing.T) {
	srv := releasetest.NewGitHub(t, releasetest.GitHubOptions{Path: "/repos/acme/ops/issues/5", Token: "gh-token", Title: "Release 5", Body: "web 2.0\n"})
	tk, err := OpenTicket("github:acme/ops#5", TicketConfig{GitHub: GitHubConfig{URL: srv.URL, TokenFile: releasetest.WriteSecret(t, "gh", "gh-token")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), Options{Ticket: tk, Deployer: &fakeDeployer{}, Yes: true, Env: "dr", User: "carol"}); err != nil {
		t.Fatal(err)
	}
	comments, state := srv.Comments(), srv.State()
	if state != "closed" || len(comments) != 1 || !strings.Contains(comments[0], "```\n") || !strings.Contains(comments[0], "deployed web 2.0 (1 of 1) on dr") {
		t.Errorf("state %q comments %q", state, comments)
	}
}

func TestRunRejectsOptions(t *testing.T) {
	tk := &fileTicket{path: "/nonexistent"}
	d := &fakeDeployer{}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no ticket", Options{Deployer: d, Yes: true, Env: "dev", User: "u"}, "no ticket"},
		{"no deployer", Options{Ticket: tk, Yes: true, Env: "dev", User: "u"}, "no deployer"},
		{"no input", Options{Ticket: tk, Deployer: d, Env: "dev", User: "u"}, "no input"},
		{"no env", Options{Ticket: tk, Deployer: d, Yes: true, User: "u"}, "empty environment"},
		{"no user", Options{Ticket: tk, Deployer: d, Yes: true, Env: "dev"}, "empty user"},
		{"env with newline", Options{Ticket: tk, Deployer: d, Yes: true, Env: "prod\nfake line", User: "u"}, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}
