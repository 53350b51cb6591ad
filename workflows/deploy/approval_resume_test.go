package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
)

// carrier is a coverCheck that carries an approved plan, as the bus
// caller does: a resumed run gives it the approval its state recorded.
type carrier struct {
	*coverCheck
	approval *bus.ApprovalProof
}

func (c *carrier) PlanApproval() *bus.ApprovalProof { return c.approval }

func (c *carrier) UsePlanApproval(a *bus.ApprovalProof) {
	tree, err := bus.NewPlanTree(a.Subject.Plan)
	if err != nil {
		c.t.Fatal(err)
	}
	c.approval, c.sub, c.tree = a, &a.Subject, tree
}

func approvedHook(cc *carrier) func(context.Context, *workflows.PlanView) error {
	return func(_ context.Context, pv *workflows.PlanView) error {
		plan, err := buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: "app", Version: "1.4.2", Env: "prod"})
		if err != nil {
			return err
		}
		sub := &bus.ApprovalSubject{Collective: "t", Requester: "SHA256:alice", Reason: "r", Expires: time.Now().Add(time.Hour).UnixMilli()}
		if err := sub.SetPlan(plan); err != nil {
			return err
		}
		cc.UsePlanApproval(&bus.ApprovalProof{Subject: *sub})
		return nil
	}
}

// A plan-approved deploy that fails half way keeps its approval in its
// signed state; --resume carries it again, and every call of the resumed
// run (observation, steps, load balancers) is covered by the plan
// approved at the start. Once the approval has expired the resume is
// refused before anything is called.
func TestResumeCarriesTheApprovedPlan(t *testing.T) {
	f := fleet9()
	f.Fail["web4 package.update"] = "apt: broken package"
	store := workflows.NewMemStore()
	var out bytes.Buffer
	o := opts(t, f, store, &out)
	first := &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}
	o.Caller, o.Approve = first, approvedHook(first)
	recap, err := Run(context.Background(), nil, o)
	if err == nil || recap == nil || recap.Status != workflows.StatusFailed {
		t.Fatalf("deploy with web4 broken: %v (%+v)", err, recap)
	}
	st, err := store.Load(context.Background(), recap.Run)
	if err != nil || st.Approval == nil || st.Approval.Subject.Root == nil {
		t.Fatalf("the failed run's state keeps no approval: %v", err)
	}

	delete(f.Fail, "web4 package.update")
	again := &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}
	o.Caller, o.Approve = again, nil
	recap, err = Resume(context.Background(), nil, recap.Run, o)
	if err != nil || recap.Status != workflows.StatusDone {
		t.Fatalf("resume: %v\n%s", err, out.String())
	}
	if again.approval == nil || again.checked.Load() == 0 {
		t.Fatalf("the resumed run carried no approval (%d calls checked)", again.checked.Load())
	}

	// The same failure, then the approval expires before the resume.
	f = fleet9()
	f.Fail["web4 package.update"] = "apt: broken package"
	o = opts(t, f, store, &out)
	first = &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}
	o.Caller, o.Approve = first, approvedHook(first)
	recap, _ = Run(context.Background(), nil, o)
	st, err = store.Load(context.Background(), recap.Run)
	if err != nil {
		t.Fatal(err)
	}
	st.Approval.Subject.Expires = time.Now().Add(-time.Minute).UnixMilli()
	if err := store.Save(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	calls := len(f.Log())
	o.Caller, o.Approve = &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}, nil
	if _, err := Resume(context.Background(), nil, recap.Run, o); !errors.Is(err, workflows.ErrApprovalExpired) {
		t.Fatalf("resume after the approval expired: %v", err)
	}
	if len(f.Log()) != calls {
		t.Errorf("the refused resume called the fleet: %q", f.Log()[calls:])
	}
}

// on_failure rollback under a plan approval: before the plan is
// submitted the run reads each host's installed version (a read-only
// package status, after the preflight ping) and the plan holds each
// host's rollback back to it. A host whose version cannot be read makes
// the run refuse before the plan is submitted: its rollback could not be
// approved.
func TestApprovedDeployPlansTheRollback(t *testing.T) {
	f := fleet9()
	f.Nodes["web5"].Installed = "1.4.0"
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.Policy.OnFailure = workflows.OnFailureRollback
	var plan *bus.ApprovalPlan
	stop := errors.New("not approved")
	o.Approve = func(_ context.Context, pv *workflows.PlanView) error {
		var err error
		plan, err = buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: "app", Version: "1.4.2", Env: "prod"})
		if err != nil {
			return err
		}
		return stop
	}
	if _, err := Run(context.Background(), nil, o); !errors.Is(err, stop) {
		t.Fatalf("deploy with a refusing hook: %v", err)
	}
	if plan == nil {
		t.Fatal("the plan was not submitted")
	}
	for _, l := range f.Log() {
		if !strings.HasSuffix(l, "package.status") {
			t.Errorf("called %q before approval", l)
		}
	}
	back := map[string]string{}
	for _, s := range plan.Steps {
		if s.Name == RollbackStepPrefix+StepUpdate {
			for _, h := range s.Hosts {
				back[h] = s.Params["version"].(string)
			}
		}
	}
	if len(back) != 9 || back["web1"] != "1.4.1" || back["web5"] != "1.4.0" {
		t.Errorf("rollback versions in the plan: %v, want every host back to 1.4.1, web5 to 1.4.0", back)
	}

	f = fleet9()
	f.Fail["web2 package.status"] = "dpkg: database locked"
	o = opts(t, f, workflows.NewMemStore(), &out)
	o.Policy.OnFailure = workflows.OnFailureRollback
	o.Approve = func(context.Context, *workflows.PlanView) error {
		t.Error("the plan was submitted for approval")
		return nil
	}
	_, err := Run(context.Background(), nil, o)
	if !errors.Is(err, workflows.ErrRollbackUnapproved) || !strings.Contains(err.Error(), "web2") || !strings.Contains(err.Error(), "--on-failure hold") {
		t.Fatalf("rollback under approval with web2 unread: %v", err)
	}
}
