package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/broker/brokertest"
	"github.com/signetbus/signet/internal/testio"
)

// TestLogrotateReopensAuditLog runs the packaged logrotate config with the
// real logrotate against a real signetd: logrotate renames the audit log
// and signals signetd as `systemctl reload signetd` does (the unit's
// ExecReload sends SIGHUP); signetd then writes to a new 0600 log, and no
// audit line is lost across the rotation.
func TestLogrotateReopensAuditLog(t *testing.T) {
	need(t, "logrotate")
	if testing.Short() {
		t.Skip("skipped in -short: builds signetd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "signetd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/signetd")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := brokertest.Start(t)
	audit := filepath.Join(dir, "log", "audit.jsonl")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("authorized_keys", "# nobody\n")
	write("policy.yaml", "rules: []\n")
	conf := write("signetd.yaml", fmt.Sprintf("identity: web1\ncollective: rot\nnats: {urls: [%q]}\nhost_key: %s\nauthorized_keys: %s\npolicy: %s\naudit_log: %s\nflood_records: 100000\n",
		s.ClientURL(), filepath.Join(dir, "keys", "host_key"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "policy.yaml"), audit))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := exec.CommandContext(ctx, bin, "--config", conf)
	stderr := &testio.Buffer{}
	d.Stderr = stderr
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); d.Wait() }()

	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Each message that is not a frame is audited as "dropped": one line.
	sent := 0
	send := func() {
		sent++
		if err := nc.Publish(bus.NodeSubject("rot", "web1"), []byte(fmt.Sprintf("not a frame %d", sent))); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
	}
	// lines counts the audit records in p. Checkpoint lines (the audit
	// chain signs one when it opens a new file after a rotation) are not
	// messages this test sent.
	lines := func(p string) int {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0
		}
		n := 0
		for _, l := range bytes.Split(b, []byte("\n")) {
			if len(l) > 0 && !bytes.Contains(l, []byte(`"decision":"checkpoint"`)) {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, ok func() bool, retry func()) {
		t.Helper()
		for i := 0; i < 200 && !ok(); i++ {
			if retry != nil {
				retry()
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !ok() {
			t.Fatalf("timed out waiting for %s; signetd said:\n%s", what, stderr.String())
		}
	}
	// Until signetd has subscribed, messages are lost: send until one is
	// audited, then count from there.
	waitFor("signetd to audit a message", func() bool { return lines(audit) > 0 }, send)
	for n := -1; n != lines(audit); { // until the messages in flight are written
		n = lines(audit)
		time.Sleep(300 * time.Millisecond)
	}
	sent = lines(audit)
	send()
	send()
	waitFor("the audit lines", func() bool { return lines(audit) == sent }, nil)

	// The shipped config, with this test's log path, and the signal that
	// `systemctl reload signetd` sends in place of systemctl.
	b, err := os.ReadFile("../../packaging/logrotate/signetd")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(b), "/var/log/signet/audit.jsonl", audit)
	cfg = regexp.MustCompile(`(?s)postrotate.*endscript`).ReplaceAllString(cfg, fmt.Sprintf("postrotate\n\t\tkill -HUP %d\n\tendscript", d.Process.Pid))
	rot := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(rot, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	before := sent
	run(t, "logrotate", "-f", "-s", filepath.Join(dir, "logrotate.state"), rot)
	if got := lines(audit + ".1"); got != before {
		t.Fatalf("the rotated log has %d lines, want the %d written before", got, before)
	}
	waitFor("signetd to reopen the audit log", func() bool { _, err := os.Stat(audit); return err == nil }, nil)
	send()
	send()
	waitFor("the lines after the rotation", func() bool { return lines(audit)+lines(audit+".1") == sent }, nil)
	if lines(audit) == 0 {
		t.Errorf("signetd still writes to the rotated log")
	}
	if fi, err := os.Stat(audit); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new audit log: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
}
