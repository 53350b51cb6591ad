// Package deploy is the built-in rolling deploy: an app file (App) turned
// into a step list that runs on the workflows engine, batch by batch, with
// the state of every host observed before it is touched.
//
// Per host, in order: maintenance start; HAProxy drain (broadcast to every
// HAProxy of the app's lb_filter) and wait; service stop; package update to
// the version; package check_version; service start; HTTP health check;
// HAProxy enable; maintenance end.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/workflows"
)

// Step names of the deploy, in order.
const (
	StepMaintenanceStart = "maintenance_start"
	StepDrain            = "drain"
	StepStop             = "stop"
	StepUpdate           = "update"
	StepCheckVersion     = "check_version"
	StepStart            = "start"
	StepHealth           = "health"
	StepEnable           = "enable"
	StepMaintenanceEnd   = "maintenance_end"
)

// Rotation marks.
const (
	MarkDrained     = "drained"
	MarkMaintenance = "maintenance"
)

// Options is one `signet deploy APP VERSION` invocation.
type Options struct {
	// App, or AppFile to read it from.
	App     *App
	AppFile string
	// Version is the package version to deploy. Required for Run; on Resume
	// it must match the run's when set.
	Version string
	// Env is the environment ("dev", "prod"): it selects envs overrides,
	// adds env=ENV to the discovery filter and names the lock APP/ENV.
	Env string
	// Yes confirms the deploy; without it (and without Plan) Run refuses.
	Yes bool
	// Plan shows every batch, host and step and runs nothing.
	Plan bool
	// Output receives the progress (Format "text", default) or JSON lines
	// (Format "json", for Jenkins).
	Output io.Writer
	Format string
	// LogFile, when set, receives the complete run log as JSON lines.
	LogFile string
	Caller  workflows.Caller
	Store   workflows.Store
	// User is the operator ("alice@bastion"); it names the lock holder.
	User string
	Log  *slog.Logger
	// Policy overrides the app file's capacity and failure policy: the
	// command-line flags.
	Policy Policy
	// Approve, when set, is given the plan once it is made and before
	// anything runs: the two-person rule's hook (the CLI submits the plan
	// for approval and waits). An error stops the run. With on_failure
	// rollback the plan holds each host's rollback, at the version read
	// from it just before (approvalrollback.go).
	Approve func(ctx context.Context, pv *workflows.PlanView) error
	// Rollout overrides the app file's canary and gates: the command-line
	// flags (canary.go).
	Rollout Rollout
	// Provenance is the ticket, CI build URL and artifact digest of a new
	// run (a resumed run keeps its recorded ones).
	Provenance Provenance
	// Inventory, when set, is a file naming the hosts the deploy expects,
	// one identity per line; by default it expects the hosts its filter
	// finds in the registry. Every expected host must answer a preflight
	// ping (preflight.go).
	Inventory string
	// AllowMissing lets the run start without the expected hosts that are
	// missing; they are named in the run state and the run log.
	AllowMissing bool
	// ReconcileEvery is how often the run looks for a load balancer that
	// answers again (workflows.Job.ReconcileEvery); tests shorten it.
	ReconcileEvery time.Duration
	// PreflightTimeout bounds the preflight ping; default 10s.
	PreflightTimeout time.Duration
}

// Policy is a command-line override of the capacity and failure policy;
// an empty field keeps the app file's value.
type Policy struct {
	MaxUnavailable        string
	MaxUnavailablePerZone string
	MaxFailures           string
	OnFailure             string
	// Strategy is batches or window.
	Strategy string
}

// apply sets the overrides on a (ForEnv applied) and validates the result.
func (p Policy) apply(a *App) error {
	for _, f := range []struct {
		v   string
		dst *string
	}{{p.MaxUnavailable, &a.MaxUnavailable}, {p.MaxUnavailablePerZone, &a.MaxUnavailablePerZone}, {p.MaxFailures, &a.MaxFailures}, {p.OnFailure, &a.OnFailure}, {p.Strategy, &a.Strategy}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	return a.Validate()
}

func (o *Options) app() (*App, error) {
	a := o.App
	if a == nil {
		if o.AppFile == "" {
			return nil, errors.New("deploy: an app or an app file is required")
		}
		var err error
		if a, err = LoadApp(o.AppFile); err != nil {
			return nil, err
		}
	} else if err := a.Validate(); err != nil {
		return nil, err
	}
	a, err := a.ForEnv(o.Env)
	if err != nil {
		return nil, err
	}
	if err := o.Policy.apply(a); err != nil {
		return a, err
	}
	return a, o.Rollout.apply(a)
}

// Run deploys opts.Version of the app to opts.Env: discover, plan, lock,
// run. soft asks to stop after the running hosts; cancelling ctx stops at
// once and the error lists the hosts left out of rotation. The recap is
// returned whenever the run started.
func Run(ctx context.Context, soft <-chan struct{}, opts Options) (*workflows.Recap, error) {
	a, err := opts.app()
	if err != nil {
		return nil, err
	}
	if !ValidVersion(opts.Version) {
		return nil, fmt.Errorf("deploy %s: version: want a package version such as 1.4.2, found %q", a.Name, opts.Version)
	}
	if opts.Caller == nil {
		return nil, errors.New("deploy: a caller is required")
	}
	filter := append(append([]string(nil), a.Hosts...), a.EnvFact+"="+opts.Env)
	hosts, err := opts.Caller.Discover(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: discover %s: %w", a.Name, strings.Join(filter, " "), err)
	}
	// The preflight is the run's first request: it carries the run's id
	// (chosen now, given to the run state below), ticket and build URL,
	// so every audit record of the run names them. A --plan's ping carries
	// the ticket and build URL only: it starts no run.
	runID := workflows.NewRunID()
	prov := &bus.Provenance{Ticket: opts.Provenance.Ticket, BuildURL: opts.Provenance.BuildURL}
	if err := prov.Check(); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", a.Name, err)
	}
	if !opts.Plan {
		prov.Run = runID
	}
	pf, hosts, err := opts.preflight(workflows.WithProvenance(ctx, prov), hosts, filter)
	if err != nil {
		return nil, fmt.Errorf("deploy %s/%s: %w", a.Name, opts.Env, err)
	}
	var canary *workflows.CanaryState
	var batches [][]string
	if a.Canary != nil {
		canary, batches, err = workflows.PlanCanary(hosts, a.Canary, a.Batching, a.Gates)
	} else {
		batches, err = workflows.Plan(hosts, a.Batching)
	}
	if err != nil {
		return nil, fmt.Errorf("deploy %s/%s: %w (filter %s)", a.Name, opts.Env, err, strings.Join(filter, " "))
	}
	summary := fmt.Sprintf("deploy %s %s to %s", a.Name, opts.Version, opts.Env)
	if canary != nil {
		summary += ": " + canaryPlan(canary)
	}
	if a.Gates != nil {
		summary += "; " + gatesPlan(a.Gates)
	}
	vars := map[string]string{"version": opts.Version, "env": opts.Env, "app": a.Name}
	zones := workflows.HostZones(hosts, a.ZoneFact)
	if opts.Plan {
		pst := &workflows.RunState{Version: opts.Version}
		if err := opts.Provenance.record(a, pst); err != nil {
			return nil, err
		}
		pv, err := workflows.BuildPlan(summary, batches, hosts, a.ZoneFact, a.Steps(), planVars(vars, pst.Digests, opts.Version))
		if err != nil {
			return nil, err
		}
		lim, err := workflows.ResolveLimits(a.Batching, a.OnFailure, batches, zones)
		if err != nil {
			return nil, fmt.Errorf("deploy %s: %w", a.Name, err)
		}
		pv.Limits = &lim
		pv.Preflight = pf
		return nil, pv.Write(opts.Output, opts.Format)
	}
	if !opts.Yes {
		return nil, fmt.Errorf("%s would touch %d hosts: confirm with --yes or look first with --plan", summary, len(hosts))
	}
	if opts.Approve != nil {
		pv, err := workflows.BuildPlan(summary, batches, hosts, a.ZoneFact, a.approvalSteps(), vars)
		if err != nil {
			return nil, err
		}
		if a.OnFailure == workflows.OnFailureRollback {
			// The rollback's versions are read now, read-only, and
			// approved with the plan (approvalrollback.go).
			ids := make([]string, 0, len(hosts))
			for _, h := range hosts {
				ids = append(ids, h.Identity)
			}
			prev, err := opts.readPrevious(workflows.WithProvenance(ctx, prov), a, ids)
			if err != nil {
				return nil, err
			}
			if err := a.addRollbackPlan(pv, hosts, vars, prev); err != nil {
				return nil, fmt.Errorf("deploy %s: %w", a.Name, err)
			}
		}
		if err := opts.Approve(ctx, pv); err != nil {
			return nil, err
		}
	}
	st := workflows.NewRunState("deploy", batches, vars)
	st.ID = runID
	st.App, st.Env, st.Version, st.User = a.Name, opts.Env, opts.Version, opts.User
	st.Zones = zones
	st.Canary = canary
	if err := opts.Provenance.record(a, st); err != nil {
		return nil, err
	}
	st.Preflight = pf
	workflows.RecordApproval(opts.Caller, st)
	summary += missingNote(pf)
	return execute(ctx, soft, a, st, summary, opts)
}

// Resume continues run runID (stopped, failed or interrupted) with the
// current app file. It does not trust the recorded progress: every host
// not verified done is observed (package, HAProxy and maintenance status)
// and only the steps its state still needs are run; a host already at the
// version but still drained is enabled, not skipped.
func Resume(ctx context.Context, soft <-chan struct{}, runID string, opts Options) (*workflows.Recap, error) {
	if opts.Store == nil {
		return nil, errors.New("deploy: a store is required")
	}
	st, err := opts.Store.Load(ctx, runID)
	if err != nil {
		return nil, err
	}
	if st.Workflow != "deploy" {
		return nil, fmt.Errorf("resume %s: want a deploy run, found workflow %q", runID, st.Workflow)
	}
	if opts.Env != "" && opts.Env != st.Env || opts.Version != "" && opts.Version != st.Version {
		return nil, fmt.Errorf("resume %s: the run deploys %s to %s, found %s to %s", runID, st.Version, st.Env, opts.Version, opts.Env)
	}
	if st.Status == workflows.StatusDone {
		return nil, fmt.Errorf("resume %s: the run is already done", runID)
	}
	// A deploy's state is checked as strictly as a new deploy's input.
	if !ValidVersion(st.Version) || !workflows.ValidName(st.Env) || !workflows.ValidName(st.App) {
		return nil, fmt.Errorf("resume %s: %w: want an app, an env and a version, found %q %q %q", runID, workflows.ErrStateInvalid, st.App, st.Env, st.Version)
	}
	want := map[string]string{"version": st.Version, "env": st.Env, "app": st.App}
	if !maps.Equal(st.Vars, want) {
		return nil, fmt.Errorf("resume %s: %w: a deploy's variables are exactly app, env and version, found %v", runID, workflows.ErrStateInvalid, st.Vars)
	}
	opts.Env, opts.Version = st.Env, st.Version
	a, err := opts.app()
	if err != nil {
		return nil, err
	}
	if a.Name != st.App {
		return nil, fmt.Errorf("resume %s: the run deploys app %s, found app file of %s", runID, st.App, a.Name)
	}
	// The recorded digests win over the app file's: they were signed
	// with the run.
	for v, d := range st.Digests {
		if a.SHA256 == nil {
			a.SHA256 = map[string]string{}
		}
		a.SHA256[v] = d
	}
	summary := fmt.Sprintf("resume deploy %s %s to %s (run %s)", a.Name, st.Version, st.Env, runID)
	if opts.Plan {
		var hosts []workflows.Host
		pv, err := workflows.BuildPlan(summary, st.Batches, hosts, a.ZoneFact, a.Steps(), planVars(st.Vars, a.SHA256, st.Version))
		if err != nil {
			return nil, err
		}
		lim, err := workflows.ResolveLimits(a.Batching, a.OnFailure, st.Batches, st.Zones)
		if err != nil {
			return nil, fmt.Errorf("deploy %s: %w", a.Name, err)
		}
		pv.Limits = &lim
		return nil, pv.Write(opts.Output, opts.Format)
	}
	if st.Approval != nil && a.OnFailure == workflows.OnFailureRollback && !plansRollback(st.Approval) {
		return nil, fmt.Errorf("resume %s: %w: the run was approved without its rollback (on_failure hold when the plan was made), so the "+
			"hosts would refuse it: resume with --on-failure hold, or start a new run with on_failure rollback and --wait-approval",
			runID, workflows.ErrRollbackUnapproved)
	}
	if err := workflows.ResumeApproval(opts.Caller, st, time.Now()); err != nil {
		return nil, err
	}
	return execute(ctx, soft, a, st, summary, opts)
}

func execute(ctx context.Context, soft <-chan struct{}, a *App, st *workflows.RunState, summary string, opts Options) (*workflows.Recap, error) {
	w := &workflows.Workflow{Version: 1, Name: "deploy", Hosts: a.Hosts, Batching: a.Batching, Steps: a.Steps(), OnFailure: a.OnFailure}
	if a.OnFailure == workflows.OnFailureRollback {
		w.Rollback = a.RollbackSteps()
	}
	silent := &workflows.Silent{}
	o := &observer{app: a, caller: opts.Caller, version: st.Version, silent: silent, digests: a.SHA256}
	if a.OnFailure == workflows.OnFailureRollback {
		o.approvedPrevious = approvedPrevious(opts.Caller)
	}
	job := &workflows.Job{Workflow: w, State: st, Summary: summary, Prepare: o.prepare, Silent: silent,
		Gates: a.Gates, DecisionPoll: opts.Rollout.DecisionPoll, ReconcileEvery: opts.ReconcileEvery}
	if st.Canary != nil {
		job.CanaryChecks = a.canaryChecks()
	}
	return workflows.Execute(ctx, soft, workflows.Exec{Job: job, Kind: "deploy", LockName: a.Name + "/" + st.Env,
		Output: opts.Output, Format: opts.Format, LogFile: opts.LogFile, Caller: opts.Caller, Store: opts.Store, User: opts.User, Log: opts.Log})
}

func dur(d time.Duration) string { return d.String() }

func (a *App) lbFilter() []string { return a.HAProxy.LBFilter }

// Steps returns the deploy's step list for the app (ForEnv applied).
func (a *App) Steps() []workflows.Step {
	drainParams := map[string]any{"backend": a.HAProxy.Backend, "server": a.HAProxy.Server, "wait": true, "timeout": dur(a.HAProxy.DrainTimeout)}
	pkg := map[string]any{"package": a.Package, "version": "{{version}}"}
	update := pkg
	if len(a.SHA256) > 0 {
		update = map[string]any{"package": a.Package, "version": "{{version}}", VarSHA256: "{{" + VarSHA256 + "}}"}
	}
	svc := map[string]any{"service": a.Service, "timeout": dur(a.StopTimeout)}
	healthTimeout := time.Duration(a.Health.Retries)*(a.Health.Timeout+10*time.Second) + 30*time.Second
	return []workflows.Step{
		{Name: StepMaintenanceStart, Agent: "maintenance", Action: "start", Sets: MarkMaintenance,
			Params: map[string]any{"duration": dur(a.Maintenance), "comment": "deploy {{app}} {{version}}"}},
		{Name: StepDrain, Agent: "haproxy", Action: "drain", Target: workflows.TargetBroadcast, Filter: a.lbFilter(), Sets: MarkDrained, Partial: true,
			Params: drainParams, Timeout: a.HAProxy.DrainTimeout + 30*time.Second, Check: checkHAProxy("drain", a.lbFilter())},
		{Name: StepStop, Agent: "service", Action: "stop", Params: svc, Timeout: a.StopTimeout + 10*time.Second},
		{Name: StepUpdate, Agent: "package", Action: "update", Params: update, Timeout: 10 * time.Minute, Capture: map[string]string{"previous": "previous"}},
		{Name: StepCheckVersion, Agent: "package", Action: "check_version", Params: pkg, Check: checkVersion},
		{Name: StepStart, Agent: "service", Action: "start", Params: svc, Timeout: a.StopTimeout + 10*time.Second, Expect: map[string]any{"active": true}},
		{Name: StepHealth, Agent: "health", Action: "http", Timeout: healthTimeout, Params: map[string]any{
			"url": a.Health.URL, "status": int64(a.Health.Status), "contains": a.Health.Contains,
			"retries": int64(a.Health.Retries), "interval": dur(a.Health.Interval), "timeout": dur(a.Health.Timeout)}},
		{Name: StepEnable, Agent: "haproxy", Action: "enable", Target: workflows.TargetBroadcast, Filter: a.lbFilter(), Clears: MarkDrained, Partial: true,
			Params: drainParams, Timeout: a.HAProxy.DrainTimeout + 30*time.Second, Check: checkHAProxy("enable", a.lbFilter())},
		{Name: StepMaintenanceEnd, Agent: "maintenance", Action: "end", Clears: MarkMaintenance, Params: map[string]any{}},
	}
}

// RollbackSteps returns the steps of on_failure rollback: the deploy's
// own steps with {{version}} the host's previous version (and
// {{sha256}} its digest): maintenance start, drain, stop, install the
// previous version, check it, start, health check, enable, maintenance
// end. A host goes back into rotation only after its health check.
func (a *App) RollbackSteps() []workflows.Step {
	var out []workflows.Step
	for _, s := range a.Steps() {
		s.Capture = nil
		out = append(out, s)
	}
	return out
}

// checkVersion turns a failed or mismatched check_version into
// "want 1.4.2, installed 1.4.1 (apt: held package)".
func checkVersion(vars map[string]string, results []workflows.Result) error {
	step := workflows.Step{Agent: "package"}
	if err := workflows.DefaultCheck(step, vars["identity"], vars, results); err != nil {
		return err
	}
	for _, r := range results {
		if got, _ := r.Data["version"].(string); r.Data != nil && got != vars["version"] {
			return fmt.Errorf("want %s, installed %s", vars["version"], got)
		}
	}
	return nil
}

// checkHAProxy requires every answering HAProxy to succeed and at least
// one of them to have the server: draining nothing is not a drain. An
// HAProxy host that does not answer does not fail the step (the engine
// names it in the recap): a dead load balancer must not cost a healthy
// host.
func checkHAProxy(action string, filter []string) func(map[string]string, []workflows.Result) error {
	return func(vars map[string]string, results []workflows.Result) error {
		step := workflows.Step{Agent: "haproxy", Target: workflows.TargetBroadcast, Filter: filter, Partial: true}
		if err := workflows.DefaultCheck(step, vars["identity"], vars, results); err != nil {
			return err
		}
		matched := 0
		for _, r := range results {
			matched += toInt(r.Data["matched"])
		}
		if matched == 0 {
			return fmt.Errorf("%s: want the server %s in a backend on at least one haproxy, found it on none of %d", action, vars["identity"], len(results))
		}
		return nil
	}
}

func toInt(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	}
	return 0
}
