package buscaller

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// PlanInfo names what a plan deploys, for the approver.
type PlanInfo struct {
	Workflow, App, Version, Env string
}

// PlanSubject turns a run's plan into the plan an approver signs under
// the two-person rule: the batches, and every distinct call the engine
// will make, with the hosts it makes it on (a step that runs on each host
// of the batch) or the filter it broadcasts to (as the engine addresses
// it, "agent=AGENT" first). The engine expands parameters the same way
// (workflows.BuildPlan), so each step request equals one of these calls.
// A deploy with on_failure rollback adds each host's rollback steps,
// named rollback_STEP, at the version read from it before approval
// (workflows/deploy approvalrollback.go).
func PlanSubject(pv *workflows.PlanView, info PlanInfo) (*bus.ApprovalPlan, error) {
	p := &bus.ApprovalPlan{Workflow: info.Workflow, App: info.App, Version: info.Version, Env: info.Env}
	index := map[string]int{}
	// onHost is the set of each step's hosts (a 10,000-host plan).
	onHost := map[int]map[string]bool{}
	for _, b := range pv.Batches {
		var batch []string
		for _, h := range b {
			batch = append(batch, h.Host)
			for _, st := range h.Steps {
				agent, action, ok := strings.Cut(st.Call, ".")
				if !ok {
					return nil, fmt.Errorf("plan: step %s calls %q, want AGENT.ACTION", st.Name, st.Call)
				}
				ps := bus.PlanStep{Name: st.Name, Agent: agent, Action: action, Params: st.Params}
				if st.Target == workflows.TargetBroadcast {
					f, err := ParseFilter(append([]string{"agent=" + agent}, st.Filter...))
					if err != nil {
						return nil, fmt.Errorf("plan: step %s: %w", st.Name, err)
					}
					ps.Filter = f
				}
				key, err := json.Marshal(bus.PlanStep{Name: ps.Name, Agent: agent, Action: action, Params: ps.Params, Filter: ps.Filter})
				if err != nil {
					return nil, err
				}
				i, seen := index[string(key)]
				if !seen {
					i = len(p.Steps)
					index[string(key)] = i
					p.Steps = append(p.Steps, ps)
				}
				if st.Target != workflows.TargetBroadcast && !onHost[i][h.Host] {
					if onHost[i] == nil {
						onHost[i] = map[string]bool{}
					}
					onHost[i][h.Host] = true
					p.Steps[i].Hosts = append(p.Steps[i].Hosts, h.Host)
				}
			}
		}
		p.Batches = append(p.Batches, batch)
	}
	return p, nil
}

// SamePlan says how got differs from the approved plan want, or nil when
// they have the same batches and steps (each made by PlanSubject).
func SamePlan(got, want *bus.ApprovalPlan) error {
	gb, _ := json.Marshal(got.Batches)
	wb, _ := json.Marshal(want.Batches)
	if string(gb) != string(wb) {
		return fmt.Errorf("batches %s, approved %s", gb, wb)
	}
	if len(got.Steps) != len(want.Steps) {
		return fmt.Errorf("%d distinct calls, approved %d", len(got.Steps), len(want.Steps))
	}
	for i := range got.Steps {
		gs, _ := json.Marshal(got.Steps[i])
		ws, _ := json.Marshal(want.Steps[i])
		if string(gs) != string(ws) {
			return fmt.Errorf("step %s is %s, approved %s", got.Steps[i].Name, gs, ws)
		}
	}
	return nil
}

// approvalFor is what the query carries of b.Approval: a plan tree's
// header, approvals and the query's own step with its proof; a call the
// plan does not hold gets the header and approvals only (a host that needs
// no approval for it runs it; one that does says it is not a step of the
// plan). Any other approval is carried as it is.
func (b *Caller) approvalFor(q bus.Query) (*bus.ApprovalProof, error) {
	a := b.Approval
	if a == nil || a.Subject.Kind != bus.SubjectPlanTree || a.Subject.Plan == nil {
		return a, nil
	}
	b.treeMu.Lock()
	if b.treeFor != a {
		t, err := bus.NewPlanTree(a.Subject.Plan)
		if err != nil {
			b.treeMu.Unlock()
			return nil, err
		}
		b.tree, b.treeFor = t, a
	}
	t := b.tree
	b.treeMu.Unlock()
	return &bus.ApprovalProof{Subject: a.Subject.Header(), Approvals: a.Approvals,
		Step: t.ProveCall(q.Agent, q.Action, q.Params, q.Targets, q.Filter)}, nil
}

// CarriedApproval returns what a request for q carries of the caller's
// approval (the figures of docs/security.md are measured with it).
func (b *Caller) CarriedApproval(q bus.Query) (*bus.ApprovalProof, error) {
	return b.approvalFor(q)
}

// PlanApproval returns the approved plan the calls carry (a plan or plan
// tree subject), for the run's signed state; nil for none.
func (b *Caller) PlanApproval() *bus.ApprovalProof {
	if a := b.Approval; a != nil && (a.Subject.Kind == bus.SubjectPlanTree || a.Subject.Kind == bus.SubjectPlan) {
		return a
	}
	return nil
}

// UsePlanApproval makes the calls carry a: a resumed run's approval.
func (b *Caller) UsePlanApproval(a *bus.ApprovalProof) { b.Approval = a }

var _ workflows.ApprovalCarrier = (*Caller)(nil)
