package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restartWorkflow is a custom workflow of the kind sites write: restart the
// app host by host under maintenance and check it answers with the
// expected version.
const restartWorkflow = `version: 1
name: restart-demo
description: restart the demo app, two hosts at a time
hosts: [role=web]
batch_size: "2"
vars:
  expect: "1.0"
on_failure: hold
steps:
  - name: maintenance_start
    agent: maintenance
    action: start
    params: {duration: 10m, comment: "restart demo"}
    sets: maintenance
  - name: restart
    agent: service
    action: restart
    params: {service: demo, timeout: 20s}
    timeout: 40s
    expect: {active: true}
  - name: health
    agent: health
    action: http
    params: {url: "%s", contains: "{{expect}}", retries: 2, interval: 200ms}
  - name: maintenance_end
    agent: maintenance
    action: end
    clears: maintenance
`

// TestCustomWorkflowCLI runs a custom workflow file through `signet
// workflow run` on the real fleet: every host is restarted in batches and
// audited; a failing check stops the run at the first batch with the
// host, step and finding, and later batches are never touched.
func TestCustomWorkflowCLI(t *testing.T) {
	s := startStage(t)
	file := filepath.Join(t.TempDir(), "restart.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(restartWorkflow, s.HealthURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	sizes := auditSizes(t, s)
	code, out, errOut := signet(t, s, nil, "workflow", "run", file, "--env", s.Env, "--plan")
	if code != 0 || !strings.Contains(out, "restart") {
		t.Fatalf("--plan: exit %d\n%s%s", code, out, errOut)
	}
	if after := auditSizes(t, s); fmt.Sprint(after) != fmt.Sprint(sizes) {
		t.Fatalf("--plan touched hosts: audit logs grew from %v to %v", sizes, after)
	}

	marks := auditMarks(t, s)

	code, out, errOut = signet(t, s, nil, "workflow", "run", file, "--env", s.Env, "--yes", "--output", "json")
	if code != 0 {
		t.Fatalf("workflow run: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["type"] != "run_done" {
		t.Fatalf("last event %q (%v)", lines[len(lines)-1], err)
	}
	for _, h := range s.Hosts {
		recs := readAudit(t, s, h.Identity, marks[h.Identity])
		restarted := 0
		for _, r := range recs {
			if r.Agent == "service" && r.Action == "restart" && r.Decision == "accepted" && r.Status == "ok" {
				restarted++
			}
		}
		if restarted != 1 {
			t.Errorf("%s: %d accepted service.restart records, want 1", h.Identity, restarted)
		}
	}
	if got := s.Serving(testCtx(t)); len(got) != len(s.Hosts) {
		t.Fatalf("after the restarts only %d hosts serve: %v", len(got), got)
	}

	// A check that cannot pass stops the run in the first batch.
	marks = auditMarks(t, s)
	code, _, errOut = signet(t, s, nil, "workflow", "run", file, "--env", s.Env, "--var", "expect=9.9", "--yes")
	if code != 1 || !strings.Contains(errOut, ": health: ") || !strings.Contains(errOut, `"9.9"`) {
		t.Fatalf("failing workflow: exit %d\n%s", code, errOut)
	}
	first := plan(t, s, operator(t, s), "1.0")[0]
	for _, h := range s.Hosts {
		touched := len(readAudit(t, s, h.Identity, marks[h.Identity])) > 0
		inFirst := strings.Contains(" "+strings.Join(first, " ")+" ", " "+h.Identity+" ")
		if !inFirst {
			for _, r := range readAudit(t, s, h.Identity, marks[h.Identity]) {
				if concerns(r, h.Identity) && r.Agent == "service" {
					t.Errorf("%s is not in the first batch but its service was touched: %+v", h.Identity, r)
				}
			}
		} else if !touched {
			t.Errorf("%s is in the first batch but was not touched", h.Identity)
		}
	}
}
