package release

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestReporterLogsARunIntoItsTicket: a custom workflow (the monthly DR
// restore) reports like a release: chat at the start and the end, the log
// mailed, the log posted on its Jira ticket (real-protocol fakes from
// releasetest), and the ticket closed after a success when asked.
func TestReporterLogsARunIntoItsTicket(t *testing.T) {
	f := newFixture(t, threeApps)
	rep := &Reporter{What: "workflow dr-restore", Env: "dr", User: "alice", Chat: f.opts.Chat, Mail: f.opts.Mail,
		Ticket: f.opts.Ticket, CloseTicket: true}
	if err := rep.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const log = "2026-11-29T10:00:00Z db1: restore ok\n2026-11-29T10:00:05Z db1: verify ok\n"
	if err := rep.Finish(context.Background(), log, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"workflow dr-restore started on dr by alice", "workflow dr-restore complete on dr"}
	if got := f.chat.Texts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chat %q, want %q", got, want)
	}
	m := f.mail.Messages()
	if len(m) != 1 || m[0].Subject(t) != "[signet] workflow dr-restore complete on dr" || !strings.Contains(m[0].Body(t), "db1: verify ok") {
		t.Fatalf("mail: %+v", m)
	}
	c := f.jira.Comments()
	if len(c) != 1 || !strings.HasPrefix(c[0], "Workflow dr-restore complete on dr.") || !strings.Contains(c[0], "{noformat}") ||
		!strings.Contains(c[0], "db1: restore ok") {
		t.Fatalf("ticket comments %q", c)
	}
	if tr := f.jira.Transitions(); len(tr) != 1 {
		t.Errorf("ticket transitions %q, want it closed", tr)
	}
}

// TestReporterFailure: a failed run is reported everywhere with its
// error, the ticket stays open, and a channel that fails does not stop
// the others; the later ones say it failed.
func TestReporterFailure(t *testing.T) {
	f := newFixture(t, threeApps)
	f.chat.SetStatus(500)
	rep := &Reporter{What: "workflow dr-restore", Env: "dr", User: "alice", Chat: f.opts.Chat, Mail: f.opts.Mail,
		Ticket: f.opts.Ticket, CloseTicket: true}
	runErr := errors.New("db1: restore: checksum mismatch")
	err := rep.Finish(context.Background(), "db1: restore failed\n", runErr)
	if err == nil || !strings.Contains(err.Error(), "chat:") {
		t.Fatalf("Finish: %v, want the chat failure", err)
	}
	m := f.mail.Messages()
	if len(m) != 1 || m[0].Subject(t) != "[signet] workflow dr-restore FAILED on dr" || !strings.Contains(m[0].Body(t), "ERROR while reporting: chat:") {
		t.Fatalf("mail: %+v", m)
	}
	c := f.jira.Comments()
	if len(c) != 1 || !strings.Contains(c[0], "Workflow dr-restore FAILED on dr: db1: restore: checksum mismatch.") {
		t.Fatalf("ticket comments %q", c)
	}
	if tr := f.jira.Transitions(); len(tr) != 0 {
		t.Errorf("a failed run closed its ticket: %q", tr)
	}
}
