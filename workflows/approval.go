package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signetbus/signet/bus"
)

// The two-person rule in a run (docs/security.md, "Two-person rule"): a
// run started under an approved plan keeps the plan's subject and
// approvals in its signed state, and a resumed run carries them again;
// on_failure rollback cannot run under a plan approval.

// ErrRollbackUnapproved refuses on_failure rollback under a plan
// approval.
var ErrRollbackUnapproved = errors.New("workflows: on_failure rollback cannot run under a plan approval")

// ErrApprovalExpired refuses to resume a run whose approval has expired.
var ErrApprovalExpired = errors.New("workflows: the run's approval has expired")

// ApprovalCarrier is a Caller that carries an approved plan on its calls
// (buscaller.Caller): a run records it and a resumed run restores it.
type ApprovalCarrier interface {
	// PlanApproval returns the approved plan the calls carry, or nil.
	PlanApproval() *bus.ApprovalProof
	// UsePlanApproval makes the calls carry a.
	UsePlanApproval(a *bus.ApprovalProof)
}

// RecordApproval keeps the caller's approved plan in the run's state.
func RecordApproval(c Caller, st *RunState) {
	if ac, ok := c.(ApprovalCarrier); ok {
		st.Approval = ac.PlanApproval()
	}
}

// RefuseRollback is the refusal of on_failure rollback when the run asks
// for a plan approval: the version a rollback returns a host to is read
// from the host when the run touches it, after the plan is approved, so
// it cannot be in the plan and the hosts would refuse the rollback.
func RefuseRollback(what string) error {
	return fmt.Errorf("%s: %w: a rollback returns each host to the version the run finds on it when it touches it, which is not known "+
		"when the plan is approved, so the hosts would refuse it; run with on_failure hold (--on-failure hold: a failed host stays "+
		"out of rotation) and roll back with an approved deploy of the previous version", what, ErrRollbackUnapproved)
}

// ResumeApproval makes the caller carry the approval the run st started
// with; a run whose approval has expired is refused, since the hosts would
// refuse its steps.
func ResumeApproval(c Caller, st *RunState, now time.Time) error {
	a := st.Approval
	if a == nil {
		return nil
	}
	if now.UnixMilli() > a.Subject.Expires {
		var names []string
		for i := range a.Approvals {
			if ap, _, err := bus.OpenApproval(&a.Approvals[i]); err == nil {
				names = append(names, ap.Approver)
			}
		}
		return fmt.Errorf("resume %s: %w: approved by %s for requests signed until %s; the hosts would refuse its steps: start a new run with --wait-approval",
			st.ID, ErrApprovalExpired, strings.Join(names, ", "), time.UnixMilli(a.Subject.Expires).UTC().Format(time.RFC3339))
	}
	ac, ok := c.(ApprovalCarrier)
	if !ok {
		return fmt.Errorf("resume %s: the run was approved, and this caller cannot carry approvals", st.ID)
	}
	ac.UsePlanApproval(a)
	return nil
}
