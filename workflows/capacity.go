package workflows

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// OnFailureStopNow holds the failed host (as "hold" does) and stops the
// hosts in progress after the step each is running: the behaviour before
// failure budgets, for those who want it. With "hold" and "rollback" the
// hosts in progress finish their own steps and go back into rotation.
const OnFailureStopNow = "stop_now"

// Capacity is a run's capacity and failure policy. In an app or workflow
// file its fields sit at the top level, beside batch_size.
type Capacity struct {
	// MaxUnavailable caps how many hosts may be out of rotation at once, a
	// number ("2") or a share of the run's hosts ("25%", rounded down, at
	// least 1). Hosts in progress and hosts that failed and were left out
	// both count; a host starts only when it fits under the cap. Default:
	// the batch size.
	MaxUnavailable string `yaml:"max_unavailable,omitempty" json:"max_unavailable,omitempty"`
	// MaxUnavailablePerZone is the same cap per failure zone, a number or a
	// share of the zone's hosts. Default: no cap per zone (the zone rule of
	// the batches still applies).
	MaxUnavailablePerZone string `yaml:"max_unavailable_per_zone,omitempty" json:"max_unavailable_per_zone,omitempty"`
	// MaxFailures is how many hosts may fail before the run stops starting
	// hosts, a number or a share of the run's hosts ("10%", rounded down).
	// Each failed host is left out of rotation and named in the recap.
	// Default 0: the first failure stops the run.
	MaxFailures string `yaml:"max_failures,omitempty" json:"max_failures,omitempty"`
}

// Validate checks the capacity settings.
func (c Capacity) Validate() error {
	if _, err := ParseCount("max_unavailable", c.MaxUnavailable, 100, false); err != nil {
		return err
	}
	if _, err := ParseCount("max_unavailable_per_zone", c.MaxUnavailablePerZone, 100, false); err != nil {
		return err
	}
	if _, err := ParseCount("max_failures", c.MaxFailures, 100, true); err != nil {
		return err
	}
	return nil
}

// ParseCount turns "3" or "25%" into a number of hosts out of n: a share
// is rounded down, and is at least 1 unless zero is allowed. An empty
// value is 0 (unset).
func ParseCount(field, s string, n int, zeroOK bool) (int, error) {
	if s == "" {
		return 0, nil
	}
	low := 1
	if zeroOK {
		low = 0
	}
	bad := fmt.Errorf("%s: want a number of hosts (%d or more) or a share such as 25%%, found %q", field, low, s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v < low || v > 100 {
			return 0, bad
		}
		return max(n*v/100, low), nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < low || v > 100000 {
		return 0, bad
	}
	return v, nil
}

// Limits is the capacity policy resolved for one run's hosts: what the
// plan shows and the recap reports.
type Limits struct {
	// MaxUnavailable is the fleet-wide cap on hosts out of rotation.
	MaxUnavailable int `json:"max_unavailable"`
	// MaxUnavailablePerZone is the cap per zone as written ("1", "50%");
	// "" when there is none. ZoneCaps holds it resolved per zone.
	MaxUnavailablePerZone string         `json:"max_unavailable_per_zone,omitempty"`
	ZoneCaps              map[string]int `json:"zone_caps,omitempty"`
	// MaxFailures is the failure budget.
	MaxFailures int `json:"max_failures"`
	// OnFailure is hold, rollback or stop_now.
	OnFailure string `json:"on_failure"`
	// Failures is how many hosts failed (recap only).
	Failures int `json:"failures"`
	// PeakUnavailable is the most hosts the run counted out of rotation
	// at once (recap only).
	PeakUnavailable int `json:"peak_unavailable"`

	// Strategy is "window" for a sliding window, "" for batches.
	Strategy string `json:"strategy,omitempty"`
}

// ResolveLimits applies a run's policy to its hosts: batches (for the
// default cap, the batch size) and zones (host to zone; a host without
// one is in zone "").
func ResolveLimits(b Batching, onFailure string, batches [][]string, zones map[string]string) (Limits, error) {
	b = windowZoneCap(b)
	n := 0
	for _, bt := range batches {
		n += len(bt)
	}
	if onFailure == "" {
		onFailure = OnFailureHold
	}
	l := Limits{OnFailure: onFailure, MaxUnavailablePerZone: b.MaxUnavailablePerZone}
	if b.Strategy == StrategyWindow {
		l.Strategy = StrategyWindow
	}
	var err error
	if l.MaxUnavailable, err = ParseCount("max_unavailable", b.MaxUnavailable, n, false); err != nil {
		return l, err
	}
	if l.MaxUnavailable == 0 {
		if l.MaxUnavailable, err = ParseBatchSize(b.BatchSize, n); err != nil {
			return l, err
		}
	}
	if l.MaxFailures, err = ParseCount("max_failures", b.MaxFailures, n, true); err != nil {
		return l, err
	}
	if b.MaxUnavailablePerZone != "" {
		size := map[string]int{}
		for _, bt := range batches {
			for _, h := range bt {
				size[zones[h]]++
			}
		}
		l.ZoneCaps = map[string]int{}
		for z, zn := range size {
			if l.ZoneCaps[z], err = ParseCount("max_unavailable_per_zone", b.MaxUnavailablePerZone, zn, false); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// String is the one-line policy shown by --plan and the recap.
func (l Limits) String() string {
	s := fmt.Sprintf("max_unavailable %d", l.MaxUnavailable)
	if l.Strategy == StrategyWindow {
		s = "sliding window, " + s
	}
	if l.MaxUnavailablePerZone != "" {
		s += fmt.Sprintf(", max_unavailable_per_zone %s", l.MaxUnavailablePerZone)
		if strings.HasSuffix(l.MaxUnavailablePerZone, "%") {
			zs := make([]string, 0, len(l.ZoneCaps))
			for z := range l.ZoneCaps {
				zs = append(zs, z)
			}
			sort.Strings(zs)
			var parts []string
			for _, z := range zs {
				name := z
				if name == "" {
					name = "(none)"
				}
				parts = append(parts, fmt.Sprintf("%s %d", name, l.ZoneCaps[z]))
			}
			s += " (" + strings.Join(parts, ", ") + ")"
		}
	}
	return s + fmt.Sprintf(", max_failures %d, on_failure %s", l.MaxFailures, l.OnFailure)
}

// HostZones maps each host to its zone fact (zoneFact, default "zone").
func HostZones(hosts []Host, zoneFact string) map[string]string {
	if zoneFact == "" {
		zoneFact = "zone"
	}
	out := make(map[string]string, len(hosts))
	for _, h := range hosts {
		out[h.Identity] = h.Facts[zoneFact]
	}
	return out
}

// CapacityError says the run stopped starting hosts because the next one
// would have taken more hosts out of rotation than a cap allows, and no
// host in progress could free a place: the hosts left out (failed and
// held) fill the cap.
type CapacityError struct {
	// Host is the host that could not start.
	Host string
	// Cap names the cap: "max_unavailable 2" or "max_unavailable_per_zone
	// 1 in zone a".
	Cap string
	// Out lists the hosts out of rotation that fill it.
	Out []string
	// Skipped lists every host not started for a cap, Host first.
	Skipped []string
}

func (e *CapacityError) Error() string {
	msg := fmt.Sprintf("%s not started: %s already out of rotation, and %s allows no more", e.Host, strings.Join(e.Out, ", "), e.Cap)
	if len(e.Skipped) > 1 {
		msg += fmt.Sprintf(" (not started for a cap: %s)", strings.Join(e.Skipped, ", "))
	}
	return msg
}

// FailuresError is the end of a run in which more than one host failed,
// or one failed within a failure budget: every failure, in order, and
// whether the budget was spent (the run stopped starting hosts). errors.As
// finds the first *StepError through it.
type FailuresError struct {
	Failures    []*StepError
	MaxFailures int
	// Spent is set when more hosts failed than MaxFailures allows.
	Spent bool
	// Capacity is set when the run stopped on a cap.
	Capacity *CapacityError
}

func (e *FailuresError) Error() string {
	var b strings.Builder
	switch {
	case e.Spent:
		fmt.Fprintf(&b, "%d hosts failed, more than max_failures %d allows: no new host was started", len(e.Failures), e.MaxFailures)
	case len(e.Failures) > 0:
		fmt.Fprintf(&b, "%d of at most %d hosts failed (max_failures) and were left out of rotation", len(e.Failures), e.MaxFailures)
	}
	for _, f := range e.Failures {
		b.WriteString("; " + f.Error())
	}
	if e.Capacity != nil {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString("stopped on capacity: " + e.Capacity.Error())
	}
	return b.String()
}

// Unwrap returns the step errors and the capacity error.
func (e *FailuresError) Unwrap() []error {
	out := make([]error, 0, len(e.Failures)+1)
	for _, f := range e.Failures {
		out = append(out, f)
	}
	if e.Capacity != nil {
		out = append(out, e.Capacity)
	}
	return out
}
