package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStopped is returned (wrapped) when a soft stop ended the run early.
var ErrStopped = errors.New("workflows: run stopped on request")

// StepError is the first failure of a run: which host, which step, what was
// expected and what was found.
type StepError struct {
	Host, Step string
	// Detail is what went wrong, such as "want 1.4.2, installed 1.4.1
	// (apt: held package)" or "no response within 30s".
	Detail string
	// Rollback is the outcome of the rollback, "" when none ran.
	Rollback string
}

func (e *StepError) Error() string {
	msg := e.Host + ": " + e.Step + ": " + e.Detail
	if e.Rollback != "" {
		msg += "; " + e.Rollback
	}
	return msg
}

// InterruptedError is returned when the context was cancelled mid-run.
type InterruptedError struct {
	Err error
	// OutOfRotation lists the hosts left drained or in maintenance.
	OutOfRotation []HostMarks
}

func (e *InterruptedError) Error() string {
	if len(e.OutOfRotation) == 0 {
		return "run interrupted: no host left out of rotation"
	}
	var s []string
	for _, m := range e.OutOfRotation {
		s = append(s, m.String())
	}
	return "run interrupted: left out of rotation: " + strings.Join(s, ", ")
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// Engine runs jobs. Caller and Store are required.
type Engine struct {
	Caller Caller
	Store  Store
	// Sink receives every event; may be nil.
	Sink Sink
	// Log receives store failures; default discards.
	Log *slog.Logger
	// Lock, when set, is the run's lock: it is renewed before every step,
	// and a run whose lock is lost starts no new step (the steps in
	// progress finish) and ends failed with a *LockLostError.
	Lock Held
	// SaveBound bounds the retries of one state save; default
	// DefaultSaveBound.
	SaveBound time.Duration
}

// Job is one run of a workflow.
type Job struct {
	// Workflow gives the steps, the rollback, the failure policy and the
	// pause between batches.
	Workflow *Workflow
	// State is the run's record: ID, batches, vars and host progress. A
	// resumed run passes the loaded state.
	State *RunState
	// Summary describes the run on run_start ("deploy middleware 1.4.2 to
	// prod").
	Summary string
	// Prepare is called before a host's steps, with the host's recorded
	// state. It may observe the host, update hs (marks, vars) and returns
	// the steps to skip with the reason (it may also clear hs.Unreached once
	// every load balancer agrees). When nil, steps recorded as done
	// are skipped and hosts recorded as done are not touched.
	Prepare func(ctx context.Context, host string, hs *HostState) (skip map[string]string, err error)
	// Silent collects the hosts found not answering, which partial
	// broadcasts stop waiting for; nil makes one per run. The deploy shares
	// it with its observation of the load balancers.
	Silent *Silent
	// Gates, when set, must pass before each batch after the first, and
	// during a canary's bake (canaryrun.go).
	Gates *Gates
	// CanaryChecks are the steps run on every canary host at each check
	// of the bake (the deploy's health check), when State.Canary is set.
	CanaryChecks []Step
	// ReconcileEvery is how often the run looks for a load balancer that
	// answers again after a partial broadcast left it out (reconcile.go);
	// default DefaultReconcileEvery.
	ReconcileEvery time.Duration
	// DecisionPoll is how often a waiting canary reads the stored state
	// for a decision; default DefaultDecisionPoll.
	DecisionPoll time.Duration
}

type run struct {
	e     *Engine
	job   *Job
	st    *RunState
	mu    sync.Mutex
	recap *Recap
	// failed: the run ends failed. noDispatch: start no more hosts.
	// halt: hosts in progress stop before their next step (a lost lock,
	// or a spent failure budget under on_failure stop_now).
	failed     atomic.Bool
	noDispatch atomic.Bool
	halt       atomic.Bool
	lim        Limits
	slots      *slots
	silent     *Silent
	firstMu    sync.Mutex
	failures   []*StepError
	capErr     *CapacityError
	lockErr    error
	saveErr    error
	sinkErr    error
	stopped    atomic.Bool
	// gateErr is the gate or canary error that ended the run.
	gateErr error
	// recorded is the status of the last state the store accepted.
	recorded string
}

// Run runs the job batch by batch until it is done, a step fails, soft is
// signalled (the running hosts finish, nothing new starts) or ctx is
// cancelled (everything stops at once). The recap is returned in every case.
func (e *Engine) Run(ctx context.Context, soft <-chan struct{}, job *Job) (*Recap, error) {
	if e.Caller == nil || e.Store == nil || job.Workflow == nil || job.State == nil {
		return nil, errors.New("workflows: engine needs a caller, a store, a workflow and a run state")
	}
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if err := job.State.Validate(); err != nil {
		return nil, err
	}
	// Every request of the run carries its id, ticket and build URL.
	ctx = WithProvenance(ctx, job.State.provenance(""))
	lim, lerr := ResolveLimits(job.Workflow.Batching, job.Workflow.OnFailure, job.State.Batches, job.State.Zones)
	if lerr != nil {
		return nil, fmt.Errorf("workflows: %w", lerr)
	}
	r := &run{e: e, job: job, st: job.State, recap: &Recap{Run: job.State.ID}, lim: lim, slots: newSlots(lim, job.State.Zones), silent: job.Silent}
	if r.silent == nil {
		r.silent = &Silent{}
	}
	for _, b := range r.st.Batches {
		for _, h := range b {
			if r.st.Hosts[h] == nil {
				r.st.Hosts[h] = &HostState{Status: HostPending}
			}
			r.recap.Hosts = append(r.recap.Hosts, HostRecap{Host: h, Status: r.st.Hosts[h].Status})
		}
	}
	stopped := &r.stopped
	watchDone := make(chan struct{})
	defer close(watchDone)
	// A load balancer that comes back is brought up to date while the run
	// goes on; the loop ends before the recap is made.
	reconcileStop, reconcileEnded := make(chan struct{}), make(chan struct{})
	go func() { defer close(reconcileEnded); r.reconcileLoop(ctx, reconcileStop) }()
	stopReconcile := sync.OnceFunc(func() { close(reconcileStop); <-reconcileEnded })
	defer stopReconcile()
	if soft != nil {
		go func() {
			select {
			case <-soft:
				stopped.Store(true)
				r.slots.wake()
			case <-watchDone:
			}
		}()
	}

	r.initialOut()
	start := time.Now()
	r.mu.Lock()
	r.st.Status, r.st.Error = StatusRunning, ""
	r.save(ctx)
	runLim := r.lim
	r.emit(Event{Type: EventRunStart, Batches: len(r.st.Batches), Summary: job.Summary, HostCount: len(r.recap.Hosts), Limits: &runLim})
	r.mu.Unlock()

	status := StatusDone
	order := r.batchOrder()
	if job.Workflow.Strategy == StrategyWindow {
		status, order = r.window(ctx, soft, stopped), nil
	}
	for pos, bi := range order {
		batch := r.st.Batches[bi]
		if ctx.Err() != nil {
			status = StatusInterrupted
			break
		}
		select {
		case <-soft:
			stopped.Store(true)
		default:
		}
		if stopped.Load() {
			status = StatusStopped
			break
		}
		if pos > 0 && job.Workflow.Pause > 0 {
			if !r.pause(ctx, job.Workflow.Pause, stopped) {
				// Stopped or interrupted in the pause: not "continue",
				// which would end the loop as done before the last batch.
				status = StatusStopped
				if ctx.Err() != nil {
					status = StatusInterrupted
				}
				break
			}
		}
		if err := r.beforeBatch(ctx, pos, bi, stopped); err != nil {
			status = canaryStatus(ctx, err)
			break
		}
		var todo []string
		for _, h := range batch {
			if job.Prepare == nil && r.st.Hosts[h].Status == HostDone {
				continue
			}
			todo = append(todo, h)
		}
		if len(todo) == 0 {
			continue
		}
		bstart := time.Now()
		r.mu.Lock()
		r.emit(Event{Type: EventBatchStart, Batch: bi + 1, Batches: len(r.st.Batches), Hosts: todo})
		r.mu.Unlock()
		r.dispatch(ctx, bi+1, todo)
		r.mu.Lock()
		r.emit(Event{Type: EventBatchDone, Batch: bi + 1, Batches: len(r.st.Batches), ElapsedMS: time.Since(bstart).Milliseconds()})
		r.mu.Unlock()
		if r.noDispatch.Load() {
			status = StatusFailed
			break
		}
	}
	if status == StatusDone && ctx.Err() != nil {
		status = StatusInterrupted
	}
	if r.failed.Load() {
		status = StatusFailed
	}
	stopReconcile()
	// One more pass: a load balancer back since the last tick is brought
	// up to date before the recap names it (a dead one costs its ping).
	r.reconcile(ctx)
	r.rollbackTouched(ctx, status)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.recap.Status = status
	rl := r.lim
	rl.Failures, rl.PeakUnavailable = len(r.failures), r.slots.peak()
	r.recap.Limits = &rl
	for _, b := range r.st.Batches {
		for _, h := range b {
			hs := r.st.Hosts[h]
			r.recap.Host(h).Status = hs.Status
			r.recap.Host(h).Rollback = hs.Rollback
			if len(hs.Marks) > 0 {
				r.recap.OutOfRotation = append(r.recap.OutOfRotation, HostMarks{Host: h, Marks: slices.Clone(hs.Marks)})
			}
		}
	}
	r.recap.Unreached = r.unreached()
	var err error
	switch status {
	case StatusFailed:
		err = r.failErr()
	case StatusInterrupted:
		err = &InterruptedError{Err: context.Cause(ctx), OutOfRotation: r.recap.OutOfRotation}
	case StatusStopped:
		err = fmt.Errorf("%w before batch %d of %d: resume with run id %s", ErrStopped, r.nextBatch()+1, len(r.st.Batches), r.st.ID)
	}
	err = r.canaryErr(status, err)
	if r.sinkErr != nil {
		se := &OutputError{Run: r.st.ID, Err: r.sinkErr}
		if status == StatusStopped {
			err = nil // stopped by the output error, not on request
		}
		if err == nil {
			err = se
		} else {
			err = fmt.Errorf("%w; %w", err, se)
		}
	}
	r.st.Status = status
	if err != nil {
		r.st.Error = err.Error()
	}
	r.save(ctx)
	ev := Event{Type: EventRunDone, Status: status, ElapsedMS: time.Since(start).Milliseconds(), Recap: r.recap}
	if err != nil {
		ev.Error = err.Error()
	}
	r.emit(ev)
	if r.saveErr != nil {
		se := &SaveError{Run: r.st.ID, Status: status, Recorded: r.recorded, Err: r.saveErr}
		if err == nil {
			err = se
		} else {
			err = fmt.Errorf("%w; %w", err, se)
		}
	}
	return r.recap, err
}

func (r *run) nextBatch() int {
	for i, b := range r.st.Batches {
		for _, h := range b {
			if r.st.Hosts[h].Status != HostDone {
				return i
			}
		}
	}
	return len(r.st.Batches)
}

// pause waits between batches; it returns false when cut short.
func (r *run) pause(ctx context.Context, d time.Duration, stopped *atomic.Bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick.C:
			if stopped.Load() {
				return false
			}
		}
	}
}

// emit sends an event; r.mu must be held.
func (r *run) emit(ev Event) {
	ev.Time = time.Now().UTC()
	ev.Run = r.st.ID
	r.recap.count(ev)
	if ev.Type == EventStepDone {
		r.st.Updated = ev.Time
	}
	if r.e.Sink != nil {
		if err := r.e.Sink(ev.Redacted()); err != nil && r.sinkErr == nil {
			// Finish the hosts in progress, start no other: a soft stop.
			r.sinkErr = err
			r.stopped.Store(true)
			r.e.Log.Error("event output failed: stopping after the hosts in progress", "run", r.st.ID, "err", err)
		}
	}
}

// callGrace is how long past a step's timeout the engine waits for the
// caller to return its (possibly partial) results.
var callGrace = 10 * time.Second

// DefaultSaveBound is how long the engine retries a state save that fails
// (a broker paused or restarting) before it gives up on that save.
const DefaultSaveBound = time.Minute

// save writes the state even when ctx is cancelled, retrying with backoff
// within the engine's SaveBound; r.mu must be held. Every save writes the
// whole state, so a later save that succeeds repairs an earlier failure.
func (r *run) save(ctx context.Context) {
	r.st.Updated = time.Now().UTC()
	bound := r.e.SaveBound
	if bound <= 0 {
		bound = DefaultSaveBound
	}
	if ctx.Err() != nil {
		// Stopping at once was asked for: try to record that, briefly.
		bound = min(bound, 10*time.Second)
	}
	deadline := time.Now().Add(bound)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(min(10*time.Second, time.Until(deadline)), 100*time.Millisecond))
		err := r.e.Store.Save(sctx, r.st)
		cancel()
		if err == nil {
			r.saveErr, r.recorded = nil, r.st.Status
			if attempt > 1 {
				r.e.Log.Warn("run state saved after retries", "run", r.st.ID, "attempts", attempt)
			}
			return
		}
		if time.Now().Add(wait).After(deadline) || errors.Is(err, ErrStoreClosed) {
			r.e.Log.Error("save run state: giving up", "run", r.st.ID, "attempts", attempt, "err", err)
			r.saveErr = err
			return
		}
		r.e.Log.Warn("save run state failed; retrying", "run", r.st.ID, "attempt", attempt, "err", err)
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Second)
	}
}

// OutputError says the run's events could not be written (the JSON lines
// Jenkins reads, the progress, the run log): the run was stopped after the
// hosts in progress, and the command fails.
type OutputError struct {
	Run string
	Err error
}

func (e *OutputError) Error() string {
	return fmt.Sprintf("run %s: event output failed, so the run stopped after the hosts in progress (resume with run id %s): %v", e.Run, e.Run, e.Err)
}

func (e *OutputError) Unwrap() error { return e.Err }

// SaveError says a run ended but its last state could not be recorded:
// the record on the broker may disagree with the fleet.
type SaveError struct {
	Run string
	// Status is how the run ended; Recorded is the last status the store
	// accepted ("" when none was).
	Status, Recorded string
	Err              error
}

func (e *SaveError) Error() string {
	rec := e.Recorded
	if rec == "" {
		rec = "nothing"
	}
	return fmt.Sprintf("run %s ended %s but its record could not be updated and still says %s: the record and the fleet may disagree (the recap above is what happened): %v", e.Run, e.Status, rec, e.Err)
}

func (e *SaveError) Unwrap() error { return e.Err }

// renew confirms the run's lock before a step; on failure the run is
// marked failed so that no host starts another step.
func (r *run) renew(ctx context.Context) error {
	if r.e.Lock == nil {
		return nil
	}
	err := r.e.Lock.Renew(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	r.firstMu.Lock()
	if r.lockErr == nil {
		r.lockErr = err
		r.e.Log.Error("run lock lost: no new step starts", "run", r.st.ID, "err", err)
	}
	r.firstMu.Unlock()
	r.failed.Store(true)
	r.noDispatch.Store(true)
	r.halt.Store(true)
	return err
}

// fail records a host's failure. Within the failure budget the run goes
// on; past it, no new host starts, and under on_failure stop_now the hosts
// in progress stop after their current step.
func (r *run) fail(se *StepError) {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	r.failures = append(r.failures, se)
	r.failed.Store(true)
	if len(r.failures) > r.lim.MaxFailures {
		r.noDispatch.Store(true)
		if r.lim.OnFailure == OnFailureStopNow {
			r.halt.Store(true)
		}
	}
}

func (r *run) hostVars(host string, hs *HostState) map[string]string {
	vars := map[string]string{}
	for k, v := range r.st.Vars {
		vars[k] = v
	}
	for k, v := range hs.Vars {
		vars[k] = v
	}
	vars["identity"] = host
	return vars
}

// host runs the steps of one host.
func (r *run) host(ctx context.Context, batch int, host string) {
	start := time.Now()
	r.mu.Lock()
	hs := r.st.Hosts[host]
	hs.Status, hs.Error, hs.Rollback = HostRunning, "", ""
	r.save(ctx)
	r.mu.Unlock()

	finish := func(status, errText string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		hs.Status = status
		if errText != "" {
			hs.Error = errText
		}
		r.save(ctx)
		r.emit(Event{Type: EventHostDone, Batch: batch, Host: host, Status: status, Error: errText, ElapsedMS: time.Since(start).Milliseconds()})
	}

	skip := map[string]string{}
	if r.job.Prepare != nil {
		// Prepare may observe the host and change its marks and vars; it
		// works on a copy so that the record changes under r.mu only.
		r.mu.Lock()
		cp := *hs
		cp.Marks = slices.Clone(hs.Marks)
		cp.Vars = cloneVars(hs.Vars)
		cp.Unreached = slices.Clone(hs.Unreached)
		r.mu.Unlock()
		s, err := r.job.Prepare(ctx, host, &cp)
		r.mu.Lock()
		hs.Marks, hs.Vars, hs.Unreached = cp.Marks, cp.Vars, cp.Unreached
		r.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				finish(HostInterrupted, "")
				return
			}
			se := &StepError{Host: host, Step: "observe", Detail: err.Error()}
			r.fail(se)
			finish(HostFailed, se.Error())
			return
		}
		skip = s
	} else {
		for _, d := range hs.Done {
			skip[d] = "done in an earlier attempt"
		}
	}

	for _, step := range r.job.Workflow.Steps {
		if ctx.Err() != nil {
			finish(HostInterrupted, "")
			return
		}
		if r.halt.Load() {
			finish(HostStopped, "")
			return
		}
		if _, ok := skip[step.Name]; !ok {
			if err := r.renew(ctx); err != nil {
				if ctx.Err() != nil {
					finish(HostInterrupted, "")
				} else {
					finish(HostStopped, "not started "+step.Name+": "+err.Error())
				}
				return
			}
		}
		if reason, ok := skip[step.Name]; ok {
			r.mu.Lock()
			r.emit(Event{Type: EventStepDone, Batch: batch, Host: host, Step: step.Name, Call: step.Agent + "." + step.Action, Status: StepSkipped, Summary: reason})
			r.mu.Unlock()
			continue
		}
		detail := r.step(ctx, batch, host, hs, step, false)
		if detail == "" {
			continue
		}
		if ctx.Err() != nil {
			finish(HostInterrupted, "")
			return
		}
		se := &StepError{Host: host, Step: step.Name, Detail: detail}
		r.fail(se)
		status := HostFailed
		if r.job.Workflow.OnFailure == OnFailureRollback {
			status = r.rollbackFailed(ctx, batch, host, hs, se)
		}
		finish(status, se.Error())
		return
	}
	r.mu.Lock()
	hs.Step = ""
	r.mu.Unlock()
	finish(HostDone, "")
}

// rollback runs the rollback steps on a failed host and records the
// outcome in se.
func (r *run) rollback(ctx context.Context, batch int, host string, hs *HostState, se *StepError) string {
	r.mu.Lock()
	unknown := r.st.Vars["version"] != "" && hs.Vars["previous"] == ""
	r.mu.Unlock()
	if unknown {
		se.Rollback = "rollback not possible: the previous version is unknown; host held"
		return HostFailed
	}
	for _, step := range r.job.Workflow.Rollback {
		if ctx.Err() != nil {
			se.Rollback = "rollback interrupted at " + step.Name
			return HostRollbackFailed
		}
		if err := r.renew(ctx); err != nil {
			se.Rollback = "rollback not started at " + step.Name + ": " + err.Error()
			return HostRollbackFailed
		}
		if detail := r.step(ctx, batch, host, hs, step, true); detail != "" {
			se.Rollback = "rollback failed: " + step.Name + ": " + detail
			return HostRollbackFailed
		}
	}
	r.mu.Lock()
	prev := hs.Vars["previous"]
	r.mu.Unlock()
	se.Rollback = "rolled back"
	if prev != "" {
		se.Rollback = "rolled back to " + prev
	}
	return HostRolledBack
}

func cloneVars(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// step runs one step for host and returns "" on success or the failure
// detail.
func (r *run) step(ctx context.Context, batch int, host string, hs *HostState, step Step, rollback bool) string {
	r.mu.Lock()
	vars := r.hostVars(host, hs)
	if rollback {
		rollbackVars(vars)
	}
	hs.SetMark(step.Sets)
	if !rollback {
		hs.Step = step.Name
		hs.Touched = hs.Touched || step.Sets != ""
	}
	r.save(ctx)
	call := step.Agent + "." + step.Action
	r.emit(Event{Type: EventStepStart, Batch: batch, Host: host, Step: step.Name, Call: call, Rollback: rollback})
	r.mu.Unlock()

	start := time.Now()
	results, skipped, changed, summary, detail := r.e.do(ctx, host, step, vars, r.silent)
	if step.Partial {
		r.silent.seenIn(strings.Join(partialFilter(step, vars), " "), results)
	}
	if quiet := noResponse(results); len(quiet) > 0 && (step.Partial || step.Target != TargetBroadcast) {
		// Not waited for again by a partial broadcast in this run.
		r.silent.Add(quiet...)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	ev := Event{Type: EventStepDone, Batch: batch, Host: host, Step: step.Name, Call: call, Rollback: rollback, ElapsedMS: time.Since(start).Milliseconds(), Results: results, Summary: summary}
	switch {
	case detail != "":
		ev.Status, ev.Error = StepFailed, host+": "+step.Name+": "+detail
	case changed:
		ev.Status = StepChanged
	default:
		ev.Status = StepOK
	}
	if detail == "" && step.Target == TargetBroadcast {
		hs.Unreached = append(noResponse(results), skipped...)
		slices.Sort(hs.Unreached)
		if len(hs.Unreached) == 0 {
			hs.Unreached = nil
		}
	}
	if detail == "" {
		hs.ClearMark(step.Clears)
		for v, key := range step.Capture {
			for _, res := range results {
				if s, ok := res.Data[key].(string); ok && s != "" && hs.Vars[v] == "" {
					if hs.Vars == nil {
						hs.Vars = map[string]string{}
					}
					hs.Vars[v] = s
				}
			}
		}
		if !rollback {
			hs.Done = append(hs.Done, step.Name)
		}
	}
	r.save(ctx)
	r.emit(ev)
	return detail
}

// do performs the call of a step and judges it.
func (e *Engine) do(ctx context.Context, host string, step Step, vars map[string]string, silent *Silent) (results []Result, skipped []string, changed bool, summary, detail string) {
	if step.WaitBoot > 0 {
		return e.reboot(ctx, host, step, vars, silent) // reboot.go
	}
	results, changed, summary, detail = e.call(ctx, host, step, vars, silent, &skipped)
	return results, skipped, changed, summary, detail
}

// call performs the call of a step and judges it; a partial broadcast
// that leaves out silent hosts lists them in *skipped.
func (e *Engine) call(ctx context.Context, host string, step Step, vars map[string]string, silent *Silent, skipped *[]string) (results []Result, changed bool, summary, detail string) {
	params, err := expandMap(step.Params, vars)
	if err != nil {
		return nil, false, "", "params: " + err.Error()
	}
	timeout := step.Timeout
	if timeout == 0 {
		timeout = DefaultStepTimeout
	}
	c := Call{Agent: step.Agent, Action: step.Action, Params: params, Timeout: timeout}
	if step.Target == TargetBroadcast {
		f, err := expandList(step.Filter, vars)
		if err != nil {
			return nil, false, "", "filter: " + err.Error()
		}
		c.Filter = append([]string{"agent=" + step.Agent}, f...)
		if step.Partial {
			call, left, err := e.broadcastTargets(ctx, silent, c.Filter)
			if err != nil {
				return nil, false, "", "discover " + strings.Join(c.Filter, " ") + ": " + err.Error()
			}
			if len(left) > 0 {
				*skipped = left
				if len(call) == 0 {
					return nil, false, "", fmt.Sprintf("every host matching %s is silent in this run: %s", strings.Join(c.Filter, " "), strings.Join(left, ", "))
				}
				c.Filter, c.Hosts = nil, call
			}
		}
	} else {
		c.Hosts = []string{host}
	}
	callStart := time.Now()
	cctx, cancel := context.WithTimeout(ctx, timeout+callGrace)
	defer cancel()
	results, err = e.Caller.Call(cctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return results, false, "", "interrupted: " + ctx.Err().Error()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// The caller itself did not return within the step's timeout
			// and the grace: name the time actually waited.
			return results, false, "", fmt.Sprintf("no response within %s (step timeout %s)", time.Since(callStart).Round(time.Second), timeout)
		}
		return results, false, "", fmt.Sprintf("call %s.%s: %v", step.Agent, step.Action, err)
	}
	var sums []string
	for _, res := range results {
		changed = changed || res.Changed
		if res.Summary != "" {
			if step.Target == TargetBroadcast {
				sums = append(sums, res.Host+": "+res.Summary)
			} else {
				sums = append(sums, res.Summary)
			}
		}
	}
	summary = strings.Join(sums, "; ")
	if step.Check != nil {
		if err := step.Check(vars, results); err != nil {
			return results, changed, summary, err.Error()
		}
		return results, changed, summary, ""
	}
	if err := DefaultCheck(step, host, vars, results); err != nil {
		return results, changed, summary, err.Error()
	}
	return results, changed, summary, ""
}

// DefaultCheck is the check of a step without its own: every answer OK and
// holding step.Expect; a targeted host must answer; a broadcast must be
// answered by at least one host.
func DefaultCheck(step Step, host string, vars map[string]string, results []Result) error {
	timeout := step.Timeout
	if timeout == 0 {
		timeout = DefaultStepTimeout
	}
	expect, err := expandMap(step.Expect, vars)
	if err != nil {
		return fmt.Errorf("expect: %w", err)
	}
	if step.Target == TargetBroadcast {
		answered := 0
		for _, res := range results {
			if !res.NoResponse {
				answered++
			}
		}
		if len(results) == 0 || step.Partial && answered == 0 {
			f, _ := expandList(step.Filter, vars)
			return fmt.Errorf("no response within %s from any host matching %s", timeout, strings.Join(append([]string{"agent=" + step.Agent}, f...), " "))
		}
		for _, res := range results {
			if step.Partial && res.NoResponse {
				continue // named in the recap as unreached
			}
			if err := judge(step, res, expect, timeout); err != nil {
				return fmt.Errorf("%s: %w", res.Host, err)
			}
		}
		return nil
	}
	for _, res := range results {
		if res.Host == host {
			return judge(step, res, expect, timeout)
		}
	}
	return fmt.Errorf("no response within %s", timeout)
}

func judge(step Step, res Result, expect map[string]any, timeout time.Duration) error {
	if res.NoResponse {
		if res.Error != "" {
			// The caller's own words: how long it really waited, or
			// that nothing listened on the host's subject.
			return errors.New(res.Error)
		}
		return fmt.Errorf("no response within %s", timeout)
	}
	if !res.OK {
		return errors.New(FailureDetail(step.Agent, res))
	}
	for k, want := range expect {
		got, ok := res.Data[k]
		if !ok {
			return fmt.Errorf("want %s=%v, found no %s in the answer", k, want, k)
		}
		if !sameValue(want, got) {
			return fmt.Errorf("want %s=%v, found %v", k, want, got)
		}
	}
	return nil
}

// FailureDetail is the operator-facing reason of a failed result: its
// Error (or Summary) without the plugin's own "agent name: " prefix, so
// that "package nginx: want 1.4.2, installed 1.4.1" reads "want 1.4.2,
// installed 1.4.1" after "web3: check_version: ".
func FailureDetail(agent string, res Result) string {
	msg := res.Error
	if msg == "" {
		msg = res.Summary
	}
	if msg == "" {
		return "failed without a reason"
	}
	if rest, ok := strings.CutPrefix(msg, agent+" "); ok {
		if i := strings.Index(rest, ": "); i > 0 && !strings.ContainsAny(rest[:i], " \t") {
			return rest[i+2:]
		}
	}
	return msg
}

func sameValue(want, got any) bool {
	if a, ok := toFloat(want); ok {
		b, ok := toFloat(got)
		return ok && a == b
	}
	return reflect.DeepEqual(want, got)
}

func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case uint64:
		return float64(v), true
	}
	return 0, false
}
