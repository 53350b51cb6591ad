package prom

import (
	"fmt"
	"maps"
	"os/exec"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/metrics"
)

// TestAlertRulesExampleIsValid checks docs/metrics-alerts.yml with
// Prometheus' own promtool: the example rules load and their expressions
// parse.
func TestAlertRulesExampleIsValid(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; CI installs it)")
	}
	out, err := exec.Command(promtool, "check", "rules", "../../../docs/metrics-alerts.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

type nopAuditor struct{}

func (nopAuditor) Audit(*bus.AuditRecord) error { return nil }

// TestLabelsOnlyNameOfferedActions: anyone on the broker can send frames
// naming any agent; only agent.action pairs the host offers, from a
// request that authenticated, become label values, so a flood of made-up
// names cannot grow the series.
func TestLabelsOnlyNameOfferedActions(t *testing.T) {
	h := NewHost(metrics.HostOptions{Known: func(agent, action string) bool { return agent == "rpcutil" && action == "ping" }})
	a := h.Auditor(nopAuditor{})
	for i := range 1000 {
		a.Audit(&bus.AuditRecord{Agent: fmt.Sprintf("agent%d", i), Action: "x", Decision: bus.DecisionRefused, Code: bus.CodeUntrusted})
		a.Audit(&bus.AuditRecord{Principal: "alice", Agent: fmt.Sprintf("agent%d", i), Action: "x", Decision: bus.DecisionRefused, Code: bus.CodeUnknownAgent})
	}
	a.Audit(&bus.AuditRecord{Principal: "alice", Agent: "rpcutil", Action: "ping", Decision: bus.DecisionStarted})
	a.Audit(&bus.AuditRecord{Principal: "alice", Agent: "rpcutil", Action: "ping", Decision: bus.DecisionAccepted, Status: bus.StatusOK, DurationMS: 3})
	a.Audit(&bus.AuditRecord{Decision: bus.DecisionSuppressed, Suppressed: map[string]int{bus.CodeBadSignature: 40, bus.CodeMalformed: 2}})
	fams, err := h.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "signetd_requests_total" && f.GetName() != "signetd_refusals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"signetd_requests_total action= agent= decision=refused":             2000,
		"signetd_requests_total action=ping agent=rpcutil decision=accepted": 1,
		"signetd_requests_total action= agent= decision=suppressed":          42,
		"signetd_refusals_total reason=untrusted":                            1000,
		"signetd_refusals_total reason=unknown_agent":                        1000,
		"signetd_refusals_total reason=bad_signature":                        40,
		"signetd_refusals_total reason=malformed":                            2,
	}
	if !maps.Equal(got, want) {
		t.Errorf("series:\n got %v\nwant %v", got, want)
	}
}
