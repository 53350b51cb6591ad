package workflows_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/signetbus/signet/bus"
	. "github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// carrierFleet is an in-memory fleet whose caller carries an approved
// plan, as buscaller.Caller does.
type carrierFleet struct {
	*fleettest.Fleet
	approval *bus.ApprovalProof
}

func (c *carrierFleet) PlanApproval() *bus.ApprovalProof     { return c.approval }
func (c *carrierFleet) UsePlanApproval(a *bus.ApprovalProof) { c.approval = a }

// A custom workflow run under an approved plan keeps the approval in its
// state; its resume carries it again. With on_failure rollback it is
// refused before the plan is submitted.
func TestCustomWorkflowResumeKeepsItsApproval(t *testing.T) {
	f := drFleet()
	store := NewMemStore()
	c := &carrierFleet{Fleet: f}
	proof := &bus.ApprovalProof{Subject: bus.ApprovalSubject{Kind: bus.SubjectPlanTree, Reason: "CHG-15", Expires: time.Now().Add(time.Hour).UnixMilli()}}
	o := Options{Workflow: drWorkflow(t), Env: "dr", Vars: map[string]string{"backup": "2024-06-01"}, Yes: true, Caller: c, Store: store, User: "alice@bastion",
		Approve: func(context.Context, *PlanView) error { c.approval = proof; return nil }}
	f.Fail["db1 dbrestore.restore"] = "dbrestore db1: disk full"
	recap, err := RunWorkflow(context.Background(), nil, o)
	if err == nil {
		t.Fatal("the run did not fail")
	}
	delete(f.Fail, "db1 dbrestore.restore")
	again := &carrierFleet{Fleet: f}
	o.Caller, o.Approve = again, nil
	if _, err := ResumeWorkflow(context.Background(), nil, recap.Run, o); err != nil {
		t.Fatal(err)
	}
	if again.approval == nil || again.approval.Subject.Reason != "CHG-15" {
		t.Fatalf("the resumed run carries %+v, want the approval it started with", again.approval)
	}

	w := drWorkflow(t)
	w.OnFailure, w.Rollback = OnFailureRollback, w.Steps[:1]
	o = Options{Workflow: w, Env: "dr", Vars: map[string]string{"backup": "2024-06-01"}, Yes: true, Caller: &carrierFleet{Fleet: drFleet()}, Store: store, User: "alice@bastion",
		Approve: func(context.Context, *PlanView) error { t.Error("the plan was submitted"); return nil }}
	if _, err := RunWorkflow(context.Background(), nil, o); !errors.Is(err, ErrRollbackUnapproved) {
		t.Fatalf("rollback under approval: %v", err)
	}
}
