package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/workflows/buscaller"
	"github.com/signetbus/signet/workflows/deploy"
)

// Nagios (and Icinga, Sensu, ...) plugin exit codes: signet status exits
// with one of them, never with signet's own codes.
const (
	StatusOK       = 0
	StatusWarning  = 1
	StatusCritical = 2
	StatusUnknown  = 3
)

var statusNames = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// checkResult is the verdict of a monitoring check, already printed: its
// code is the exit status (exitCode passes it through unchanged).
type checkResult struct{ code int }

func (c *checkResult) Error() string { return "check " + statusNames[c.code] }

type statusOptions struct {
	expect      int
	inventory   string
	app         string
	stale       time.Duration
	warnMissing string
	critMissing string
	warnStale   string
	critStale   string
	wantVersion string
	timeout     time.Duration
	// now is the clock; default time.Now.
	now func() time.Time
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	c := &cobra.Command{
		Use:   "status",
		Short: "Check the fleet for Nagios/Icinga: hosts expected vs registered, stale registrations, version skew",
		Long: `status reads the fleet registry and prints one Nagios plugin line with perfdata:

  SIGNET STATUS WARNING - 1 of 12 expected hosts not registered: web7 | registered=11;;;0 ...

It exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN (broker unreachable, bad
arguments). The expected hosts come from --inventory FILE (one identity a
line) or --expect N; --app FILE with --env ENV narrows the check to the
hosts the app deploys to. It needs the client config (broker, collective)
but no signing key.`,
		Args: cobra.ArbitraryArgs, // checked in statusRun: a bad call is UNKNOWN, not signet's usage code
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return statusUnknown(g.io.Out, fmt.Errorf("unexpected argument %q", args[0]))
			}
			return statusRun(cmd.Context(), g, o)
		},
	}
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return statusUnknown(g.io.Out, err) })
	f := c.Flags()
	f.IntVar(&o.expect, "expect", 0, "how many hosts must be registered")
	f.StringVar(&o.inventory, "inventory", "", "file of the host identities that must be registered, one a line (# comments)")
	f.StringVar(&o.app, "app", "", "check only the hosts this app file selects for --env")
	f.DurationVar(&o.stale, "stale", 75*time.Second, "a registration not refreshed for this long is stale (hosts refresh every third of registry_ttl, 30s by default)")
	f.StringVarP(&o.warnMissing, "warning-missing", "w", "0", "WARNING when more hosts than this are missing (N or N% of expected)")
	f.StringVarP(&o.critMissing, "critical-missing", "c", "10%", "CRITICAL when more hosts than this are missing (N or N% of expected)")
	f.StringVar(&o.warnStale, "warning-stale", "0", "WARNING when more registrations than this are stale (N or N%)")
	f.StringVar(&o.critStale, "critical-stale", "10%", "CRITICAL when more registrations than this are stale (N or N%)")
	f.StringVar(&o.wantVersion, "version", "", "the signetd version every host must run (default: WARNING when hosts run more than one)")
	f.DurationVarP(&o.timeout, "timeout", "t", 10*time.Second, "give up (UNKNOWN) after this long")
	return c
}

// statusUnknown prints the UNKNOWN line for err and returns its verdict.
func statusUnknown(out io.Writer, err error) error {
	fmt.Fprintf(out, "SIGNET STATUS UNKNOWN - %s\n", oneLine(redact.String(err.Error())))
	return &checkResult{code: StatusUnknown}
}

// oneLine keeps a message on the plugin's single output line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "|", "/")), " ")
}

// threshold is a Nagios-style limit: a count, or a percentage of a total.
type threshold struct {
	n       float64
	percent bool
}

func parseThreshold(flag, s string) (threshold, error) {
	t := threshold{}
	v, pct := strings.CutSuffix(s, "%")
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || (pct && n > 100) {
		return t, fmt.Errorf("--%s %q: want a count (3) or a percentage (10%%)", flag, s)
	}
	return threshold{n: n, percent: pct}, nil
}

// limit is the largest count that does not cross t, out of total.
func (t threshold) limit(total int) int {
	if t.percent {
		return int(math.Floor(t.n * float64(total) / 100))
	}
	return int(t.n)
}

// fleetStatus is what the check found.
type fleetStatus struct {
	Status     string         `json:"status"`
	Code       int            `json:"code"`
	Summary    string         `json:"summary"`
	Registered int            `json:"registered"`
	Expected   int            `json:"expected,omitempty"`
	Missing    []string       `json:"missing,omitempty"`
	MissingN   int            `json:"missing_count"`
	Unexpected []string       `json:"unexpected,omitempty"`
	Stale      []string       `json:"stale,omitempty"`
	Versions   map[string]int `json:"versions"`
	Protocols  map[int]int    `json:"protocols"`
	Perfdata   string         `json:"perfdata"`
}

func statusRun(ctx context.Context, g *globalOptions, o *statusOptions) error {
	if o.now == nil {
		o.now = time.Now
	}
	st, err := checkFleet(ctx, g, o)
	if err != nil {
		return statusUnknown(g.io.Out, err)
	}
	if g.json {
		if err := g.printer().jsonValue(st); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.io.Out, "SIGNET STATUS %s - %s | %s\n", st.Status, st.Summary, st.Perfdata)
	}
	return &checkResult{code: st.Code}
}

// checkFleet reads the registry and judges it.
func checkFleet(ctx context.Context, g *globalOptions, o *statusOptions) (*fleetStatus, error) {
	if o.expect < 0 {
		return nil, errors.New("--expect must be at least 0")
	}
	if o.expect > 0 && o.inventory != "" {
		return nil, errors.New("give --expect or --inventory, not both")
	}
	var th [4]threshold
	for i, f := range []struct{ name, v string }{{"warning-missing", o.warnMissing}, {"critical-missing", o.critMissing},
		{"warning-stale", o.warnStale}, {"critical-stale", o.critStale}} {
		t, err := parseThreshold(f.name, f.v)
		if err != nil {
			return nil, err
		}
		th[i] = t
	}
	var inventory []string
	if o.inventory != "" {
		ids, err := nodesFromFile(o.inventory)
		if err != nil {
			return nil, err
		}
		inventory = ids
	}
	cfg, err := loadClientConfig(g.config, g.env, g.io.Getenv)
	if err != nil {
		return nil, err
	}
	var match *bus.Matcher
	if o.app != "" {
		env := g.env
		if env == "" {
			env = g.io.Getenv("SIGNET_ENV")
		}
		if env == "" {
			return nil, errors.New("--app needs --env: the app's hosts are per environment")
		}
		app, err := deploy.LoadApp(o.app)
		if err != nil {
			return nil, err
		}
		if app, err = app.ForEnv(env); err != nil {
			return nil, err
		}
		f, err := buscaller.ParseFilter(append(append([]string(nil), app.Hosts...), app.EnvFact+"="+env))
		if err != nil {
			return nil, fmt.Errorf("app %s: hosts: %w", app.Name, err)
		}
		if match, err = f.Compile(); err != nil {
			return nil, fmt.Errorf("app %s: hosts: %w", app.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	auth, err := cfg.NATS.AuthOptions()
	if err != nil {
		return nil, err
	}
	// One attempt, bounded by the timeout: a check must answer, not wait
	// for the broker to come back.
	nc, err := nats.Connect(strings.Join(cfg.NATS.URLs, ","), append([]nats.Option{nats.Name("signet status"),
		nats.Timeout(o.timeout), nats.NoReconnect()}, auth...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to broker %s: %w", strings.Join(cfg.NATS.URLs, ","), err)
	}
	defer nc.Close()
	var regs []*bus.Registration
	var lost *bus.RegistryLostError
	reg, err := bus.OpenRegistry(ctx, nc, cfg.Collective)
	switch {
	case errors.Is(err, bus.ErrNoRegistry):
		// No host ever registered on this broker: an empty fleet.
	case err != nil:
		return nil, err
	default:
		// A registry the broker lost and the hosts are refilling is not
		// the fleet: said, so that missing hosts are read in its light.
		if err := reg.Check(ctx); err != nil && !errors.As(err, &lost) {
			return nil, err
		}
		if regs, err = reg.List(ctx); err != nil {
			return nil, err
		}
	}
	if match != nil {
		regs = slices.DeleteFunc(regs, func(r *bus.Registration) bool { return !match.Match(r.Node()) })
	}
	st := judgeFleet(regs, inventory, o, th, o.now())
	if lost != nil {
		if st.Code < StatusWarning {
			st.Code, st.Status = StatusWarning, statusNames[StatusWarning]
		}
		st.Summary = oneLine(strings.TrimPrefix(lost.Error(), "bus: ")) + "; " + st.Summary
	}
	return st, nil
}

// judgeFleet decides the verdict from the registrations.
func judgeFleet(regs []*bus.Registration, inventory []string, o *statusOptions, th [4]threshold, now time.Time) *fleetStatus {
	st := &fleetStatus{Registered: len(regs), Versions: map[string]int{}, Protocols: map[int]int{}}
	code := StatusOK
	raise := func(c int) { code = max(code, c) }
	var problems []string
	byID := map[string]*bus.Registration{}
	for _, r := range regs {
		byID[r.Identity] = r
	}
	expected := o.expect
	switch {
	case inventory != nil:
		expected = len(inventory)
		inv := map[string]bool{}
		for _, id := range inventory {
			inv[id] = true
			if byID[id] == nil {
				st.Missing = append(st.Missing, id)
			}
		}
		for _, r := range regs {
			if !inv[r.Identity] {
				st.Unexpected = append(st.Unexpected, r.Identity)
			}
		}
		st.MissingN = len(st.Missing)
	case expected > 0:
		st.MissingN = max(0, expected-len(regs))
	}
	st.Expected = expected
	warnMiss, critMiss := th[0].limit(expected), th[1].limit(expected)
	switch {
	case expected > 0 && st.MissingN > critMiss:
		raise(StatusCritical)
	case expected > 0 && st.MissingN > warnMiss:
		raise(StatusWarning)
	}
	if expected == 0 && len(regs) == 0 {
		raise(StatusCritical)
		problems = append(problems, "no host is registered")
	}
	if st.MissingN > 0 {
		p := fmt.Sprintf("%d of %d expected hosts not registered", st.MissingN, expected)
		if len(st.Missing) > 0 {
			p += ": " + names(st.Missing)
		}
		problems = append(problems, p)
	}
	if len(st.Unexpected) > 0 {
		raise(StatusWarning)
		problems = append(problems, fmt.Sprintf("%d registered hosts not in the inventory: %s", len(st.Unexpected), names(st.Unexpected)))
	}
	// Stale: not refreshed for o.stale by the host's own clock; a host
	// whose clock is that far off is worth a look too (it refuses
	// requests once it is further off than its clock_skew).
	var ahead []string
	for _, r := range regs {
		switch age := now.Sub(r.Updated); {
		case age > o.stale:
			st.Stale = append(st.Stale, fmt.Sprintf("%s (%s)", r.Identity, age.Round(time.Second)))
		case -age > o.stale:
			ahead = append(ahead, fmt.Sprintf("%s (%s ahead)", r.Identity, (-age).Round(time.Second)))
		}
	}
	nStale := len(st.Stale) + len(ahead)
	switch {
	case nStale > th[3].limit(len(regs)):
		raise(StatusCritical)
	case nStale > th[2].limit(len(regs)):
		raise(StatusWarning)
	}
	if len(st.Stale) > 0 {
		problems = append(problems, fmt.Sprintf("%d stale registrations (not refreshed for over %s): %s", len(st.Stale), o.stale, names(st.Stale)))
	}
	if len(ahead) > 0 {
		problems = append(problems, fmt.Sprintf("%d registrations dated in the future (check the clocks): %s", len(ahead), names(ahead)))
	}
	// Versions: the signetd releases, and the protocols they speak.
	var incompatible []string
	for _, r := range regs {
		v := r.Version
		if v == "" {
			v = "unknown"
		}
		st.Versions[v]++
		p := r.ProtocolOf()
		st.Protocols[p]++
		if p < bus.MinProtocolVersion || p > bus.ProtocolVersion+1 {
			incompatible = append(incompatible, fmt.Sprintf("%s (protocol %d)", r.Identity, p))
		}
	}
	if len(incompatible) > 0 {
		raise(StatusCritical)
		problems = append(problems, fmt.Sprintf("%d hosts speak a protocol this signet (protocol %d, accepts %d to %d) cannot use: %s",
			len(incompatible), bus.ProtocolVersion, bus.MinProtocolVersion, bus.ProtocolVersion, names(incompatible)))
	}
	versions := slices.Sorted(maps.Keys(st.Versions))
	var off []string
	if o.wantVersion != "" {
		for _, r := range regs {
			if r.Version != o.wantVersion {
				off = append(off, r.Identity)
			}
		}
		if len(off) > 0 {
			raise(StatusWarning)
			problems = append(problems, fmt.Sprintf("%d hosts not at version %s: %s", len(off), o.wantVersion, names(off)))
		}
	} else if len(versions) > 1 {
		raise(StatusWarning)
		var parts []string
		for _, v := range versions {
			parts = append(parts, fmt.Sprintf("%s on %d", v, st.Versions[v]))
		}
		problems = append(problems, "version skew: "+strings.Join(parts, ", "))
	}
	st.Code, st.Status = code, statusNames[code]
	if len(problems) == 0 {
		what := fmt.Sprintf("%d hosts registered", len(regs))
		if expected > 0 {
			what = fmt.Sprintf("%d of %d expected hosts registered", len(regs), expected)
		}
		problems = append(problems, fmt.Sprintf("%s, none stale, version %s", what, strings.Join(versions, ", ")))
	}
	st.Summary = oneLine(strings.Join(problems, "; "))
	perf := []string{
		fmt.Sprintf("registered=%d;;;0", len(regs)),
		fmt.Sprintf("stale=%d;%d;%d;0", nStale, th[2].limit(len(regs)), th[3].limit(len(regs))),
		fmt.Sprintf("versions=%d;;;0", len(versions)),
	}
	if expected > 0 {
		perf = append(perf, fmt.Sprintf("expected=%d;;;0", expected), fmt.Sprintf("missing=%d;%d;%d;0;%d", st.MissingN, warnMiss, critMiss, expected))
	}
	st.Perfdata = strings.Join(perf, " ")
	return st
}

// names lists up to five names, then how many more.
func names(ids []string) string {
	if len(ids) <= 5 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:5], ", "), len(ids)-5)
}
