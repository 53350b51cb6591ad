package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// A deploy of an approved release must plan exactly the deploy that was
// approved: a host that joined since (or another app, version or order)
// stops that deploy before it touches anything.
func TestReleaseDeployMustMatchItsApprovedPlan(t *testing.T) {
	step := func(hosts ...string) workflows.PlanView {
		var b []workflows.PlanHost
		for _, h := range hosts {
			b = append(b, workflows.PlanHost{Host: h, Steps: []workflows.PlanStep{{Name: "update", Call: "package.update",
				Target: workflows.TargetEach, Params: map[string]any{"package": "web", "version": "1.1"}}}})
		}
		return workflows.PlanView{Batches: [][]workflows.PlanHost{b}}
	}
	approvedView := step("web1", "web2")
	d := &releaseDeployer{env: "prod"}
	if hook, err := d.deployApprover(0, "web", "1.1"); err != nil || hook != nil {
		t.Fatalf("hook %v, %v: want none for a release without approval", hook != nil, err)
	}
	d.approved = &bus.ApprovalPlan{Workflow: "release", App: "Spring", Version: "x", Env: "prod"}
	plan, err := planOf(&approvedView, "web", "1.1", "prod")
	if err != nil {
		t.Fatal(err)
	}
	d.approved.Deploys = []bus.ApprovalPlan{*plan}

	hook, err := d.deployApprover(0, "web", "1.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := hook(context.Background(), &approvedView); err != nil {
		t.Fatalf("the approved plan itself: %v", err)
	}
	grown := step("web1", "web2", "web3")
	if err := hook(context.Background(), &grown); err == nil || !strings.Contains(err.Error(), "differs from the approved release's") {
		t.Fatalf("a host joined since: %v", err)
	}
	if _, err := d.deployApprover(0, "web", "1.2"); err == nil {
		t.Fatal("another version passed as the approved deploy")
	}
	if _, err := d.deployApprover(1, "web", "1.1"); err == nil {
		t.Fatal("a second deploy passed the release of one")
	}
}
