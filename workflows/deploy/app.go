package deploy

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/workflows"
)

// App is an app file: how to deploy one application. It is YAML, read
// strictly (an unknown key is an error); `version: 1` is the only format.
//
//	version: 1
//	name: middleware
//	package: middleware
//	service: middleware
//	hosts: [role=middleware]
//	haproxy:
//	  backend: middleware
//	  lb_filter: [lb=prod]
//	health:
//	  url: http://127.0.0.1:8080/version
//	batch_size: 25%
//	maintenance: 30m
//	on_failure: hold
//	envs:
//	  dev: {batch_size: 50%, allow_same_zone: true, on_failure: rollback}
type App struct {
	// Version is the file format version; must be 1.
	Version int `yaml:"version"`
	// Name names the app in locks, run state and events: lowercase letters,
	// digits, '_' and '-'. Required.
	Name string `yaml:"name"`
	// Package is the OS package to update. Required.
	Package string `yaml:"package"`
	// Service is the service to stop and start. Required.
	Service string `yaml:"service"`
	// Hosts is the discovery filter (bus filter expressions such as
	// "role=middleware"). The run adds "EnvFact=ENV" for the chosen env.
	// Required.
	Hosts []string `yaml:"hosts"`
	// EnvFact is the fact naming a host's environment; default "env".
	EnvFact string `yaml:"env_fact,omitempty"`
	// HAProxy says how to take a host out of the load balancers.
	HAProxy HAProxy `yaml:"haproxy"`
	// Health is the check that must pass before the host is enabled.
	Health Health `yaml:"health"`
	// Batching: batch_size ("2" or "25%", default 1), zone_fact (default
	// "zone"), allow_same_zone (default false), pause between batches,
	// strategy (batches, default, or window), and the capacity policy max_unavailable (default the batch size),
	// max_unavailable_per_zone and max_failures (default 0), inline.
	workflows.Batching `yaml:",inline"`
	// Maintenance is how long monitoring is muted per host; default 30m. It
	// is ended as soon as the host is back.
	Maintenance time.Duration `yaml:"maintenance,omitempty"`
	// StopTimeout bounds service stop and start; default 60s.
	StopTimeout time.Duration `yaml:"stop_timeout,omitempty"`
	// OnFailure is "hold" (default: leave the failed host drained and in
	// maintenance for a human), "rollback" (take the failed host back to
	// the version it had before; once the failure budget is spent, every
	// host the run touched too, each back into rotation only after its
	// health check) or "stop_now" (hold, and stop the hosts in progress
	// after their current step).
	// With hold and rollback the hosts in progress finish their own steps
	// and go back into rotation.
	OnFailure string `yaml:"on_failure,omitempty"`
	// Canary, when set, deploys its hosts first, then watches them for a
	// bake time (health check and gates every interval) and promotes on
	// its own or waits for `signet deploy --promote RUN` (canary.go in
	// package workflows).
	Canary *workflows.Canary `yaml:"canary,omitempty"`
	// Gates, when set, are metric gates (a Prometheus query with a
	// condition, no active Alertmanager alert matching labels) that must
	// pass before each batch after the first and during the bake.
	Gates *workflows.Gates `yaml:"gates,omitempty"`
	// SHA256 maps package versions to the SHA-256 of their artifact (the
	// .deb or .rpm file), 64 lowercase hex digits. When the deployed (or
	// rolled back to) version is listed, the digest travels in the signed
	// request and the package plugin refuses a file that does not match,
	// before dpkg or rpm runs.
	SHA256 map[string]string `yaml:"sha256,omitempty"`
	// Envs override settings per environment: `envs: {dev: {...}}`.
	Envs map[string]Override `yaml:"envs,omitempty"`
}

// HAProxy configures draining. Every HAProxy matching LBFilter that has the
// server drains it: the calls are broadcast.
type HAProxy struct {
	// Backend is the HAProxy backend. Required.
	Backend string `yaml:"backend"`
	// Server is the server name in the backend, a template; default
	// "{{identity}}".
	Server string `yaml:"server,omitempty"`
	// LBFilter selects the HAProxy hosts (bus filter expressions,
	// "agent=haproxy" is added). Required.
	LBFilter []string `yaml:"lb_filter"`
	// DrainTimeout bounds waiting for sessions to end; default 60s.
	DrainTimeout time.Duration `yaml:"drain_timeout,omitempty"`
}

// Health configures the HTTP check run on the host after start.
type Health struct {
	// URL is a template, such as "http://127.0.0.1:8080/version" or
	// "http://{{identity}}:8080/version". Required.
	URL string `yaml:"url"`
	// Status is the HTTP status wanted; default 200.
	Status int `yaml:"status,omitempty"`
	// Contains is a template the body must contain; default "{{version}}".
	Contains string `yaml:"contains,omitempty"`
	// Retries is the number of attempts; default 10.
	Retries int `yaml:"retries,omitempty"`
	// Interval is the wait after a failed attempt; default 2s.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout bounds each attempt; default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Override changes settings for one environment; unset fields keep the
// app's value.
type Override struct {
	Hosts         []string       `yaml:"hosts,omitempty"`
	BatchSize     *string        `yaml:"batch_size,omitempty"`
	ZoneFact      *string        `yaml:"zone_fact,omitempty"`
	AllowSameZone *bool          `yaml:"allow_same_zone,omitempty"`
	Pause         *time.Duration `yaml:"pause,omitempty"`
	Maintenance   *time.Duration `yaml:"maintenance,omitempty"`
	OnFailure     *string        `yaml:"on_failure,omitempty"`
	// MaxUnavailable, MaxUnavailablePerZone and MaxFailures override the
	// capacity policy.
	MaxUnavailable        *string  `yaml:"max_unavailable,omitempty"`
	MaxUnavailablePerZone *string  `yaml:"max_unavailable_per_zone,omitempty"`
	MaxFailures           *string  `yaml:"max_failures,omitempty"`
	LBFilter              []string `yaml:"lb_filter,omitempty"`
	HealthURL             *string  `yaml:"health_url,omitempty"`
	// Canary and Gates replace the app's (a canary in prod only, say).
	Canary *workflows.Canary `yaml:"canary,omitempty"`
	Gates  *workflows.Gates  `yaml:"gates,omitempty"`

	// Strategy overrides batches or window.
	Strategy *string `yaml:"strategy,omitempty"`
}

// LoadApp reads and validates an app file.
func LoadApp(path string) (*App, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("app file: %w", err)
	}
	defer f.Close()
	a, err := ParseApp(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseApp reads an app file strictly and validates it.
func ParseApp(r io.Reader) (*App, error) {
	var a App
	if err := workflows.DecodeYAML(r, &a); err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}

var (
	pkgNameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9+._@-]{0,127}$`)
	filterRE  = lazyre.New(`^[A-Za-z0-9_.]+(=|!=|>=|<=|=~)[A-Za-z0-9_.:/*+^()|\[\]-]+$`)
	// serverTemplateRE is a HAProxy server name, or a template of one.
	serverTemplateRE = lazyre.New(`^[A-Za-z0-9{}._-]+$`)
)

// ValidVersion reports whether v is an acceptable package version.
func ValidVersion(v string) bool { return workflows.ValidVersion(v) }

// Validate checks the app file, its env overrides included.
func (a *App) Validate() error {
	if a.Version != 1 {
		return fmt.Errorf("app: version: want 1, found %d", a.Version)
	}
	if !workflows.ValidName(a.Name) {
		return fmt.Errorf("app: name: want lowercase letters, digits, '_' or '-', found %q", a.Name)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("app %s: "+format, append([]any{a.Name}, args...)...)
	}
	if !pkgNameRE.MatchString(a.Package) {
		return fail("package: want a package name, found %q", a.Package)
	}
	if !pkgNameRE.MatchString(a.Service) {
		return fail("service: want a service name, found %q", a.Service)
	}
	if err := checkFilter("hosts", a.Hosts, true); err != nil {
		return fail("%w", err)
	}
	if a.EnvFact != "" && !workflows.ValidName(a.EnvFact) {
		return fail("env_fact: want a fact name, found %q", a.EnvFact)
	}
	if !pkgNameRE.MatchString(a.HAProxy.Backend) {
		return fail("haproxy.backend: want a backend name, found %q", a.HAProxy.Backend)
	}
	if s := a.HAProxy.Server; s != "" && !serverTemplateRE.MatchString(s) {
		return fail("haproxy.server: want a server name template such as {{identity}}, found %q", s)
	}
	if err := checkFilter("haproxy.lb_filter", a.HAProxy.LBFilter, true); err != nil {
		return fail("%w", err)
	}
	if a.HAProxy.DrainTimeout < 0 {
		return fail("haproxy.drain_timeout: want a positive duration, found %s", a.HAProxy.DrainTimeout)
	}
	if err := checkURL(a.Health.URL); err != nil {
		return fail("health.url: %w", err)
	}
	if s := a.Health.Status; s != 0 && (s < 100 || s > 599) {
		return fail("health.status: want 100 to 599, found %d", s)
	}
	if a.Health.Retries < 0 || a.Health.Retries > 100 {
		return fail("health.retries: want 1 to 100, found %d", a.Health.Retries)
	}
	if a.Health.Interval < 0 || a.Health.Timeout < 0 || a.Maintenance < 0 || a.StopTimeout < 0 {
		return fail("health.interval, health.timeout, maintenance and stop_timeout must be positive durations")
	}
	if err := a.Batching.Validate(); err != nil {
		return fail("%w", err)
	}
	switch a.OnFailure {
	case "", workflows.OnFailureHold, workflows.OnFailureRollback, workflows.OnFailureStopNow:
	default:
		return fail("on_failure: want \"hold\", \"rollback\" or \"stop_now\", found %q", a.OnFailure)
	}
	if err := a.Canary.Validate(); err != nil {
		return fail("%w", err)
	}
	if err := checkDigests(a.SHA256); err != nil {
		return fail("%w", err)
	}
	if err := a.Gates.Validate(); err != nil {
		return fail("%w", err)
	}
	for env, o := range a.Envs {
		if !workflows.ValidName(env) {
			return fail("envs: env name: want lowercase letters, digits, '_' or '-', found %q", env)
		}
		if o.Hosts != nil || o.LBFilter != nil {
			if err := checkFilter("hosts", o.Hosts, false); err != nil {
				return fail("envs.%s: %w", env, err)
			}
			if err := checkFilter("lb_filter", o.LBFilter, false); err != nil {
				return fail("envs.%s: %w", env, err)
			}
		}
		cp := *a
		cp.Envs = nil
		cp.apply(o)
		if err := cp.Validate(); err != nil {
			return fmt.Errorf("envs.%s: %w", env, err)
		}
	}
	return nil
}

func checkFilter(field string, f []string, required bool) error {
	if required && len(f) == 0 {
		return fmt.Errorf("%s: at least one filter expression is required", field)
	}
	for _, e := range f {
		if !filterRE.MatchString(e) {
			return fmt.Errorf("%s: %q: want fact=value (or !=, >=, <=, =~)", field, e)
		}
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return fmt.Errorf("required")
	}
	probe := strings.ReplaceAll(s, "{{identity}}", "host")
	u, err := url.Parse(probe)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("want an http(s) URL without credentials, found %q", s)
	}
	if strings.Contains(probe, "{{") {
		return fmt.Errorf("only {{identity}} may be templated, found %q", s)
	}
	return nil
}

// apply merges an override into a.
func (a *App) apply(o Override) {
	if o.Hosts != nil {
		a.Hosts = o.Hosts
	}
	if o.BatchSize != nil {
		a.BatchSize = *o.BatchSize
	}
	if o.ZoneFact != nil {
		a.ZoneFact = *o.ZoneFact
	}
	if o.AllowSameZone != nil {
		a.AllowSameZone = *o.AllowSameZone
	}
	if o.Pause != nil {
		a.Pause = *o.Pause
	}
	if o.Maintenance != nil {
		a.Maintenance = *o.Maintenance
	}
	if o.OnFailure != nil {
		a.OnFailure = *o.OnFailure
	}
	if o.LBFilter != nil {
		a.HAProxy.LBFilter = o.LBFilter
	}
	if o.MaxUnavailable != nil {
		a.MaxUnavailable = *o.MaxUnavailable
	}
	if o.MaxUnavailablePerZone != nil {
		a.MaxUnavailablePerZone = *o.MaxUnavailablePerZone
	}
	if o.MaxFailures != nil {
		a.MaxFailures = *o.MaxFailures
	}
	if o.HealthURL != nil {
		a.Health.URL = *o.HealthURL
	}
	if o.Canary != nil {
		a.Canary = o.Canary
	}
	if o.Gates != nil {
		a.Gates = o.Gates
	}
	if o.Strategy != nil {
		a.Strategy = *o.Strategy
	}
}

// ForEnv returns the app with env's overrides applied and defaults filled.
func (a *App) ForEnv(env string) (*App, error) {
	if !workflows.ValidName(env) {
		return nil, fmt.Errorf("env: want lowercase letters, digits, '_' or '-', found %q", env)
	}
	cp := *a
	cp.Envs = nil
	if o, ok := a.Envs[env]; ok {
		cp.apply(o)
	}
	if cp.EnvFact == "" {
		cp.EnvFact = "env"
	}
	if cp.HAProxy.Server == "" {
		cp.HAProxy.Server = "{{identity}}"
	}
	if cp.HAProxy.DrainTimeout == 0 {
		cp.HAProxy.DrainTimeout = 60 * time.Second
	}
	if cp.Health.Status == 0 {
		cp.Health.Status = 200
	}
	if cp.Health.Contains == "" {
		cp.Health.Contains = "{{version}}"
	}
	if cp.Health.Retries == 0 {
		cp.Health.Retries = 10
	}
	if cp.Health.Interval == 0 {
		cp.Health.Interval = 2 * time.Second
	}
	if cp.Health.Timeout == 0 {
		cp.Health.Timeout = 5 * time.Second
	}
	if cp.Maintenance == 0 {
		cp.Maintenance = 30 * time.Minute
	}
	if cp.StopTimeout == 0 {
		cp.StopTimeout = 60 * time.Second
	}
	if cp.OnFailure == "" {
		cp.OnFailure = workflows.OnFailureHold
	}
	if cp.ZoneFact == "" {
		cp.ZoneFact = "zone"
	}
	return &cp, cp.Validate()
}
