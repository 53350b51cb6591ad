package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
	"github.com/signetbus/signet/workflows/release"
)

// A release under the two-person rule (docs/security.md, "Two-person
// rule"): before anything is posted or deployed, every deploy of the
// manifest is planned as `signet deploy --plan` would (discovery and the
// preflight ping: read-only), and the release becomes one plan subject,
// the repository refresh and each deploy's plan, approved once. Every
// request of the release then carries it. Each deploy, when its turn
// comes, must plan exactly what was approved; if the fleet changed in
// between (a host joined or left), that deploy stops before touching
// anything and says so.

// errPlanned stops a deploy once its plan is made, for the release plan.
var errPlanned = errors.New("planned")

// planDeploy returns the approval plan of one deploy of the release.
func (d *releaseDeployer) planDeploy(ctx context.Context, app, version string) (*bus.ApprovalPlan, error) {
	file, err := appFile(d.ws.cfg, app)
	if err != nil {
		return nil, err
	}
	var plan *bus.ApprovalPlan
	_, err = deploy.Run(ctx, nil, deploy.Options{AppFile: file, Version: version, Env: d.env, Yes: true, Output: io.Discard,
		Format: "text", Caller: d.ws.caller, Store: d.ws.store, User: d.ws.cfg.User, Log: d.g.logger(), Provenance: d.prov,
		Approve: func(_ context.Context, pv *workflows.PlanView) error {
			p, err := planOf(pv, app, version, d.env)
			if err != nil {
				return err
			}
			plan = p
			return errPlanned
		}})
	if !errors.Is(err, errPlanned) {
		if err == nil {
			err = errors.New("the deploy made no plan")
		}
		return nil, fmt.Errorf("plan %s %s: %w", app, version, err)
	}
	return plan, nil
}

// releasePlan is the release's approval plan: the refresh, then each
// deploy of the manifest in order.
func (d *releaseDeployer) releasePlan(ctx context.Context, m *release.Manifest) (*bus.ApprovalPlan, error) {
	f, err := buscaller.ParseFilter(d.refreshFilter())
	if err != nil {
		return nil, err
	}
	plan := &bus.ApprovalPlan{Workflow: "release", App: m.Title, Version: release.ManifestDigest(m.Items), Env: d.env,
		Steps: []bus.PlanStep{{Name: "refresh", Agent: "package", Action: "refresh", Filter: f}}}
	for _, it := range m.Items {
		p, err := d.planDeploy(ctx, it.App, it.Version)
		if err != nil {
			return nil, err
		}
		plan.Deploys = append(plan.Deploys, *p)
	}
	return plan, nil
}

// approve is the release's approval hook: plan every deploy, submit the
// release plan, wait for its approvals; then every request carries them.
func (d *releaseDeployer) approve(ctx context.Context, af *approvalFlags, m *release.Manifest) error {
	plan, err := d.releasePlan(ctx, m)
	if err != nil {
		return err
	}
	proof, err := d.g.submitPlan(ctx, d.ws, af, plan)
	if err != nil {
		return err
	}
	d.approved = plan
	d.ws.caller.Approval = proof
	return nil
}

// deployApprover returns the Approve hook of the i-th deploy of an
// approved release (nil without approval): the deploy's plan must be the
// approved one.
func (d *releaseDeployer) deployApprover(i int, app, version string) (func(context.Context, *workflows.PlanView) error, error) {
	if d.approved == nil {
		return nil, nil
	}
	if i >= len(d.approved.Deploys) || d.approved.Deploys[i].App != app || d.approved.Deploys[i].Version != version {
		return nil, fmt.Errorf("deploy %s %s is not deploy %d of the approved release", app, version, i+1)
	}
	want := &d.approved.Deploys[i]
	return func(_ context.Context, pv *workflows.PlanView) error {
		got, err := planOf(pv, app, version, d.env)
		if err != nil {
			return err
		}
		if err := buscaller.SamePlan(got, want); err != nil {
			return withHint(fmt.Errorf("%s %s: the plan differs from the approved release's (%w): nothing of this deploy ran", app, version, err),
				"the fleet changed since the release was approved: check the hosts, then submit the release again for approval")
		}
		return nil
	}, nil
}

// planOf is the approval plan of one deploy of a release.
func planOf(pv *workflows.PlanView, app, version, env string) (*bus.ApprovalPlan, error) {
	return buscaller.PlanSubject(pv, buscaller.PlanInfo{Workflow: "deploy", App: app, Version: version, Env: env})
}
