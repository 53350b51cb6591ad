package agents

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
)

// A workflow run through the real engine and bus: without approval the
// hosts refuse its prod update; with the plan approved once (the hook the
// CLI's --wait-approval uses) every step on every host runs; with an
// approved plan that lacks a step, that step is refused.
func TestWorkflowRunsUnderPlanApproval(t *testing.T) {
	f := newApFleet(t, "")
	client, err := bus.NewClient(bus.ClientConfig{Conn: f.nc, Collective: "t", Signer: f.alice, User: "alice", HostKeys: f.hostKeys})
	must(t, err)
	// Discovery from the registry the hosts keep, not a timed broadcast.
	// The hosts create the registry when they first register: open it
	// once it is there.
	var reg *bus.Registry
	eventually(t, func() error {
		if reg == nil {
			r, err := bus.OpenRegistry(context.Background(), f.nc, "t")
			if err != nil {
				return err
			}
			reg = r
		}
		regs, err := reg.List(context.Background())
		if err == nil && len(regs) < 3 {
			err = fmt.Errorf("%d hosts registered", len(regs))
		}
		return err
	})
	w := &workflows.Workflow{Version: 1, Name: "shipit", Hosts: []string{"agent=package"},
		Batching: workflows.Batching{BatchSize: "1"},
		Steps: []workflows.Step{
			{Name: "update", Agent: "package", Action: "update", Params: map[string]any{"package": "shop", "version": "{{version}}"}},
			{Name: "check", Agent: "package", Action: "status", Params: map[string]any{"package": "{{app}}"}},
		}, Vars: map[string]string{"app": "shop"}}
	run := func(approve func(context.Context, *workflows.PlanView) error, caller *buscaller.Caller) (string, error) {
		var out bytes.Buffer
		_, err := workflows.RunWorkflow(context.Background(), nil, workflows.Options{Workflow: w, Env: "prod", Version: "2.0.0", Yes: true,
			Output: &out, Caller: caller, Store: workflows.NewMemStore(), User: "alice", Approve: approve})
		return out.String(), err
	}
	approver := func(caller *buscaller.Caller, drop string) func(context.Context, *workflows.PlanView) error {
		return func(_ context.Context, pv *workflows.PlanView) error {
			plan, err := buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "workflow shipit", App: "shop", Version: "2.0.0", Env: "prod"})
			if err != nil {
				return err
			}
			if len(plan.Batches) != 2 || len(plan.Steps) != 2 || len(plan.Steps[0].Hosts) != 2 {
				t.Errorf("plan %+v, want 2 batches and 2 steps on 2 hosts", plan)
			}
			var kept []bus.PlanStep
			for _, s := range plan.Steps {
				if s.Name != drop {
					kept = append(kept, s)
				}
			}
			plan.Steps = kept
			sub := &bus.ApprovalSubject{Kind: bus.SubjectPlan, Collective: "t", Requester: ssh.FingerprintSHA256(f.alice.PublicKey()),
				RequesterName: "alice", Reason: "CHG-3", Expires: time.Now().Add(time.Hour).UnixMilli(), Plan: plan}
			caller.Approval = &bus.ApprovalProof{Subject: *sub, Approvals: []bus.SignedApproval{approve(t, f.carol, "carol", sub, time.Hour)}}
			return nil
		}
	}

	out, err := run(nil, &buscaller.Caller{Client: client, Registry: reg})
	if err == nil || !strings.Contains(out, "needs 1 approval from role approver, has 0") {
		t.Fatalf("unapproved run: %v\n%s", err, out)
	}

	before := f.runs.Load()
	caller := &buscaller.Caller{Client: client, Registry: reg}
	out, err = run(approver(caller, ""), caller)
	if err != nil {
		t.Fatalf("approved run: %v\n%s", err, out)
	}
	if got := f.runs.Load() - before; got != 4 {
		t.Fatalf("%d actions ran, want 4 (two steps on web1 and web2)\n%s", got, out)
	}

	// The update step dropped from the approved plan: refused on the
	// first host, and the run stops there.
	caller = &buscaller.Caller{Client: client, Registry: reg}
	out, err = run(approver(caller, "update"), caller)
	if err == nil || !strings.Contains(out, "is not a step of the approved workflow shipit of shop 2.0.0") {
		t.Fatalf("run with a step outside the plan: %v\n%s", err, out)
	}
}
