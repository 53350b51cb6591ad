package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// A rollback under an approved plan (docs/security.md, "Resume and
// rollback"): before the plan is submitted the run reads each host's
// installed version with a read-only package status, and the plan holds
// each host's rollback steps back to that version, expanded exactly as the
// rollback will expand them. At run time a host whose version is another
// has no approved rollback: the engine refuses it (workflows
// ApprovedPreviousVar) and the host is held.

// readPrevious reads the version each host would be rolled back to: what
// the observer would record as {{previous}} (observe.go) if it touched the
// host now. Every host must answer.
func (o *Options) readPrevious(ctx context.Context, a *App, hosts []string) (map[string]string, error) {
	refuse := func(detail string) error {
		return fmt.Errorf("deploy %s: %w: reading the installed version of %s before the plan is approved: %s; the version read is "+
			"the one each host's approved rollback returns it to: keep %s.status out of approval scopes, or run with on_failure hold "+
			"(--on-failure hold)", a.Name, workflows.ErrRollbackUnapproved, a.Package, detail, "package")
	}
	res, err := o.Caller.Call(ctx, workflows.Call{Agent: "package", Action: "status", Params: map[string]any{"package": a.Package},
		Hosts: hosts, Timeout: observeTimeout})
	if err != nil && len(res) == 0 {
		return nil, refuse(err.Error())
	}
	prev := map[string]string{}
	var bad []string
	got := map[string]bool{}
	for _, r := range res {
		if !slices.Contains(hosts, r.Host) || got[r.Host] {
			continue
		}
		got[r.Host] = true
		switch {
		case r.NoResponse:
			bad = append(bad, r.Host+": no response within "+observeTimeout.String())
		case !r.OK:
			bad = append(bad, r.Host+": "+workflows.FailureDetail("package", r))
		default:
			ob := Observed{}
			ob.Installed, _ = r.Data["installed"].(bool)
			ob.Version, _ = r.Data["version"].(string)
			ob.Previous, _ = r.Data["previous"].(string)
			prev[r.Host] = ob.previousFor(o.Version)
		}
	}
	for _, h := range hosts {
		if !got[h] {
			bad = append(bad, h+": no response within "+observeTimeout.String())
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, refuse(strings.Join(bad, "; "))
	}
	return prev, nil
}

// previousFor is the version a host observed as ob goes back to when a
// deploy of version fails: the installed one, or, at the version already,
// the one before it ("" for none).
func (ob Observed) previousFor(version string) string {
	switch {
	case ob.Installed && ob.Version != version:
		return ob.Version
	case ob.Installed && ob.Previous != "" && ob.Previous != version:
		return ob.Previous
	}
	return ""
}

// addRollbackPlan adds to pv each host's rollback back to prev[host]: the
// rollback steps, named RollbackStepPrefix+NAME, whose calls differ from
// the host's deploy steps (the others are already in the plan). A host
// with no previous version has no rollback.
func (a *App) addRollbackPlan(pv *workflows.PlanView, hosts []workflows.Host, vars, prev map[string]string) error {
	steps := a.RollbackSteps()
	for i := range steps {
		steps[i].Name = RollbackStepPrefix + steps[i].Name
	}
	for bi := range pv.Batches {
		for hi := range pv.Batches[bi] {
			ph := &pv.Batches[bi][hi]
			p := prev[ph.Host]
			if p == "" {
				continue
			}
			hv := maps.Clone(vars)
			hv["previous"] = p
			if len(a.SHA256) > 0 {
				hv[VarSHA256] = a.SHA256[vars["version"]]
				hv[VarPreviousSHA256] = a.SHA256[p]
			}
			rv, err := workflows.BuildPlan("", [][]string{{ph.Host}}, hosts, a.ZoneFact, steps, workflows.RollbackVars(hv))
			if err != nil {
				return fmt.Errorf("plan the rollback of %s: %w", ph.Host, err)
			}
			have := map[string]bool{}
			for _, s := range ph.Steps {
				have[planCallKey(s)] = true
			}
			for _, s := range rv.Batches[0][0].Steps {
				if !have[planCallKey(s)] {
					ph.Steps = append(ph.Steps, s)
				}
			}
		}
	}
	return nil
}

// planCallKey is a plan step's call: what it runs, not its name.
func planCallKey(s workflows.PlanStep) string {
	b, _ := json.Marshal(struct {
		Call   string         `json:"call"`
		Target string         `json:"target"`
		Filter []string       `json:"filter"`
		Params map[string]any `json:"params"`
	}{s.Call, s.Target, s.Filter, s.Params})
	return string(b)
}

// approvedPrevious returns the version the approved plan a rolls each of
// its hosts back to ("" for a host without a rollback), or nil when the
// run carries no approved plan.
func approvedPrevious(c workflows.Caller) map[string]string {
	ac, ok := c.(workflows.ApprovalCarrier)
	if !ok {
		return nil
	}
	a := ac.PlanApproval()
	if a == nil || a.Subject.Plan == nil {
		return nil
	}
	return rollbackVersions(a.Subject.Plan)
}

// rollbackVersions reads the rollback versions of plan p (PlanSubject of
// a plan with addRollbackPlan's steps): every host of its batches, ""
// for a host without a rollback.
func rollbackVersions(p *bus.ApprovalPlan) map[string]string {
	out := map[string]string{}
	for _, b := range p.Batches {
		for _, h := range b {
			out[h] = ""
		}
	}
	for _, s := range p.Steps {
		if s.Name != RollbackStepPrefix+StepUpdate {
			continue
		}
		v, _ := s.Params["version"].(string)
		for _, h := range s.Hosts {
			out[h] = v
		}
	}
	return out
}

// plansRollback says whether the approved plan a holds rollback steps.
func plansRollback(a *bus.ApprovalProof) bool {
	if a.Subject.Plan == nil {
		return false
	}
	for _, s := range a.Subject.Plan.Steps {
		if strings.HasPrefix(s.Name, RollbackStepPrefix) {
			return true
		}
	}
	return false
}
