package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/signetbus/signet/bus"
)

// Canary promotion modes.
const (
	// PromoteAuto promotes the canary as soon as its bake passed.
	PromoteAuto = "auto"
	// PromoteManual waits, after the bake, for `signet deploy --promote
	// RUN` or `--abort RUN`, watching the canary all the while.
	PromoteManual = "manual"
)

// Canary phases, in CanaryState.Phase.
const (
	CanaryDeploying = "deploying"
	CanaryBaking    = "baking"
	CanaryWaiting   = "waiting"
	CanaryPromoted  = "promoted"
	CanaryAborted   = "aborted"
)

// Canary decisions, in CanaryState.Decision.
const (
	DecisionPromote = "promote"
	DecisionAbort   = "abort"
)

// StatusWaiting is the status of a run whose baked canary waits for
// `signet deploy --promote RUN` or `--abort RUN`. It is resumable.
const StatusWaiting = "waiting"

// Canary is a run's canary: hosts deployed first, on their own, then
// watched for a bake time (health checks and gates every interval)
// before the rest of the fleet. In an app file:
//
//	canary:
//	  hosts: [web1]        # or one_per_zone: true
//	  bake: 10m
//	  interval: 30s
//	  promote: manual      # or auto (default)
type Canary struct {
	// Hosts are the canary hosts by identity. Either Hosts or OnePerZone.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// OnePerZone picks the first host (by name) of each zone.
	OnePerZone bool `yaml:"one_per_zone,omitempty" json:"one_per_zone,omitempty"`
	// Bake is how long the canary is watched before it may be promoted.
	// Required (at least 1s).
	Bake time.Duration `yaml:"bake" json:"bake"`
	// Interval is the wait between two checks during the bake and while
	// the canary waits for a decision; default the gates' interval, else
	// 30s.
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Promote is "auto" (default: go on once the bake passed) or "manual"
	// (wait for `signet deploy --promote RUN` or `--abort RUN`).
	Promote string `yaml:"promote,omitempty" json:"promote,omitempty"`
}

// Validate checks the canary settings.
func (c *Canary) Validate() error {
	if c == nil {
		return nil
	}
	if len(c.Hosts) > 0 == c.OnePerZone {
		return errors.New("canary: want hosts or one_per_zone: true, not both or neither")
	}
	for _, h := range c.Hosts {
		if err := bus.CheckIdentity(h); err != nil {
			return fmt.Errorf("canary: hosts: %w", err)
		}
	}
	if c.Bake < time.Second {
		return fmt.Errorf("canary: bake: want a duration of at least 1s, found %s", c.Bake)
	}
	if c.Interval < 0 {
		return fmt.Errorf("canary: interval: want a positive duration, found %s", c.Interval)
	}
	switch c.Promote {
	case "", PromoteAuto, PromoteManual:
	default:
		return fmt.Errorf("canary: promote: want auto or manual, found %q", c.Promote)
	}
	return nil
}

// CanaryState is a canary's record in the run state: what was planned,
// how far it got and who decided.
type CanaryState struct {
	Hosts    []string      `json:"hosts"`
	Bake     time.Duration `json:"bake"`
	Interval time.Duration `json:"interval"`
	Promote  string        `json:"promote"`
	// Phase is deploying, baking, waiting, promoted or aborted.
	Phase string `json:"phase"`
	// BakedAt is when the bake passed.
	BakedAt time.Time `json:"baked_at,omitzero"`
	// Decision is promote or abort, as recorded by `signet deploy
	// --promote` or `--abort` (or "promote" by an auto promotion), with
	// who decided and when.
	Decision  string    `json:"decision,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
}

func (c *CanaryState) validate(hosts map[string]bool) error {
	if len(c.Hosts) == 0 {
		return errors.New("canary: no hosts")
	}
	for _, h := range c.Hosts {
		if !hosts[h] {
			return fmt.Errorf("canary: host %s is in no batch", h)
		}
	}
	if c.Bake <= 0 || c.Interval <= 0 {
		return errors.New("canary: bake and interval must be positive")
	}
	if c.Promote != PromoteAuto && c.Promote != PromoteManual {
		return fmt.Errorf("canary: promote: unknown %q", c.Promote)
	}
	switch c.Phase {
	case CanaryDeploying, CanaryBaking, CanaryWaiting, CanaryPromoted, CanaryAborted:
	default:
		return fmt.Errorf("canary: phase: unknown %q", c.Phase)
	}
	switch c.Decision {
	case "", DecisionPromote, DecisionAbort:
	default:
		return fmt.Errorf("canary: decision: unknown %q", c.Decision)
	}
	if len(c.DecidedBy) > 256 || strings.ContainsAny(c.DecidedBy, "\n\r") {
		return errors.New("canary: decided_by: want one line of at most 256 bytes")
	}
	return nil
}

// PlanCanary picks the canary hosts among hosts and returns the run's
// batches: the canary first, on its own, then the others planned with b.
// The canary must leave at least one host to promote to.
func PlanCanary(hosts []Host, c *Canary, b Batching, gates *Gates) (*CanaryState, [][]string, error) {
	known := map[string]Host{}
	for _, h := range hosts {
		known[h.Identity] = h
	}
	var pick []string
	if c.OnePerZone {
		zf := b.ZoneFact
		if zf == "" {
			zf = "zone"
		}
		first := map[string]string{}
		for _, h := range hosts {
			z := h.Facts[zf]
			if cur, ok := first[z]; !ok || compareIdentity(h.Identity, cur) < 0 {
				first[z] = h.Identity
			}
		}
		for _, h := range first {
			pick = append(pick, h)
		}
		sort.Slice(pick, func(i, j int) bool { return compareIdentity(pick[i], pick[j]) < 0 })
	} else {
		var missing []string
		for _, h := range c.Hosts {
			if _, ok := known[h]; !ok {
				missing = append(missing, h)
			}
			if !slices.Contains(pick, h) {
				pick = append(pick, h)
			}
		}
		if len(missing) > 0 {
			return nil, nil, fmt.Errorf("canary: hosts %s are not among the run's hosts", strings.Join(missing, ", "))
		}
	}
	var rest []Host
	for _, h := range hosts {
		if !slices.Contains(pick, h.Identity) {
			rest = append(rest, h)
		}
	}
	if len(rest) == 0 {
		return nil, nil, fmt.Errorf("canary: %s would be every host of the run, leaving nothing to promote to", strings.Join(pick, ", "))
	}
	batches, err := Plan(rest, b)
	if err != nil {
		return nil, nil, err
	}
	iv := c.Interval
	if iv == 0 {
		iv = DefaultGateInterval
		if gates != nil {
			iv = gates.interval()
		}
	}
	promote := c.Promote
	if promote == "" {
		promote = PromoteAuto
	}
	cs := &CanaryState{Hosts: pick, Bake: c.Bake, Interval: iv, Promote: promote, Phase: CanaryDeploying}
	return cs, append([][]string{pick}, batches...), nil
}

// compareIdentity orders web2 before web10.
func compareIdentity(a, b string) int {
	ta, na := splitNum(a)
	tb, nb := splitNum(b)
	if ta != tb {
		return strings.Compare(ta, tb)
	}
	if na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n := 0
	for _, c := range s[i:] {
		n = n*10 + int(c-'0')
		if n > 1e9 {
			break
		}
	}
	return s[:i], n
}

// CanaryAbortedError says the canary was aborted with `signet deploy
// --abort`: the run ended failed, the canary hosts keep the new version.
type CanaryAbortedError struct {
	Run   string
	By    string
	Hosts []string
}

func (e *CanaryAbortedError) Error() string {
	return fmt.Sprintf("run %s: canary aborted by %s: %s keep the new version, no other host was touched", e.Run, e.By, strings.Join(e.Hosts, ", "))
}

// ErrNotWaiting is returned by Decide for a run whose canary is not
// waiting for a decision.
var ErrNotWaiting = errors.New("workflows: the run's canary is not waiting for a decision")

// Decide records a decision (promote or abort) on a run whose canary
// waits for one, signed by this store's key: the waiting client (or the
// next --resume) acts on it. The state must have been loaded through a
// store that trusts its signer.
func Decide(st *RunState, decision, by string, now time.Time) error {
	if decision != DecisionPromote && decision != DecisionAbort {
		return fmt.Errorf("workflows: decision: want promote or abort, found %q", decision)
	}
	c := st.Canary
	if c == nil {
		return fmt.Errorf("run %s: %w: it has no canary", st.ID, ErrNotWaiting)
	}
	if c.Phase != CanaryWaiting {
		return fmt.Errorf("run %s: %w: the canary is %s", st.ID, ErrNotWaiting, c.Phase)
	}
	if c.Decision != "" {
		return fmt.Errorf("run %s: %w: %s already decided %s", st.ID, ErrNotWaiting, c.DecidedBy, c.Decision)
	}
	c.Decision, c.DecidedBy, c.DecidedAt = decision, by, now.UTC()
	return nil
}
