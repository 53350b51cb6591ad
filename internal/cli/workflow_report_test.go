package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/workflows/release/releasetest"
)

// TestWorkflowReportsLikeARelease: `signet workflow run` of a file with
// report: {chat: true} and --ticket posts its start and outcome to the
// environment's chat (a Slack-format webhook receiver) and its log on the
// ticket (a file ticket: appended to FILE.log), on a real two-host lab.
func TestWorkflowReportsLikeARelease(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	chat := releasetest.NewChat(t)
	dir := t.TempDir()
	base, err := os.ReadFile(l.ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "client.yaml")
	c := strings.NewReplacer("key: operator_key", "key: "+filepath.Join(l.Dir, "operator_key"),
		"known_hosts: known_hosts", "known_hosts: "+filepath.Join(l.Dir, "known_hosts")).Replace(string(base))
	os.WriteFile(cfg, []byte(c+"release:\n  chat: {webhook_url: \""+chat.URL()+"\"}\n"), 0o600)
	wf := filepath.Join(dir, "check.yaml")
	os.WriteFile(wf, []byte("version: 1\nname: check\nhosts: [role=web]\nreport: {chat: true}\nsteps:\n  - name: ping\n    agent: rpcutil\n    action: ping\n"), 0o600)
	ticket := filepath.Join(dir, "OPS-9.txt")
	os.WriteFile(ticket, []byte("Monthly check\n"), 0o600)
	env := map[string]string{"SIGNET_CONFIG": cfg, "USER": "operator", "HOME": dir}

	if code, stderr := runMain(t, env, "workflow", "run", wf, "--yes", "--close-ticket"); code != ExitUsage || !strings.Contains(stderr, "--close-ticket needs --ticket") {
		t.Errorf("--close-ticket alone: exit %d, stderr %q", code, stderr)
	}
	if code, stderr := runMain(t, env, "workflow", "run", wf, "--yes", "--ticket", ticket); code != ExitOK {
		t.Fatalf("workflow run: exit %d, stderr %q", code, stderr)
	}
	want := []string{"workflow check started on (no env) by operator", "workflow check complete on (no env)"}
	if got := chat.Texts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chat %q, want %q", got, want)
	}
	b, err := os.ReadFile(ticket + ".log")
	if err != nil {
		t.Fatalf("the ticket got no log: %v", err)
	}
	if strings.Contains(string(b), `"type":`) {
		t.Errorf("the ticket got JSON events, not the text log:\n%s", b)
	}
	for _, w := range []string{"Workflow check complete on (no env).", "Z batch 1/", "web1", "web2", "RECAP"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("ticket log lacks %q:\n%s", w, b)
		}
	}
}
