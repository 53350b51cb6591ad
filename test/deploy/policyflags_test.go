package deploy

import (
	"strings"
	"testing"
)

// TestDeployPolicyFlags runs `signet deploy` with the policy flags, which
// override the stage's app file (which sets none): --plan shows the policy
// resolved for the fleet; a bad value is refused before anything runs; and
// a real run with one broken package goes past it within --max-failures 1,
// finishes every other host and prints the policy, the failure and the
// peak in its recap.
func TestDeployPolicyFlags(t *testing.T) {
	s := startStage(t)
	op := operator(t, s)
	batches := plan(t, s, op, "1.1")
	flags := []string{"--max-unavailable", "2", "--max-unavailable-per-zone", "1", "--max-failures", "1", "--on-failure", "stop_now"}

	code, out, errOut := signet(t, s, nil, append([]string{"deploy", "demo", "1.1", "--env", s.Env, "--plan"}, flags...)...)
	if code != 0 {
		t.Fatalf("deploy --plan: exit %d\n%s", code, errOut)
	}
	if want := "policy: max_unavailable 2, max_unavailable_per_zone 1, max_failures 1, on_failure stop_now\n"; !strings.Contains(out, want) {
		t.Errorf("plan lacks %q:\n%s", want, out)
	}

	before := auditSizes(t, s)
	code, _, errOut = signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--max-failures", "lots")
	if code == 0 || !strings.Contains(errOut, "max_failures: want a number of hosts") {
		t.Errorf("--max-failures lots: exit %d, stderr %q; want refused naming max_failures", code, errOut)
	}
	if after := auditSizes(t, s); len(after) != len(before) {
		t.Errorf("a refused deploy touched hosts: audit logs %v -> %v", before, after)
	}
	for h, n := range auditSizes(t, s) {
		if n != before[h] {
			t.Errorf("%s: audit log grew from %d to %d bytes on a refused deploy", h, before[h], n)
		}
	}

	victim := batches[1][0]
	if err := s.BreakPackage(victim, "1.1"); err != nil {
		t.Fatal(err)
	}
	// No cap per zone here: the victim's zone-mate must still be deployed.
	code, out, errOut = signet(t, s, nil, "deploy", "demo", "1.1", "--env", s.Env, "--yes", "--max-unavailable", "2", "--max-failures", "1", "--on-failure", "stop_now")
	if code == 0 {
		t.Fatalf("deploy with %s broken: exit 0, want a failure\n%s", victim, out)
	}
	for _, want := range []string{
		"policy: max_unavailable 2, max_failures 1, on_failure stop_now; 1 failed, at most 2 out of rotation at once",
		"left out of rotation:\n  " + victim + " (",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "1 of at most 1 hosts failed (max_failures)") {
		t.Errorf("stderr %q: want the failure within the budget", errOut)
	}
	for id, st := range fleet(t, s) {
		if id == victim {
			continue
		}
		if st.Installed != "1.1" || st.HAProxy != "UP" || st.Silenced {
			t.Errorf("%s: %s; want 1.1 in service: the run went past %s", id, st, victim)
		}
	}
}
