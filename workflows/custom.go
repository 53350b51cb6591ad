package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"
)

// Options run a custom workflow file (`signet workflow run FILE`).
type Options struct {
	// Workflow, or WorkflowFile to read it from.
	Workflow     *Workflow
	WorkflowFile string
	// Env, when set, adds "env=ENV" to the discovery filter and names the
	// lock (NAME/ENV; NAME/all without an env).
	Env string
	// Version sets {{version}}; optional for workflows.
	Version string
	// Vars override the workflow's vars.
	Vars map[string]string
	// Yes confirms the run; without it (and without Plan) Run refuses.
	Yes bool
	// Plan shows every batch, host and step and runs nothing.
	Plan    bool
	Output  io.Writer
	Format  string // "text" (default) or "json"
	LogFile string
	Caller  Caller
	Store   Store
	User    string
	Log     *slog.Logger
	// Approve, when set, is given the plan once it is made and before
	// anything runs: the two-person rule's hook (the CLI submits the plan
	// for approval and waits). An error stops the run.
	Approve func(ctx context.Context, pv *PlanView) error
}

func (o *Options) load() (*Workflow, error) {
	if o.Workflow != nil {
		return o.Workflow, o.Workflow.Validate()
	}
	if o.WorkflowFile == "" {
		return nil, errors.New("workflow: a workflow or a workflow file is required")
	}
	f, err := os.Open(o.WorkflowFile)
	if err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	defer f.Close()
	w, err := ParseWorkflow(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.WorkflowFile, err)
	}
	return w, nil
}

func (o *Options) lockName(w *Workflow) string {
	if o.Env == "" {
		return w.Name + "/all"
	}
	return w.Name + "/" + o.Env
}

// RunWorkflow discovers the workflow's hosts, plans the batches and runs the
// steps (or only shows the plan with Options.Plan).
func RunWorkflow(ctx context.Context, soft <-chan struct{}, o Options) (*Recap, error) {
	w, err := o.load()
	if err != nil {
		return nil, err
	}
	if o.Env != "" && !ValidName(o.Env) {
		return nil, fmt.Errorf("env: want lowercase letters, digits, '_' or '-', found %q", o.Env)
	}
	vars := map[string]string{}
	for k, v := range w.Vars {
		vars[k] = v
	}
	for k, v := range o.Vars {
		if _, ok := w.Vars[k]; !ok {
			return nil, fmt.Errorf("workflow %s: var %q is not declared in the workflow's vars", w.Name, k)
		}
		vars[k] = v
	}
	if o.Version != "" {
		vars["version"] = o.Version
	}
	if o.Env != "" {
		vars["env"] = o.Env
	}
	filter := append([]string(nil), w.Hosts...)
	if o.Env != "" {
		filter = append(filter, "env="+o.Env)
	}
	if o.Caller == nil {
		return nil, errors.New("workflows: a caller is required")
	}
	hosts, err := o.Caller.Discover(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("discover %v: %w", filter, err)
	}
	batches, err := Plan(hosts, w.Batching)
	if err != nil {
		return nil, fmt.Errorf("workflow %s: %w", w.Name, err)
	}
	summary := fmt.Sprintf("workflow %s on %v", w.Name, filter)
	if o.Plan {
		pv, err := BuildPlan(summary, batches, hosts, w.ZoneFact, w.Steps, vars)
		if err != nil {
			return nil, err
		}
		lim, err := ResolveLimits(w.Batching, w.OnFailure, batches, HostZones(hosts, w.ZoneFact))
		if err != nil {
			return nil, fmt.Errorf("workflow %s: %w", w.Name, err)
		}
		pv.Limits = &lim
		return nil, pv.Write(o.Output, o.Format)
	}
	if !o.Yes {
		return nil, fmt.Errorf("workflow %s would touch %d hosts: confirm with --yes or look first with --plan", w.Name, len(hosts))
	}
	if o.Approve != nil {
		if w.OnFailure == OnFailureRollback {
			return nil, RefuseRollback("workflow " + w.Name)
		}
		pv, err := BuildPlan(summary, batches, hosts, w.ZoneFact, w.Steps, vars)
		if err != nil {
			return nil, err
		}
		if err := o.Approve(ctx, pv); err != nil {
			return nil, err
		}
	}
	st := NewRunState(w.Name, batches, vars)
	st.Env, st.Version, st.User = o.Env, o.Version, o.User
	st.Zones = HostZones(hosts, w.ZoneFact)
	RecordApproval(o.Caller, st)
	return Execute(ctx, soft, Exec{Job: &Job{Workflow: w, State: st, Summary: summary}, Kind: "workflow " + w.Name, LockName: o.lockName(w),
		Output: o.Output, Format: o.Format, LogFile: o.LogFile, Caller: o.Caller, Store: o.Store, User: o.User, Log: o.Log})
}

// ResumeWorkflow continues a stopped, failed or interrupted workflow run
// from its recorded progress: hosts recorded done are left alone, a host's
// steps recorded done are skipped. (The deploy resumes from observed state
// instead; a custom workflow has no generic way to observe.)
func ResumeWorkflow(ctx context.Context, soft <-chan struct{}, runID string, o Options) (*Recap, error) {
	w, err := o.load()
	if err != nil {
		return nil, err
	}
	if o.Store == nil {
		return nil, errors.New("workflows: a store is required")
	}
	st, err := o.Store.Load(ctx, runID)
	if err != nil {
		return nil, err
	}
	if st.Workflow != w.Name {
		return nil, fmt.Errorf("resume %s: the run is of workflow %q, found workflow %q", runID, st.Workflow, w.Name)
	}
	if st.Status == StatusDone {
		return nil, fmt.Errorf("resume %s: the run is already done", runID)
	}
	for k := range st.Vars {
		if _, declared := w.Vars[k]; !declared && k != "version" && k != "env" {
			return nil, fmt.Errorf("resume %s: %w: var %q is not declared in workflow %s", runID, ErrStateInvalid, k, w.Name)
		}
	}
	o.Env = st.Env
	summary := fmt.Sprintf("resume workflow %s run %s", w.Name, runID)
	if o.Plan {
		return nil, planRemaining(o.Output, o.Format, summary, st, w.Steps)
	}
	if st.Approval != nil && w.OnFailure == OnFailureRollback {
		return nil, RefuseRollback("resume " + runID)
	}
	if err := ResumeApproval(o.Caller, st, time.Now()); err != nil {
		return nil, err
	}
	return Execute(ctx, soft, Exec{Job: &Job{Workflow: w, State: st, Summary: summary}, Kind: "workflow " + w.Name, LockName: o.lockName(w),
		Output: o.Output, Format: o.Format, LogFile: o.LogFile, Caller: o.Caller, Store: o.Store, User: o.User, Log: o.Log})
}

func planRemaining(out io.Writer, format, summary string, st *RunState, steps []Step) error {
	var batches [][]string
	for _, b := range st.Batches {
		var left []string
		for _, h := range b {
			if st.Hosts[h] == nil || st.Hosts[h].Status != HostDone {
				left = append(left, h)
			}
		}
		if len(left) > 0 {
			sort.Strings(left)
			batches = append(batches, left)
		}
	}
	pv, err := BuildPlan(summary, batches, nil, "", steps, st.Vars)
	if err != nil {
		return err
	}
	return pv.Write(out, format)
}
