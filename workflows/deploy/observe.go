package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/signetbus/signet/workflows"
)

// observer looks at a host before the deploy touches it, so that a run,
// fresh or resumed, does what the host's real state needs rather than what
// the record says.
type observer struct {
	app     *App
	caller  workflows.Caller
	version string
	// silent are the hosts the run found not answering: their HAProxy is
	// not asked (or waited for) again.
	silent *workflows.Silent
	// digests are the artifacts' SHA-256 by version (the run's).
	digests map[string]string
	// approvedPrevious, under an approved plan with on_failure rollback,
	// is the version the plan rolls each host back to
	// (approvalrollback.go); nil otherwise.
	approvedPrevious map[string]string
}

const observeTimeout = 30 * time.Second

// Observed is what the deploy saw on a host.
type Observed struct {
	Installed   bool
	Version     string
	Previous    string
	Drained     bool
	Maintenance bool
	// AllLBs is set when every HAProxy host asked answered: what was
	// observed is what every load balancer holds.
	AllLBs bool
}

// observe asks the package, HAProxy (broadcast) and maintenance plugins.
func (o *observer) observe(ctx context.Context, host string) (Observed, error) {
	var ob Observed
	one := func(agent, action string, params map[string]any) (workflows.Result, error) {
		res, err := o.caller.Call(ctx, workflows.Call{Agent: agent, Action: action, Params: params, Hosts: []string{host}, Timeout: observeTimeout})
		if err != nil {
			return workflows.Result{}, fmt.Errorf("%s %s: %w", agent, action, err)
		}
		for _, r := range res {
			if r.Host != host {
				continue
			}
			if r.NoResponse {
				return r, fmt.Errorf("%s %s: no response within %s", agent, action, observeTimeout)
			}
			if !r.OK {
				return r, fmt.Errorf("%s %s: %s", agent, action, workflows.FailureDetail(agent, r))
			}
			return r, nil
		}
		return workflows.Result{}, fmt.Errorf("%s %s: no response within %s", agent, action, observeTimeout)
	}
	r, err := one("package", "status", map[string]any{"package": o.app.Package})
	if err != nil {
		return ob, err
	}
	ob.Installed, _ = r.Data["installed"].(bool)
	ob.Version, _ = r.Data["version"].(string)
	ob.Previous, _ = r.Data["previous"].(string)

	r, err = one("maintenance", "status", map[string]any{})
	if err != nil {
		return ob, err
	}
	ob.Maintenance, _ = r.Data["active"].(bool)

	server, err := workflows.Expand(o.app.HAProxy.Server, map[string]string{"identity": host})
	if err != nil {
		return ob, err
	}
	filter := append([]string{"agent=haproxy"}, o.app.HAProxy.LBFilter...)
	call := workflows.Call{Agent: "haproxy", Action: "status", Filter: filter,
		Params: map[string]any{"backend": o.app.HAProxy.Backend, "server": server}, Timeout: observeTimeout}
	if o.silent != nil && o.silent.Len() > 0 {
		// Ask the load balancers that answer, not the ones found dead.
		lbs, err := o.caller.Discover(ctx, filter)
		if err != nil {
			return ob, fmt.Errorf("haproxy status: discover %s: %w", strings.Join(filter, " "), err)
		}
		ids := make([]string, 0, len(lbs))
		for _, h := range lbs {
			ids = append(ids, h.Identity)
		}
		if ids, _ = o.silent.Split(ids); len(ids) > 0 {
			call.Filter, call.Hosts = nil, ids
		}
	}
	res, err := o.caller.Call(ctx, call)
	if err != nil {
		return ob, fmt.Errorf("haproxy status: %w", err)
	}
	answered := 0
	for _, r := range res {
		if r.NoResponse {
			o.silent.Add(r.Host)
		} else {
			answered++
		}
	}
	if answered == 0 {
		return ob, fmt.Errorf("haproxy status: no response within %s from any host matching %s", observeTimeout, strings.Join(filter, " "))
	}
	ob.AllLBs = answered == len(res) && len(call.Hosts) == 0
	for _, r := range res {
		if r.NoResponse {
			continue
		}
		if !r.OK {
			return ob, fmt.Errorf("haproxy status: %s: %s", r.Host, workflows.FailureDetail("haproxy", r))
		}
		servers, _ := r.Data["servers"].([]any)
		for _, s := range servers {
			m, _ := s.(map[string]any)
			if serverDrained(m) {
				ob.Drained = true
			}
		}
	}
	return ob, nil
}

// serverDrained reports whether an HAProxy server was taken out of rotation.
// The admin state set through the runtime API decides: a drained server
// whose app is down shows status DOWN, not DRAIN, yet still needs enabling.
// The status text is the fallback for answers without an admin state.
func serverDrained(m map[string]any) bool {
	if as, ok := m["admin_state"].(string); ok && as != "" {
		return as == "drain" || as == "maint"
	}
	st, _ := m["status"].(string)
	st = strings.ToUpper(st)
	return strings.HasPrefix(st, "DRAIN") || strings.HasPrefix(st, "MAINT")
}

// prepare implements workflows.Job.Prepare for the deploy:
//
//   - at the version, in rotation, no maintenance: only check_version, start
//     (a no-op when running) and health run; nothing is drained;
//   - at the version but drained or in maintenance (a run that stopped
//     half-way): the host is checked, started, enabled and its maintenance
//     ended, without draining or reinstalling;
//   - otherwise every step runs (each is idempotent).
//
// The marks are set from what was observed, and {{previous}} is the version
// found before the update, for a rollback.
func (o *observer) prepare(ctx context.Context, host string, hs *workflows.HostState) (map[string]string, error) {
	ob, err := o.observe(ctx, host)
	if err != nil {
		return nil, err
	}
	hs.ClearMark(MarkDrained)
	hs.ClearMark(MarkMaintenance)
	if ob.AllLBs && len(hs.Unreached) > 0 {
		// Every load balancer answered again: a drained server found on
		// one is enabled below like any other, so the host is reconciled
		// by the steps it still needs.
		hs.Unreached = nil
	}
	if ob.Drained {
		hs.SetMark(MarkDrained)
	}
	if ob.Maintenance {
		hs.SetMark(MarkMaintenance)
	}
	if hs.Vars == nil {
		hs.Vars = map[string]string{}
	}
	atTarget := ob.Installed && ob.Version == o.version
	if hs.Vars["previous"] == "" {
		if p := ob.previousFor(o.version); p != "" {
			hs.Vars["previous"] = p
		}
	}
	if o.approvedPrevious != nil {
		hs.Vars[workflows.ApprovedPreviousVar] = o.approvedPrevious[host]
	}
	if !ob.Installed && hs.Vars["previous"] == "" {
		hs.Vars[workflows.FreshInstallVar] = "true"
	}
	digestVars(o.digests, o.version, hs)
	if !atTarget {
		return nil, nil
	}
	skip := map[string]string{}
	if !ob.Drained && !ob.Maintenance {
		reason := fmt.Sprintf("observed %s installed, in rotation", ob.Version)
		for _, s := range []string{StepMaintenanceStart, StepDrain, StepStop, StepUpdate, StepEnable, StepMaintenanceEnd} {
			skip[s] = reason
		}
		return skip, nil
	}
	reason := fmt.Sprintf("observed %s installed", ob.Version)
	for _, s := range []string{StepMaintenanceStart, StepDrain, StepStop, StepUpdate} {
		skip[s] = reason
	}
	return skip, nil
}
