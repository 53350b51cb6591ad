package workflows

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/internal/yamlerr"
)

// Step targets.
const (
	TargetEach      = "each"
	TargetBroadcast = "broadcast"
)

// Failure policies.
const (
	// OnFailureHold leaves the failed host as it is (out of rotation, in
	// maintenance) for a human to look at.
	OnFailureHold = "hold"
	// OnFailureRollback runs the workflow's rollback steps on the failed host.
	OnFailureRollback = "rollback"
)

// DefaultStepTimeout bounds a step that sets no timeout.
const DefaultStepTimeout = 30 * time.Second

// Step is one plugin action run for each host of a batch. In a workflow
// file it is one entry of `steps:` or `rollback:`.
type Step struct {
	// Name identifies the step in events, errors and the run state. Lowercase
	// letters, digits, '_' and '-'; unique within the workflow. Required.
	Name string `yaml:"name" json:"name"`
	// Agent is the plugin to call ("package", "service", ...). Required.
	Agent string `yaml:"agent" json:"agent"`
	// Action is the plugin action ("update", "stop", ...). Required.
	Action string `yaml:"action" json:"action"`
	// Params are the action's parameters. String values are templates over
	// {{identity}} (the host being worked on), {{version}} and the run's
	// vars; a reference to an unset variable is an error.
	Params map[string]any `yaml:"params,omitempty" json:"params,omitempty"`
	// Target is "each" (default): call the host being worked on; or
	// "broadcast": call every host that has Agent and matches Filter, on
	// behalf of the host being worked on (every HAProxy that routes to it).
	// A broadcast step fails when nobody answers or any answer fails.
	Target string `yaml:"target,omitempty" json:"target,omitempty"`
	// Partial, on a broadcast step, lets it succeed when some matching
	// hosts do not answer, as long as one answered and every answer is
	// good: a dead load balancer does not fail the healthy host being
	// enabled. The hosts that did not answer are named in the recap
	// (their state for this host may be stale) and are not waited for
	// again in the run.
	Partial bool `yaml:"partial,omitempty" json:"partial,omitempty"`
	// Filter selects the hosts of a broadcast step (bus filter expressions,
	// templated); "agent=AGENT" is always added. Only with target broadcast.
	Filter []string `yaml:"filter,omitempty" json:"filter,omitempty"`
	// Expect lists values every answer's Data must hold, e.g. {active: true}.
	// String values are templates. Numbers compare by value.
	Expect map[string]any `yaml:"expect,omitempty" json:"expect,omitempty"`
	// Timeout bounds the call; default 30s. A host that has not answered by
	// then fails the step ("no response within 30s").
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Sets names a rotation mark ("drained", "maintenance") the host gets
	// when the step starts; the run reports marked hosts as out of rotation.
	Sets string `yaml:"sets,omitempty" json:"sets,omitempty"`
	// Clears names the mark removed when the step succeeds.
	Clears string `yaml:"clears,omitempty" json:"clears,omitempty"`
	// Capture saves answer Data into host variables for later steps and
	// the rollback: {previous: previous} stores Data["previous"] as
	// {{previous}}. An empty value or an already set variable is kept.
	Capture map[string]string `yaml:"capture,omitempty" json:"capture,omitempty"`

	// WaitBoot, on a step that reboots the host (agent reboot), waits up
	// to this long after the call until the host's signetd registers
	// again with a new boot id ("10m"); the step fails if it does not.
	// The host going down before it answers is not a failure. Only with
	// target each.
	WaitBoot time.Duration `yaml:"wait_boot,omitempty" json:"wait_boot,omitempty"`

	// Check, for built-in steps, judges the answers instead of the default
	// check (all OK, Expect holds). It returns the failure detail, such as
	// "want 1.4.2, installed 1.4.1". vars are the expanded host variables.
	Check func(vars map[string]string, results []Result) error `yaml:"-" json:"-"`
}

// Batching says how hosts are grouped into batches.
type Batching struct {
	// BatchSize is how many hosts are worked on at once: a number ("2") or a
	// share of the hosts ("25%", rounded up). Default 1.
	BatchSize string `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// ZoneFact is the host fact naming its failure zone; default "zone".
	// Hosts without the fact count as one shared zone.
	ZoneFact string `yaml:"zone_fact,omitempty" json:"zone_fact,omitempty"`
	// AllowSameZone lets a batch hold more than one host of a zone. Batches
	// are still spread across zones.
	AllowSameZone bool `yaml:"allow_same_zone,omitempty" json:"allow_same_zone,omitempty"`
	// Pause waits between batches ("30s"); a soft stop ends the wait.
	Pause time.Duration `yaml:"pause,omitempty" json:"pause,omitempty"`
	// Strategy is "batches" (default: lock-step batches) or "window": a
	// sliding window in which the next host starts as soon as one
	// finishes, within the caps (window.go). A window keeps at most one
	// host per zone out at once unless max_unavailable_per_zone or
	// allow_same_zone says otherwise; it has no pause.
	Strategy string `yaml:"strategy,omitempty" json:"strategy,omitempty"`
	// Capacity: max_unavailable, max_unavailable_per_zone and
	// max_failures, inline.
	Capacity `yaml:",inline"`
}

// Workflow is a custom workflow file: steps run batch by batch on the hosts
// matching Hosts. Version 1 is the only format.
type Workflow struct {
	// Version is the file format version; must be 1.
	Version int `yaml:"version"`
	// Name names the workflow in locks, events and the run state; lowercase
	// letters, digits, '_' and '-'. Required.
	Name string `yaml:"name"`
	// Description is one line for people.
	Description string `yaml:"description,omitempty"`
	// Hosts is the discovery filter (bus filter expressions). Required: a
	// workflow never runs on every host by default.
	Hosts []string `yaml:"hosts"`
	// Batching: batch_size, zone_fact, allow_same_zone and pause, inline.
	Batching `yaml:",inline"`
	// Vars are variables for the templates; {{identity}} and {{version}} are
	// reserved. A variable set here may be overridden on the command line.
	Vars map[string]string `yaml:"vars,omitempty"`
	// Steps run in order on each host. At least one.
	Steps []Step `yaml:"steps"`
	// OnFailure is "hold" (default), "rollback" or "stop_now". With hold
	// and rollback the hosts in progress finish their own steps when a host
	// fails; stop_now stops them after their current step.
	OnFailure string `yaml:"on_failure,omitempty"`
	// Rollback steps run on the failed host when OnFailure is "rollback".
	// During them {{version}} is the host's {{previous}} when a step
	// captured one, and {{target_version}} is the version that failed.
	Rollback []Step `yaml:"rollback,omitempty"`
	// Report posts the run to the environment's chat and mails its log,
	// through the release section of the operator's config, as a release
	// does. `signet workflow run --ticket REF` also posts the log on a
	// ticket.
	Report Report `yaml:"report,omitempty"`
}

// Report says which of the environment's release channels a workflow
// run reports to.
type Report struct {
	// Chat posts the start and the outcome (with the log on failure).
	Chat bool `yaml:"chat,omitempty"`
	// Mail mails the run's log at the end.
	Mail bool `yaml:"mail,omitempty"`
}

var nameRE = lazyre.New(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidName reports whether s is a valid app, env, workflow or step name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ParseWorkflow reads a workflow file strictly: unknown keys, a second
// document and invalid steps are errors.
func ParseWorkflow(r io.Reader) (*Workflow, error) {
	var w Workflow
	if err := DecodeYAML(r, &w); err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return &w, nil
}

// DecodeYAML decodes one YAML document strictly (KnownFields).
func DecodeYAML(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return err
	}
	if len(data) > 1<<20 {
		return errors.New("file larger than 1 MiB")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty file")
		}
		return yamlerr.Explain("", data, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// Validate checks the workflow.
func (w *Workflow) Validate() error {
	if w.Version != 1 {
		return fmt.Errorf("workflow: version: want 1, found %d", w.Version)
	}
	if !ValidName(w.Name) {
		return fmt.Errorf("workflow: name: want lowercase letters, digits, '_' or '-', found %q", w.Name)
	}
	if len(w.Hosts) == 0 {
		return fmt.Errorf("workflow %s: hosts: a discovery filter is required", w.Name)
	}
	if err := w.Batching.Validate(); err != nil {
		return fmt.Errorf("workflow %s: %w", w.Name, err)
	}
	for k := range w.Vars {
		if k == "identity" || k == "version" || k == "previous" || k == "target_version" || !varNameRE.MatchString(k) {
			return fmt.Errorf("workflow %s: vars: %q is reserved or not a valid variable name", w.Name, k)
		}
	}
	if len(w.Steps) == 0 {
		return fmt.Errorf("workflow %s: steps: at least one step is required", w.Name)
	}
	if err := ValidateSteps(w.Steps); err != nil {
		return fmt.Errorf("workflow %s: %w", w.Name, err)
	}
	switch w.OnFailure {
	case "", OnFailureHold, OnFailureStopNow:
		if len(w.Rollback) > 0 {
			return fmt.Errorf("workflow %s: rollback steps are set but on_failure is not \"rollback\"", w.Name)
		}
	case OnFailureRollback:
		if len(w.Rollback) == 0 {
			return fmt.Errorf("workflow %s: on_failure is rollback but no rollback steps are set", w.Name)
		}
		if err := ValidateSteps(w.Rollback); err != nil {
			return fmt.Errorf("workflow %s: rollback: %w", w.Name, err)
		}
	default:
		return fmt.Errorf("workflow %s: on_failure: want \"hold\", \"rollback\" or \"stop_now\", found %q", w.Name, w.OnFailure)
	}
	return nil
}

var (
	varNameRE   = lazyre.New(`^[a-z][a-z0-9_]{0,62}$`)
	filterBadRE = lazyre.New("[;&|`$\\n\\r\\x00]")
)

// ValidateSteps checks a step list: names, agents, targets, marks.
func ValidateSteps(steps []Step) error {
	seen := map[string]bool{}
	for i, s := range steps {
		if !ValidName(s.Name) {
			return fmt.Errorf("step %d: name: want lowercase letters, digits, '_' or '-', found %q", i+1, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("step %s: name used twice", s.Name)
		}
		seen[s.Name] = true
		if grammar.CheckName("agent", s.Agent) != nil {
			return fmt.Errorf("step %s: agent: want a plugin name (%s), found %q", s.Name, grammar.NameRule, s.Agent)
		}
		if grammar.CheckName("action", s.Action) != nil {
			return fmt.Errorf("step %s: action: want an action name (%s), found %q", s.Name, grammar.NameRule, s.Action)
		}
		switch s.Target {
		case "", TargetEach:
			if len(s.Filter) > 0 || s.Partial {
				return fmt.Errorf("step %s: filter and partial are only for target broadcast", s.Name)
			}
		case TargetBroadcast:
			if len(s.Filter) == 0 {
				return fmt.Errorf("step %s: a broadcast step needs a filter: it must not reach every host", s.Name)
			}
		default:
			return fmt.Errorf("step %s: target: want \"each\" or \"broadcast\", found %q", s.Name, s.Target)
		}
		for _, f := range s.Filter {
			if f == "" || filterBadRE.MatchString(f) || strings.HasPrefix(f, "-") {
				return fmt.Errorf("step %s: filter %q: empty, leading '-' or shell metacharacters", s.Name, f)
			}
		}
		if s.WaitBoot < 0 || s.WaitBoot > maxWaitBoot || s.WaitBoot > 0 && s.Target == TargetBroadcast {
			return fmt.Errorf("step %s: wait_boot: want 0 to 24h, on a step with target each, found %s", s.Name, s.WaitBoot)
		}
		if s.Timeout < 0 || s.Timeout > 24*time.Hour {
			return fmt.Errorf("step %s: timeout: want 0 to 24h, found %s", s.Name, s.Timeout)
		}
		for _, m := range []string{s.Sets, s.Clears} {
			if m != "" && !varNameRE.MatchString(m) {
				return fmt.Errorf("step %s: mark %q: want a lowercase word such as drained or maintenance", s.Name, m)
			}
		}
		for v, k := range s.Capture {
			if !varNameRE.MatchString(v) || v == "identity" || v == "version" || k == "" {
				return fmt.Errorf("step %s: capture %s: %s: reserved or invalid variable or key", s.Name, v, k)
			}
		}
	}
	return nil
}

// Validate checks the batching settings.
func (b Batching) Validate() error {
	if _, err := ParseBatchSize(b.BatchSize, 100); err != nil {
		return err
	}
	if b.ZoneFact != "" && !varNameRE.MatchString(b.ZoneFact) {
		return fmt.Errorf("zone_fact: want a fact name, found %q", b.ZoneFact)
	}
	if b.Pause < 0 {
		return fmt.Errorf("pause: want a positive duration, found %s", b.Pause)
	}
	if err := checkStrategy(b); err != nil {
		return err
	}
	return b.Capacity.Validate()
}

// ParseBatchSize turns "3" or "25%" into a number of hosts out of n (at
// least 1). An empty size is 1.
func ParseBatchSize(s string, n int) (int, error) {
	if s == "" {
		return 1, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 || v > 100 {
			return 0, fmt.Errorf("batch_size: want a number of hosts or 1%% to 100%%, found %q", s)
		}
		size := (n*v + 99) / 100
		return max(size, 1), nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("batch_size: want a number of hosts or 1%% to 100%%, found %q", s)
	}
	return v, nil
}
