package workflows

import (
	"context"
	"slices"
	"sort"
	"time"
)

// DefaultReconcileEvery is how often a run looks for the hosts a partial
// broadcast left out (a load balancer whose responder died) that answer
// again.
const DefaultReconcileEvery = 2 * time.Second

// reconcileLoop brings a load balancer that comes back during the run up
// to date: every Job.ReconcileEvery it pings each host some run host's
// last partial change missed (HostState.Unreached), and for one that
// answers it sends, to it alone, each such host's last partial step (its
// drain or its enable), then takes it off the silent list so the run's
// next broadcasts include it. It stops when done is closed.
func (r *run) reconcileLoop(ctx context.Context, done <-chan struct{}) {
	every := r.job.ReconcileEvery
	if every <= 0 {
		every = DefaultReconcileEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			r.reconcile(ctx)
		}
	}
}

// reconcile makes one pass; it is also run once at the end of a run.
func (r *run) reconcile(ctx context.Context) {
	r.mu.Lock()
	missed := map[string][]string{}
	for _, b := range r.st.Batches {
		for _, h := range b {
			for _, lb := range r.st.Hosts[h].Unreached {
				missed[lb] = append(missed[lb], h)
			}
		}
	}
	r.mu.Unlock()
	lbs := make([]string, 0, len(missed))
	for lb := range missed {
		lbs = append(lbs, lb)
	}
	sort.Strings(lbs)
	for _, lb := range lbs {
		if ctx.Err() != nil || !r.answers(ctx, lb) {
			continue
		}
		all := true
		for _, h := range missed[lb] {
			all = r.reconcileOn(ctx, lb, h) && all
		}
		if all {
			r.silent.Remove(lb)
		}
	}
}

// answers reports whether host answers a signed ping now.
func (r *run) answers(ctx context.Context, host string) bool {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res, err := r.e.Caller.Call(cctx, Call{Agent: "rpcutil", Action: "ping", Hosts: []string{host}, Timeout: 2 * time.Second})
	return err == nil && len(res) == 1 && res[0].OK && !res[0].NoResponse
}

// reconcileOn sends host's last partial step to lb alone and, when it
// succeeds and host has not moved on meanwhile, drops lb from host's
// Unreached. It reports whether lb is now up to date for host.
func (r *run) reconcileOn(ctx context.Context, lb, host string) bool {
	r.mu.Lock()
	hs := r.st.Hosts[host]
	var step *Step
	for i := len(r.job.Workflow.Steps) - 1; i >= 0 && step == nil; i-- {
		s := r.job.Workflow.Steps[i]
		if s.Partial && slices.Contains(hs.Done, s.Name) {
			step = &s
		}
	}
	done := len(hs.Done)
	vars := r.hostVars(host, hs)
	r.mu.Unlock()
	if step == nil {
		return true // nothing of this host's reached the others either
	}
	start := time.Now()
	detail := ""
	params, err := expandMap(step.Params, vars)
	if err != nil {
		detail = "params: " + err.Error()
	}
	var results []Result
	if detail == "" {
		timeout := step.Timeout
		if timeout == 0 {
			timeout = DefaultStepTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout+callGrace)
		results, err = r.e.Caller.Call(cctx, Call{Agent: step.Agent, Action: step.Action, Params: params, Hosts: []string{lb}, Timeout: timeout})
		cancel()
		switch {
		case err != nil:
			detail = err.Error()
		case len(results) != 1 || results[0].NoResponse:
			detail = "no response from " + lb
		case !results[0].OK:
			detail = lb + ": " + results[0].Error
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Type: EventStepDone, Host: host, Step: "reconcile " + step.Name, Call: step.Agent + "." + step.Action,
		ElapsedMS: time.Since(start).Milliseconds(), Results: results, Summary: lb + " answers again: " + step.Name + " applied there"}
	if detail != "" {
		ev.Status, ev.Error, ev.Summary = StepFailed, host+": reconcile "+step.Name+" on "+lb+": "+detail, ""
		r.emit(ev)
		return false
	}
	ev.Status = StepChanged
	if len(hs.Done) == done {
		// The host did not take another step meanwhile: its record of
		// missed hosts is still the one this pass read.
		hs.Unreached = slices.DeleteFunc(hs.Unreached, func(h string) bool { return h == lb })
		if len(hs.Unreached) == 0 {
			hs.Unreached = nil
		}
		r.save(ctx)
	}
	r.emit(ev)
	return true
}
