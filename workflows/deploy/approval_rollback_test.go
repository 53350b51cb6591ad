package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/signetbus/signet/workflows"
	"github.com/signetbus/signet/workflows/fleettest"
)

// approvedRollbackRun deploys 1.4.2 to fleet9 under an approved plan with
// on_failure rollback, one host per batch, web3's new version failing its
// health check. change, when set, runs once the plan is approved and
// before any host is touched. Every call the run makes is checked as the
// hosts check it (coverCheck).
func approvedRollbackRun(t *testing.T, change func(f *fleettest.Fleet)) (*fleettest.Fleet, *carrier, *workflows.Recap, error) {
	f := fleet9()
	f.Hook = func(ctx context.Context, host string, c workflows.Call) {
		if host == "web3" && c.Agent == "health" {
			f.Update(func(f *fleettest.Fleet) { f.Nodes["web3"].Unhealthy = f.Nodes["web3"].Installed == "1.4.2" })
		}
	}
	f.Available = append(f.Available, "1.4.0")
	var out bytes.Buffer
	o := opts(t, f, workflows.NewMemStore(), &out)
	o.App.BatchSize = "1"
	o.Policy.OnFailure = workflows.OnFailureRollback
	cc := &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}
	hook := approvedHook(cc)
	o.Caller = cc
	o.Approve = func(ctx context.Context, pv *workflows.PlanView) error {
		if err := hook(ctx, pv); err != nil {
			return err
		}
		if change != nil {
			f.Update(change)
		}
		return nil
	}
	recap, err := Run(context.Background(), nil, o)
	return f, cc, recap, err
}

// A plan-approved deploy with on_failure rollback that fails on a host
// rolls back every host it touched under the same approval: each
// rollback call (maintenance, install and check of the previous version)
// is a step of the approved plan, as the hosts check it.
func TestApprovedDeployRollsBackUnderThePlan(t *testing.T) {
	f, cc, recap, err := approvedRollbackRun(t, nil)
	if err == nil || recap == nil || !strings.Contains(err.Error(), "web3: health:") {
		t.Fatalf("error = %v, want web3's health failure", err)
	}
	rolled := 0
	for _, h := range recap.Hosts {
		if h.Status != workflows.HostRolledBack {
			continue
		}
		rolled++
		n := f.Node(h.Host)
		if n.Installed != "1.4.1" || !n.Running || n.Maintenance || f.IsDrained(h.Host) {
			t.Errorf("%s after rollback = %+v drained=%v, want 1.4.1 running, in rotation", h.Host, n, f.IsDrained(h.Host))
		}
	}
	if rolled == 0 || recap.Host("web3").Status != workflows.HostRolledBack {
		t.Fatalf("hosts rolled back: %d, web3 %+v", rolled, recap.Host("web3"))
	}
	if cc.checked.Load() == 0 {
		t.Fatal("no call was checked against the approved plan")
	}
}

// A host whose version changed between the plan and the run has no
// approved rollback: its rollback is refused, naming the host, the
// version the plan approved and the one found; the host is held out of
// rotation and no rollback call is sent to it.
func TestApprovedRollbackRefusedWhenTheVersionChanged(t *testing.T) {
	f, _, recap, err := approvedRollbackRun(t, func(f *fleettest.Fleet) { f.Nodes["web3"].Installed = "1.4.0" })
	if err == nil || recap == nil {
		t.Fatalf("error = %v, want web3's health failure", err)
	}
	hr := recap.Host("web3")
	for _, want := range []string{"web3", "1.4.1", "1.4.0", "not approved"} {
		if !strings.Contains(hr.Rollback, want) {
			t.Errorf("web3's rollback = %q, want it to name %q", hr.Rollback, want)
		}
	}
	if hr.Status != workflows.HostFailed {
		t.Errorf("web3 is %s, want failed (held)", hr.Status)
	}
	if n := f.Node("web3"); n.Installed != "1.4.2" || !n.Maintenance {
		t.Errorf("web3 = %+v, want held at 1.4.2 in maintenance", n)
	}
	updates := 0
	for _, l := range f.HostLog("web3") {
		if strings.HasSuffix(l, "package.update") {
			updates++
		}
	}
	if updates != 1 {
		t.Errorf("web3 got %d package updates, want the deploy's only", updates)
	}
}

// A run approved with on_failure hold has no rollback in its plan: a
// resume asking for on_failure rollback is refused before any call,
// saying why.
func TestResumeRefusesARollbackTheRunWasNotApprovedFor(t *testing.T) {
	f := fleet9()
	f.Fail["web4 package.update"] = "apt: broken package"
	store := workflows.NewMemStore()
	var out bytes.Buffer
	o := opts(t, f, store, &out)
	first := &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}
	o.Caller, o.Approve = first, approvedHook(first)
	recap, err := Run(context.Background(), nil, o)
	if err == nil || recap == nil {
		t.Fatalf("deploy with web4 broken: %v", err)
	}
	calls := len(f.Log())
	o.Caller, o.Approve = &carrier{coverCheck: &coverCheck{Fleet: f, t: t}}, nil
	o.Policy.OnFailure = workflows.OnFailureRollback
	_, err = Resume(context.Background(), nil, recap.Run, o)
	if !errors.Is(err, workflows.ErrRollbackUnapproved) || !strings.Contains(err.Error(), "approved without its rollback") {
		t.Fatalf("resume with rollback of a run approved without: %v", err)
	}
	if len(f.Log()) != calls {
		t.Errorf("the refused resume called the fleet: %q", f.Log()[calls:])
	}
}
