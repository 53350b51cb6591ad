package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/redact"
)

// Exec is everything one run needs besides the engine's own inputs: who,
// where the output goes, and the lock. Deploy and custom workflows both
// start runs through Execute.
type Exec struct {
	Job *Job
	// Kind and LockName make the lock ("deploy", "middleware/prod").
	Kind, LockName string
	// Output receives the events as text or JSON lines (Format "json").
	Output io.Writer
	Format string
	// LogFile, when set, receives every event as a JSON line (appended).
	LogFile string
	Caller  Caller
	Store   Store
	// User is the operator, such as "alice@bastion"; it names the lock holder.
	User string
	Log  *slog.Logger
}

// Execute takes the lock, runs the job with the outputs wired and releases
// the lock.
func Execute(ctx context.Context, soft <-chan struct{}, x Exec) (*Recap, error) {
	if x.Caller == nil || x.Store == nil {
		return nil, errors.New("workflows: a caller and a store are required")
	}
	if x.User == "" {
		return nil, errors.New("workflows: the operator's name is required for the lock")
	}
	sink, closeLog, err := sinks(x.Output, x.Format, x.LogFile)
	if err != nil {
		return nil, err
	}
	defer closeLog()
	held, err := x.Store.Lock(ctx, x.LockName, Lease{Kind: x.Kind, Holder: x.User, Run: x.Job.State.ID, Since: time.Now()})
	if err != nil {
		return nil, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := held.Unlock(uctx); err != nil && x.Log != nil {
			x.Log.Error("release lock", "lock", x.LockName, "err", err)
		}
	}()
	e := &Engine{Caller: x.Caller, Store: x.Store, Sink: sink, Log: x.Log, Lock: held}
	return e.Run(ctx, soft, x.Job)
}

func sinks(out io.Writer, format, logFile string) (Sink, func(), error) {
	var s []Sink
	switch format {
	case "", "text":
		if out != nil {
			s = append(s, TextSink(out))
		}
	case "json":
		if out != nil {
			s = append(s, JSONSink(out))
		}
	default:
		return nil, nil, fmt.Errorf("output format: want text or json, found %q", format)
	}
	closeLog := func() {}
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("run log: %w", err)
		}
		s = append(s, JSONSink(f))
		closeLog = func() { f.Close() }
	}
	return Tee(s...), closeLog, nil
}

// PlanStep is one call of a plan, its params expanded for the host.
type PlanStep struct {
	Name   string         `json:"name"`
	Call   string         `json:"call"`
	Target string         `json:"target"`
	Filter []string       `json:"filter,omitempty"`
	Params map[string]any `json:"params,omitempty"`
}

// PlanHost is one host of a plan.
type PlanHost struct {
	Host  string     `json:"host"`
	Zone  string     `json:"zone,omitempty"`
	Steps []PlanStep `json:"steps"`
}

// PlanView is what `--plan` shows: every batch, host and step; nothing is
// run.
type PlanView struct {
	Summary string       `json:"summary"`
	Batches [][]PlanHost `json:"batches"`
	// Limits is the capacity and failure policy the run would keep to.
	Limits *Limits `json:"limits,omitempty"`
	// Preflight is the check of the fleet: expected, answered, missing.
	Preflight *Preflight `json:"preflight,omitempty"`
}

// BuildPlan expands the steps for every host of the batches.
func BuildPlan(summary string, batches [][]string, hosts []Host, zoneFact string, steps []Step, vars map[string]string) (*PlanView, error) {
	if zoneFact == "" {
		zoneFact = "zone"
	}
	zone := map[string]string{}
	for _, h := range hosts {
		zone[h.Identity] = h.Facts[zoneFact]
	}
	pv := &PlanView{Summary: summary}
	for _, b := range batches {
		var pb []PlanHost
		for _, h := range b {
			hv := map[string]string{}
			for k, v := range vars {
				hv[k] = v
			}
			hv["identity"] = h
			ph := PlanHost{Host: h, Zone: zone[h]}
			for _, s := range steps {
				params, err := expandMap(s.Params, hv)
				if err != nil {
					return nil, fmt.Errorf("plan: %s: %s: %w", h, s.Name, err)
				}
				filter, err := expandList(s.Filter, hv)
				if err != nil {
					return nil, fmt.Errorf("plan: %s: %s: %w", h, s.Name, err)
				}
				t := s.Target
				if t == "" {
					t = TargetEach
				}
				ph.Steps = append(ph.Steps, PlanStep{Name: s.Name, Call: s.Agent + "." + s.Action, Target: t, Filter: filter, Params: params})
			}
			pb = append(pb, ph)
		}
		pv.Batches = append(pv.Batches, pb)
	}
	return pv, nil
}

// Write renders the plan as text or JSON.
func (p *PlanView) Write(w io.Writer, format string) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(p.redacted())
	}
	n := 0
	for _, b := range p.Batches {
		n += len(b)
	}
	fmt.Fprintf(w, "plan: %s: %d hosts in %d batches (nothing is run)\n", p.Summary, n, len(p.Batches))
	if p.Limits != nil {
		fmt.Fprintf(w, "policy: %s\n", p.Limits)
	}
	if p.Preflight != nil {
		p.Preflight.WriteText(w)
	}
	for i, b := range p.Batches {
		var names []string
		for _, h := range b {
			names = append(names, h.Host+zoneSuffix(h.Zone))
		}
		fmt.Fprintf(w, "batch %d/%d: %s\n", i+1, len(p.Batches), strings.Join(names, ", "))
		for _, h := range b {
			fmt.Fprintf(w, "  %s\n", h.Host)
			for j, s := range h.Steps {
				on := ""
				if s.Target == TargetBroadcast {
					on = " on " + strings.Join(s.Filter, " ")
				}
				fmt.Fprintf(w, "    %d. %-18s %s%s %s\n", j+1, s.Name, s.Call, on, formatParams(s.Params))
			}
		}
	}
	return nil
}

// redacted is a copy of the plan with every step's parameters redacted.
func (p *PlanView) redacted() *PlanView {
	out := &PlanView{Summary: p.Summary, Limits: p.Limits, Preflight: p.Preflight}
	for _, b := range p.Batches {
		nb := make([]PlanHost, len(b))
		for i, h := range b {
			nh := h
			nh.Steps = make([]PlanStep, len(h.Steps))
			for j, st := range h.Steps {
				st.Params = redact.Params(st.Params, nil)
				nh.Steps[j] = st
			}
			nb[i] = nh
		}
		out.Batches = append(out.Batches, nb)
	}
	return out
}

func zoneSuffix(z string) string {
	if z == "" {
		return ""
	}
	return " (zone " + z + ")"
}

// formatParams shows a step's parameters, redacted: a plan is printed and
// kept in CI logs.
func formatParams(p map[string]any) string {
	p = redact.Params(p, nil)
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return strings.Join(parts, " ")
}
