package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Event types of gates and canaries.
const (
	// EventGate is one check of one gate: Step is the gate, Status its
	// verdict, Summary what was found, Error why it did not pass.
	EventGate = "gate"
	// EventCanary is a canary changing phase: Status is the phase,
	// Hosts the canary, Summary what happens next.
	EventCanary = "canary"
)

// DefaultDecisionPoll is how often a waiting canary looks for a decision.
const DefaultDecisionPoll = 2 * time.Second

// beforeBatch runs what must hold before batch bi starts: the canary's
// bake and promotion when bi is the first batch after the canary, then
// the gates. A nil error lets the batch start; an error ends the run
// with the status canaryStatus gives it.
func (r *run) beforeBatch(ctx context.Context, pos, bi int, stopped *atomic.Bool) error {
	c := r.st.Canary
	if c != nil && c.Phase != CanaryPromoted && !slices.ContainsFunc(r.st.Batches[bi], func(h string) bool { return slices.Contains(c.Hosts, h) }) {
		if err := r.canary(ctx, stopped); err != nil {
			return err
		}
	}
	if r.job.Gates == nil {
		return nil
	}
	if pos == 0 && !r.anyDone() {
		return nil // nothing deployed yet in this run: nothing to judge
	}
	return r.gateWait(ctx, fmt.Sprintf("before batch %d of %d", bi+1, len(r.st.Batches)), stopped)
}

func (r *run) anyDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, hs := range r.st.Hosts {
		if hs.Status == HostDone {
			return true
		}
	}
	return false
}

// canaryStatus is the run status an error of beforeBatch ends the run
// with: interrupted on a cancelled context, stopped (resumable) on a soft
// stop or gates inconclusive for too long, failed otherwise.
func canaryStatus(ctx context.Context, err error) string {
	switch {
	case ctx.Err() != nil:
		return StatusInterrupted
	case errors.Is(err, ErrStopped):
		return StatusStopped
	}
	return StatusFailed
}

// canaryErr is the run's error when beforeBatch ended it: the gate or
// canary error, with the host failures of the run when there were any.
func (r *run) canaryErr(status string, err error) error {
	if r.gateErr == nil || status == StatusInterrupted {
		return err
	}
	r.firstMu.Lock()
	n := len(r.failures)
	r.firstMu.Unlock()
	if status == StatusFailed && n > 0 {
		return errors.Join(r.gateErr, r.failErr())
	}
	return r.gateErr
}

// canary bakes the canary and promotes it, or waits for a decision.
func (r *run) canary(ctx context.Context, stopped *atomic.Bool) error {
	c := r.st.Canary
	r.mu.Lock()
	var bad []string
	for _, h := range c.Hosts {
		if r.st.Hosts[h].Status != HostDone {
			bad = append(bad, h+" ("+r.st.Hosts[h].Status+")")
		}
	}
	r.mu.Unlock()
	if len(bad) > 0 {
		return r.setGateErr(fmt.Errorf("canary not promoted: %s did not finish its deploy", strings.Join(bad, ", ")))
	}
	if c.Decision == DecisionAbort {
		return r.aborted()
	}
	if c.Decision != DecisionPromote {
		if c.Phase != CanaryWaiting {
			if err := r.bake(ctx, stopped); err != nil {
				return err
			}
		}
		if c.Promote == PromoteManual {
			if err := r.awaitDecision(ctx, stopped); err != nil {
				return err
			}
		} else {
			r.mu.Lock()
			c.Decision, c.DecidedBy, c.DecidedAt = DecisionPromote, "auto", time.Now().UTC()
			r.mu.Unlock()
		}
	}
	if c.Decision == DecisionAbort {
		return r.aborted()
	}
	if c.DecidedBy != "auto" {
		// A person decided, maybe a while ago, maybe on a record another
		// client was just ending: look at the canary once more.
		if err := r.watchUntilPassed(ctx, &watch{r: r, when: "at the promotion of the canary"}, stopped); err != nil {
			return err
		}
	}
	r.mu.Lock()
	c.Phase = CanaryPromoted
	r.st.Status = StatusRunning
	r.save(ctx)
	r.emit(Event{Type: EventCanary, Status: CanaryPromoted, Hosts: c.Hosts, Summary: "promoted by " + c.DecidedBy + ": the rest of the fleet follows"})
	r.mu.Unlock()
	return nil
}

// aborted records the canary aborted; the run ends failed.
func (r *run) aborted() error {
	c := r.st.Canary
	r.mu.Lock()
	c.Phase = CanaryAborted
	r.emit(Event{Type: EventCanary, Status: CanaryAborted, Hosts: c.Hosts, Summary: "aborted by " + c.DecidedBy + ": no other host is touched"})
	r.mu.Unlock()
	return r.setGateErr(&CanaryAbortedError{Run: r.st.ID, By: c.DecidedBy, Hosts: c.Hosts})
}

func (r *run) setGateErr(err error) error {
	r.firstMu.Lock()
	if r.gateErr == nil {
		r.gateErr = err
	}
	r.firstMu.Unlock()
	return err
}

// bake watches the canary for its bake time: health checks and gates
// every interval. The bake ends once the time is up and the last check
// passed.
func (r *run) bake(ctx context.Context, stopped *atomic.Bool) error {
	c := r.st.Canary
	r.mu.Lock()
	c.Phase = CanaryBaking
	r.save(ctx)
	r.emit(Event{Type: EventCanary, Status: CanaryBaking, Hosts: c.Hosts, Summary: fmt.Sprintf("baking for %s, checked every %s", c.Bake, c.Interval)})
	r.mu.Unlock()
	end := time.Now().Add(c.Bake)
	w := &watch{r: r, when: "during the bake of the canary"}
	for {
		passed, err := w.round(ctx)
		if err != nil {
			return err
		}
		if passed && !time.Now().Before(end) {
			break
		}
		d := c.Interval
		if passed {
			d = min(d, time.Until(end))
		}
		if err := r.sleep(ctx, d, stopped); err != nil {
			return err
		}
	}
	r.mu.Lock()
	c.BakedAt = time.Now().UTC()
	r.save(ctx)
	r.mu.Unlock()
	return nil
}

// awaitDecision records that the canary waits, then watches it every
// interval and looks for a decision in the stored run state until one
// comes.
func (r *run) awaitDecision(ctx context.Context, stopped *atomic.Bool) error {
	c := r.st.Canary
	r.mu.Lock()
	c.Phase = CanaryWaiting
	r.st.Status = StatusWaiting
	r.save(ctx)
	r.emit(Event{Type: EventCanary, Status: CanaryWaiting, Hosts: c.Hosts,
		Summary: fmt.Sprintf("baked; waiting for `signet deploy --promote %s` or `--abort %s`", r.st.ID, r.st.ID)})
	r.mu.Unlock()
	poll := r.job.DecisionPoll
	if poll <= 0 {
		poll = DefaultDecisionPoll
	}
	w := &watch{r: r, when: "while the canary waited for a decision"}
	next := time.Now().Add(c.Interval)
	for {
		if err := r.sleep(ctx, min(poll, max(time.Until(next), 0)), stopped); err != nil {
			// Going away: keep a decision recorded since the last look,
			// so that the run's last save does not erase it.
			r.readDecision(context.WithoutCancel(ctx))
			return err
		}
		if err := r.renew(ctx); err != nil {
			return r.setGateErr(err)
		}
		if r.readDecision(ctx) {
			return nil
		}
		if !time.Now().Before(next) {
			if _, err := w.round(ctx); err != nil {
				return err
			}
			next = time.Now().Add(c.Interval)
		}
	}
}

// readDecision looks for a decision in the stored run state and adopts
// it; it reports whether there was one.
func (r *run) readDecision(ctx context.Context) bool {
	c := r.st.Canary
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := r.e.Store.Load(lctx, r.st.ID)
	cancel()
	switch {
	case err != nil:
		// A record changed by a key this client does not trust, or
		// unreadable for now: not a decision.
		r.e.Log.Warn("canary: reading the run state for a decision failed; still waiting", "run", r.st.ID, "err", err)
		return false
	case st.Canary == nil || st.Canary.Decision == "":
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c.Decision, c.DecidedBy, c.DecidedAt = st.Canary.Decision, st.Canary.DecidedBy, st.Canary.DecidedAt
	r.emit(Event{Type: EventCanary, Status: c.Decision, Hosts: c.Hosts, Summary: "decided by " + c.DecidedBy})
	return true
}

// sleep waits d; it returns the context's error or a soft stop.
func (r *run) sleep(ctx context.Context, d time.Duration, stopped *atomic.Bool) error {
	if d > 0 {
		r.pause(ctx, d, stopped)
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if stopped.Load() {
		return fmt.Errorf("%w while the canary or the gates were watched: resume with run id %s", ErrStopped, r.st.ID)
	}
	return nil
}

// gateWait checks the gates until they pass: a fail ends the run failed,
// inconclusive checks are asked again every interval until they have
// lasted longer than inconclusive_for, which halts the run (stopped).
func (r *run) gateWait(ctx context.Context, when string, stopped *atomic.Bool) error {
	return r.watchUntilPassed(ctx, &watch{r: r, when: when, gatesOnly: true}, stopped)
}

// watchUntilPassed repeats w's rounds every gate interval until one
// passes, one fails or they have been inconclusive too long.
func (r *run) watchUntilPassed(ctx context.Context, w *watch, stopped *atomic.Bool) error {
	iv := DefaultGateInterval
	if r.job.Gates != nil {
		iv = r.job.Gates.interval()
	}
	for {
		passed, err := w.round(ctx)
		if err != nil || passed {
			return err
		}
		if err := r.sleep(ctx, iv, stopped); err != nil {
			return err
		}
	}
}

// watch is a series of checks of the canary's health and of the gates,
// with the time they have been inconclusive.
type watch struct {
	r         *run
	when      string
	gatesOnly bool
	since     time.Time // first inconclusive round of the current series
}

// round checks once. passed is false on an inconclusive round; err is
// set on a failure, or when the rounds have been inconclusive too long.
func (w *watch) round(ctx context.Context) (passed bool, err error) {
	r := w.r
	if !w.gatesOnly {
		if err := r.canaryHealth(ctx); err != nil {
			return false, err
		}
	}
	if r.job.Gates == nil {
		return true, nil
	}
	results := r.job.Gates.Check(ctx)
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	passed = true
	r.mu.Lock()
	for _, res := range results {
		ev := Event{Type: EventGate, Step: res.Gate, Status: res.Verdict, Summary: res.Query + ": " + res.Value}
		if res.Verdict != GatePass {
			ev.Error = res.Detail
		}
		r.emit(ev)
	}
	r.mu.Unlock()
	for _, res := range results {
		switch res.Verdict {
		case GateFail:
			return false, r.setGateErr(&GateError{When: w.when, Result: res})
		case GateInconclusive:
			passed = false
		}
	}
	if passed {
		w.since = time.Time{}
		return true, nil
	}
	if w.since.IsZero() {
		w.since = time.Now()
	}
	if lim := r.job.Gates.inconclusiveFor(); time.Since(w.since) >= lim {
		return false, r.setGateErr(&GateHaltError{Run: r.st.ID, When: w.when, For: lim, Results: results})
	}
	return false, nil
}

// canaryHealth runs the job's canary checks (the deploy's health check)
// on every canary host; a failure fails the run, naming the host.
func (r *run) canaryHealth(ctx context.Context) error {
	for _, h := range r.st.Canary.Hosts {
		for _, step := range r.job.CanaryChecks {
			r.mu.Lock()
			hs := r.st.Hosts[h]
			vars := r.hostVars(h, hs)
			r.mu.Unlock()
			start := time.Now()
			results, _, _, summary, detail := r.e.do(ctx, h, step, vars, r.silent)
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			r.mu.Lock()
			ev := Event{Type: EventStepDone, Host: h, Step: "bake_" + step.Name, Call: step.Agent + "." + step.Action, ElapsedMS: time.Since(start).Milliseconds(), Results: results, Summary: summary, Status: StepOK}
			if detail != "" {
				ev.Status, ev.Error = StepFailed, h+": "+step.Name+": "+detail
				hs.Status, hs.Error = HostFailed, "bake: "+step.Name+": "+detail
				r.save(ctx)
			}
			r.emit(ev)
			r.mu.Unlock()
			if detail != "" {
				return r.setGateErr(&StepError{Host: h, Step: "bake " + step.Name, Detail: detail})
			}
		}
	}
	return nil
}

// writeCanaryText writes a gate or canary event for people:
//
//	  gate errors           pass      app_error_ratio < 0.01: 0.001
//	canary web1: baking for 10m0s, checked every 30s
func writeCanaryText(w io.Writer, e Event) {
	if e.Type == EventCanary {
		fmt.Fprintf(w, "canary %s: %s: %s\n", strings.Join(e.Hosts, " "), e.Status, e.Summary)
		return
	}
	line := fmt.Sprintf("  gate %-16s %-12s %s", e.Step, e.Status, e.Summary)
	if e.Error != "" {
		line += " (" + e.Error + ")"
	}
	fmt.Fprintln(w, line)
}
