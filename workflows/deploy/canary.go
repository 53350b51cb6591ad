package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/signetbus/signet/workflows"
)

// Rollout is a command-line override of the app file's canary and gates;
// a zero field keeps the app file's value.
type Rollout struct {
	// Canary replaces the canary hosts: identities, or the single word
	// "per-zone" for one host per zone. "none" runs without a canary.
	Canary []string
	// Bake and Promote override the canary's bake and promotion mode.
	Bake    time.Duration
	Promote string
	// GatesFile replaces the app file's gates with those of a YAML file
	// holding a `gates:` mapping's content (interval, checks, ...).
	GatesFile string
	// GateInterval and InconclusiveFor override the gates' timing.
	GateInterval, InconclusiveFor time.Duration
	// DecisionPoll is how often a waiting canary looks for a decision;
	// default workflows.DefaultDecisionPoll.
	DecisionPoll time.Duration
}

// apply sets the overrides on a (ForEnv applied) and validates the result.
func (ro Rollout) apply(a *App) error {
	switch {
	case len(ro.Canary) == 1 && ro.Canary[0] == "none":
		a.Canary = nil
	case len(ro.Canary) > 0:
		c := &workflows.Canary{}
		if a.Canary != nil {
			*c = *a.Canary
		}
		c.Hosts, c.OnePerZone = nil, false
		if len(ro.Canary) == 1 && ro.Canary[0] == "per-zone" {
			c.OnePerZone = true
		} else {
			c.Hosts = ro.Canary
		}
		a.Canary = c
	}
	if ro.Bake != 0 || ro.Promote != "" {
		if a.Canary == nil {
			return fmt.Errorf("app %s: --bake and --canary-promote need a canary: set canary: in the app file or pass --canary", a.Name)
		}
		c := *a.Canary
		if ro.Bake != 0 {
			c.Bake = ro.Bake
		}
		if ro.Promote != "" {
			c.Promote = ro.Promote
		}
		a.Canary = &c
	}
	if ro.GatesFile != "" {
		f, err := os.Open(ro.GatesFile)
		if err != nil {
			return fmt.Errorf("gates file: %w", err)
		}
		var g workflows.Gates
		err = workflows.DecodeYAML(f, &g)
		f.Close()
		if err != nil {
			return fmt.Errorf("gates file %s: %w", ro.GatesFile, err)
		}
		a.Gates = &g
	}
	if ro.GateInterval != 0 || ro.InconclusiveFor != 0 {
		if a.Gates == nil {
			return fmt.Errorf("app %s: --gate-interval and --gate-inconclusive-for need gates: set gates: in the app file or pass --gates", a.Name)
		}
		g := *a.Gates
		if ro.GateInterval != 0 {
			g.Interval = ro.GateInterval
		}
		if ro.InconclusiveFor != 0 {
			g.InconclusiveFor = ro.InconclusiveFor
		}
		a.Gates = &g
	}
	return a.Validate()
}

// canaryChecks are the checks of each bake round on every canary host:
// the deploy's health check, one attempt (the bake's interval is the
// retry).
func (a *App) canaryChecks() []workflows.Step {
	for _, s := range a.Steps() {
		if s.Name == StepHealth {
			p := make(map[string]any, len(s.Params))
			for k, v := range s.Params {
				p[k] = v
			}
			p["retries"] = int64(1)
			s.Params = p
			s.Timeout = a.Health.Timeout + 10*time.Second
			return []workflows.Step{s}
		}
	}
	return nil
}

// Decision is `signet deploy --promote RUN` or `--abort RUN`.
type Decision struct {
	// Run is the run id. Required.
	Run string
	// Decision is workflows.DecisionPromote or DecisionAbort.
	Decision string
}

// WaitingClientError says the decision was recorded and the client that
// runs the canary, still waiting, acts on it: nothing more to do here.
type WaitingClientError struct {
	Run, Decision string
	Holder        workflows.Lease
}

func (e *WaitingClientError) Error() string {
	return fmt.Sprintf("run %s: %s recorded; the client of %s that holds the run (since %s) acts on it; if that client is gone, its lock expires within minutes: then run signet deploy --resume %s",
		e.Run, e.Decision, e.Holder.Holder, e.Holder.Since.Local().Format(time.TimeOnly), e.Run)
}

// Decide records a promote or abort decision on a run whose canary waits
// for one, in the signed run state, then continues the run here unless
// the client that started it still waits on it (its lock is held): that
// client then acts on the decision, and Decide returns a
// *WaitingClientError saying so. An abort ends the run failed; the
// canary hosts keep the new version.
func Decide(ctx context.Context, soft <-chan struct{}, d Decision, opts Options) (*workflows.Recap, error) {
	if opts.Store == nil {
		return nil, errors.New("deploy: a store is required")
	}
	if opts.User == "" {
		return nil, errors.New("deploy: the operator's name is required to record a decision")
	}
	st, err := opts.Store.Load(ctx, d.Run)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", d.Decision, d.Run, err)
	}
	if st.Workflow != "deploy" {
		return nil, fmt.Errorf("%s %s: want a deploy run, found workflow %q", d.Decision, d.Run, st.Workflow)
	}
	// Recorded with a compare-and-set: of two operators deciding at
	// once, one is told the other already decided.
	if _, err := workflows.RecordDecision(ctx, opts.Store, d.Run, d.Decision, opts.User, time.Now()); err != nil {
		if errors.Is(err, workflows.ErrNotWaiting) {
			return nil, err
		}
		return nil, fmt.Errorf("%s %s: record the decision: %w", d.Decision, d.Run, err)
	}
	opts.Yes = true
	recap, err := Resume(ctx, soft, d.Run, opts)
	var le *workflows.LockError
	if errors.As(err, &le) && le.Holder.Run == d.Run {
		return nil, &WaitingClientError{Run: d.Run, Decision: d.Decision, Holder: le.Holder}
	}
	return recap, err
}

// canaryPlan is the canary part of --plan's summary.
func canaryPlan(c *workflows.CanaryState) string {
	return fmt.Sprintf("canary %s first, baked %s (checked every %s), then promoted %s", strings.Join(c.Hosts, ", "), c.Bake, c.Interval, c.Promote)
}

// gatesPlan is the gates part of --plan's summary.
func gatesPlan(g *workflows.Gates) string {
	names := make([]string, 0, len(g.Checks))
	for _, c := range g.Checks {
		names = append(names, c.Name)
	}
	return "gates " + strings.Join(names, ", ") + " before each batch after the first"
}
