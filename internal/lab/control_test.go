package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/internal/lab"
)

// untilOut runs signet until its stdout contains want (hosts apply a
// control document moments after it is published).
func untilOut(t *testing.T, l *lab.Lab, want string, args ...string) string {
	t.Helper()
	var out, errs string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, out, errs = signet(t, l, args...)
		if strings.Count(out, want) == len(l.Hosts) {
			return out
		}
	}
	t.Fatalf("signet %s: no %q from every host within 20s:\n%s%s", strings.Join(args, " "), want, out, errs)
	return ""
}

func TestLockAndRevokeCommands(t *testing.T) {
	l, err := lab.Start(context.Background(), lab.Options{Dir: t.TempDir(), Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if code, _, errs := signet(t, l, "lock", "--all"); code != 2 || !strings.Contains(errs, "--reason is required") {
		t.Fatalf("lock without a reason: exit %d %s", code, errs)
	}
	code, out, errs := signet(t, l, "lock", "--all", "--reason", "incident 42")
	if code != 0 || out != "L1\n" {
		t.Fatalf("lock: exit %d %q %s", code, out, errs)
	}
	out = untilOut(t, l, "\trefused\t", "ping")
	if !strings.Contains(out, "locked: all actions locked by admin operator at ") || !strings.Contains(out, "incident 42; an admin lifts it with `signet unlock L1`") {
		t.Fatalf("refusal does not say why:\n%s", out)
	}
	if code, out, _ = signet(t, l, "lock", "--list"); code != 0 || !strings.Contains(out, "L1\tall actions\toperator\t") {
		t.Fatalf("lock --list: exit %d %q", code, out)
	}
	if code, out, errs = signet(t, l, "unlock", "L1"); code != 0 {
		t.Fatalf("unlock: exit %d %q %s", code, out, errs)
	}
	untilOut(t, l, "\tok\t", "ping")
	for _, h := range l.Hosts {
		b, err := os.ReadFile(filepath.Join(h.Dir, "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"decision":"lock"`) || !strings.Contains(string(b), `"decision":"unlock"`) {
			t.Fatalf("%s did not audit the lock and the unlock", h.Identity)
		}
	}

	// The lab's operator revokes its own key: its requests are refused,
	// and so is its attempt to take the revocation back.
	pub := filepath.Join(l.Dir, "operator_key.pub")
	if code, out, errs = signet(t, l, "revoke", pub, "--reason", "key left on a train"); code != 0 || !strings.HasPrefix(out, "revoked key SHA256:") {
		t.Fatalf("revoke: exit %d %q %s", code, out, errs)
	}
	out = untilOut(t, l, "\trefused\t", "ping")
	if !strings.Contains(out, "revoked by admin operator at ") || !strings.Contains(out, ": key left on a train") {
		t.Fatalf("refusal does not say why:\n%s", out)
	}
	if code, _, errs = signet(t, l, "revoke", pub, "--undo"); code != 0 {
		t.Fatalf("revoke --undo: exit %d %s", code, errs)
	}
	for _, h := range l.Hosts { // each host refused the revoked admin's document
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			b, _ := os.ReadFile(filepath.Join(h.Dir, "audit.jsonl"))
			if strings.Contains(string(b), `"code":"control_refused"`) && strings.Contains(string(b), "control: signer operator: revoked") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not refuse the revoked admin's document:\n%s", h.Identity, b)
			}
		}
	}
	untilOut(t, l, "\trefused\t", "ping")
}
