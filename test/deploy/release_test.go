package deploy

// The release's outside world comes from package releasetest. Jira and a
// chat service cannot run here, so its Jira and Chat are httptest servers
// on 127.0.0.1 speaking Jira REST API v2 (issue, comment, transitions) and
// the Slack incoming webhook JSON; they check the credentials and record
// what they receive. Its mail server is real: go-smtp, with STARTTLS (a
// certificate made in the test) and PLAIN auth.

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/stage"
	"github.com/signetbus/signet/workflows/release/releasetest"
)

const (
	jiraKey     = "OPS-7"
	jiraUser    = "release-bot@example.test"
	jiraToken   = "jira-t0ken-for-tests"
	jiraSummary = "Release demo 1.1 to the lab"
	jiraDoneID  = "31"
	smtpUser    = "signet"
	smtpPass    = "smtp-pa55-for-tests"
)

// addReleaseConfig appends the release: section to the stage's client
// config: Jira with basic auth from a token file, the chat webhook URL from
// a file, and mail through the SMTP server with STARTTLS, PLAIN auth and
// its CA.
func addReleaseConfig(t *testing.T, s *stage.Stage, jira *releasetest.Jira, chat *releasetest.Chat, mail *releasetest.Mail) {
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
`, jira.URL, jiraUser, releasetest.WriteSecret(t, "jira.token", jiraToken), releasetest.WriteSecret(t, "chat.webhook", chat.URL()),
		mail.Addr, smtpUser, releasetest.WriteSecret(t, "smtp.password", smtpPass), mail.CAFile)
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
	jira := releasetest.NewJira(t, releasetest.JiraOptions{
		Key: jiraKey, Auth: releasetest.Basic(jiraUser, jiraToken),
		Summary: jiraSummary, Description: "# deploy in this order\n\ndemo 1.1\n",
	})
	chat, mail := releasetest.NewChat(t), releasetest.NewMail(t, smtpUser, smtpPass, true)
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
	comments, transitions := jira.Comments(), jira.Transitions()
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
	mails := mail.Messages()
	if len(mails) != 1 || !mails[0].TLS || mails[0].From != "signet@example.test" {
		t.Fatalf("mails after the failure: %+v, want one, over STARTTLS", mails)
	}
	subject, body := mails[0].Subject(t), mails[0].Body(t)
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
	mails = mail.Messages()
	if len(mails) != 2 || !mails[1].TLS || len(mails[1].To) != 1 || mails[1].To[0] != "releases@example.test" {
		t.Fatalf("mails: %+v, want a second one to releases@example.test over STARTTLS", mails)
	}
	subject, body = mails[1].Subject(t), mails[1].Body(t)
	if subject != "[signet] release complete on lab: "+jiraSummary {
		t.Errorf("mail subject %q", subject)
	}
	for _, w := range []string{"release complete: 1 apps deployed", "  demo: RECAP", "  demo: " + victim + " ", "deployed demo 1.1 (1 of 1) on lab"} {
		if !strings.Contains(body, w) {
			t.Errorf("mail lacks %q:\n%s", w, body)
		}
	}
	comments, transitions = jira.Comments(), jira.Transitions()
	if len(comments) != 2 || !strings.HasPrefix(comments[1], "Release complete on lab: all apps deployed.") || !strings.Contains(comments[1], "  demo: RECAP") {
		t.Errorf("jira comments: %q, want a second one with the log", comments)
	}
	if len(transitions) != 1 || transitions[0] != jiraDoneID {
		t.Errorf("jira transitions: %v, want [%s] (Done)", transitions, jiraDoneID)
	}
}
