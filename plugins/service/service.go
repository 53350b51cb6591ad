// Package service is signet's "service" plugin: it reports, starts, stops,
// restarts and reloads one service on the host, through systemd
// (systemctl) or runit (sv).
//
// Every action except status waits until the service is really in the
// wanted state (running for start, restart and reload; stopped for stop),
// polling with a short back-off, and fails with a *WaitError that reports
// the state found when the wait times out. "Running" means up for at least
// DefaultMinUptime, so a service that dies at once and is restarted by its
// supervisor is not mistaken for a working one. After a restart the
// service must also run with a new process.
//
// start on a running service and stop on a stopped one change nothing and
// report changed=false.
//
// Service names follow the systemd unit grammar, refusing anything that a
// service manager could read as an option or a path; a host's config may
// further restrict the plugin to a list of services.
package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: Name, New: New}) }

// Name is the agent name operators use.
const Name = "service"

// Backends.
const (
	BackendSystemd = "systemd"
	BackendRunit   = "runit"
)

// Timeouts of the wait for the wanted state.
const (
	DefaultTimeout = 30 * time.Second
	MaxTimeout     = 10 * time.Minute
)

// Config is the plugin's section of the host config.
type Config struct {
	// Backend is the service manager: "systemd" or "runit". Empty means
	// detect: systemd when /run/systemd/system exists (systemd is
	// running as init), else runit when sv is installed.
	Backend string `json:"backend,omitempty"`
	// ServiceDir is runit's service directory, the SVDIR that sv looks
	// services up in: an absolute path. Empty means /etc/service. Only
	// valid with the runit backend.
	ServiceDir string `json:"service_dir,omitempty"`
	// Services, when not empty, lists the only services the plugin may
	// report on or act on; any other name is refused before anything
	// runs. With systemd, "nginx" and "nginx.service" name the same unit.
	// Empty means any service the service manager knows.
	Services []string `json:"services,omitempty"`
}

// serviceNamePattern is the systemd unit name grammar, which also keeps
// runit names free of '/' and of a leading '.' or '-'.
const serviceNamePattern = `[A-Za-z0-9][A-Za-z0-9:_.@-]{0,254}`

var serviceName = lazyre.New(`\A` + serviceNamePattern + `\z`)

// Service is the "service" plugin.
type Service struct {
	backend backend
	// allowed holds the canonical names of Config.Services; nil allows all.
	allowed map[string]bool
	// minUptime, now and sleep are replaceable in tests.
	minUptime time.Duration
	now       func() time.Time
	sleep     func(ctx context.Context, d time.Duration) error
}

var (
	_ plugins.Plugin    = (*Service)(nil)
	_ plugins.Validator = (*Service)(nil)
)

// systemdMarker exists when systemd runs as init (sd_booted(3)).
const systemdMarker = "/run/systemd/system"

// New builds the plugin from its config (see Config).
func New(config json.RawMessage) (plugins.Plugin, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, config, &cfg); err != nil {
		return nil, err
	}
	return newService(cfg, detect(systemdMarker, command.DefaultEnv), command.Run)
}

// detect picks the backend for a host: systemd when marker exists, else
// runit when sv is in the PATH of env (the PATH programs run with), else "".
func detect(marker string, env []string) string {
	if fi, err := os.Stat(marker); err == nil && fi.IsDir() {
		return BackendSystemd
	}
	for _, kv := range env {
		path, ok := strings.CutPrefix(kv, "PATH=")
		if !ok {
			continue
		}
		for _, dir := range filepath.SplitList(path) {
			if fi, err := os.Stat(filepath.Join(dir, "sv")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return BackendRunit
			}
		}
	}
	return ""
}

// newService checks cfg and builds the plugin; detected is the backend
// detect found, used when cfg.Backend is empty.
func newService(cfg Config, detected string, run runner) (*Service, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("plugin %s: config: "+format, append([]any{Name}, args...)...)
	}
	name := cfg.Backend
	if name == "" {
		name = detected
	}
	if cfg.ServiceDir != "" {
		if name != BackendRunit {
			return nil, errf("service_dir is a runit setting, but the backend is %q", name)
		}
		if !filepath.IsAbs(cfg.ServiceDir) || filepath.Clean(cfg.ServiceDir) != cfg.ServiceDir || strings.ContainsAny(cfg.ServiceDir, "\x00\n") {
			return nil, errf("service_dir: want a clean absolute path such as /etc/service, got %q", cfg.ServiceDir)
		}
	}
	s := &Service{minUptime: DefaultMinUptime, now: time.Now, sleep: sleepCtx}
	switch name {
	case BackendSystemd:
		s.backend = systemd{run: run}
	case BackendRunit:
		dir := cfg.ServiceDir
		if dir == "" {
			dir = DefaultServiceDir
		}
		s.backend = runit{dir: dir, run: run, now: time.Now}
	case "":
		return nil, errf("no service manager found: %s does not exist (systemd is not init) and sv is not installed; install runit or set backend", systemdMarker)
	default:
		return nil, errf("backend: want %q or %q, got %q", BackendSystemd, BackendRunit, name)
	}
	if len(cfg.Services) > 0 {
		s.allowed = map[string]bool{}
		for i, svc := range cfg.Services {
			if !serviceName.MatchString(svc) {
				return nil, errf("services[%d]: %q is not a service name (want %s)", i, svc, serviceNamePattern)
			}
			s.allowed[s.canonical(svc)] = true
		}
	}
	return s, nil
}

// canonical is the name compared with the allow-list: systemd's
// "nginx.service" is "nginx".
func (s *Service) canonical(svc string) string {
	if s.backend.name() == BackendSystemd {
		return strings.TrimSuffix(svc, ".service")
	}
	return svc
}

// Describe returns the plugin's DDL.
func (s *Service) Describe() plugins.DDL {
	inputs := []plugins.Input{
		{Name: "service", Description: "the service: a systemd unit (nginx, nginx.service, getty@tty1) or a runit service in the service directory",
			Type: plugins.TypeString, Required: true, Pattern: serviceNamePattern, MaxLength: 255},
		{Name: "timeout", Description: "how long to wait for the wanted state (not used by status)",
			Type: plugins.TypeDuration, Default: DefaultTimeout.String(), Min: plugins.Float(1), Max: plugins.Float(MaxTimeout.Seconds())},
	}
	outputs := []plugins.Output{
		{Name: "service", Description: "the service name", Type: plugins.TypeString},
		{Name: "state", Description: "running, stopped, failed, starting, restarting, stopping, reloading, finishing or unknown", Type: plugins.TypeString},
		{Name: "active", Description: "whether the service's process is up", Type: plugins.TypeBoolean},
		{Name: "pid", Description: "main process id, 0 when none", Type: plugins.TypeInteger},
		{Name: "since", Description: "when the service entered its state (RFC 3339, UTC), when known", Type: plugins.TypeString},
		{Name: "detail", Description: "the service manager's own words, such as \"active (running)\" or \"run, normally up\"", Type: plugins.TypeString},
		{Name: "backend", Description: "systemd or runit", Type: plugins.TypeString},
	}
	// Leave room for the longest wait plus the service manager's own work.
	actTimeout := MaxTimeout + time.Minute
	action := func(name, desc string, timeout time.Duration) plugins.Action {
		return plugins.Action{Name: name, Description: desc, Inputs: inputs, Outputs: outputs, Timeout: timeout}
	}
	return plugins.DDL{
		Name:        Name,
		Description: "report, start, stop, restart and reload a service (systemd or runit)",
		Actions: []plugins.Action{
			action("status", "report the service's state", time.Minute),
			action("start", "start the service unless it runs, and wait until it runs", actTimeout),
			action("stop", "stop the service unless it is stopped, and wait until it is stopped", actTimeout),
			action("restart", "restart the service (start it when stopped), and wait until it runs as a new process", actTimeout),
			action("reload", "ask the running service to reload its configuration, and wait until it runs", actTimeout),
		},
	}
}

// Validate checks the service name against the grammar and the
// allow-list, and the timeout against its bounds.
func (s *Service) Validate(action string, params plugins.Params) error {
	if _, ok := s.Describe().Action(action); !ok {
		return fmt.Errorf("service: unknown action %q", action)
	}
	svc := params.String("service")
	if !serviceName.MatchString(svc) {
		return &plugins.ParamError{Action: action, Param: "service", Rule: "service_name",
			Msg: fmt.Sprintf("%q is not a service name: want a letter or digit, then letters, digits and :_.@- (at most 255 bytes)", svc)}
	}
	if s.allowed != nil && !s.allowed[s.canonical(svc)] {
		return &plugins.ParamError{Action: action, Param: "service", Rule: "not_allowed",
			Msg: fmt.Sprintf("service %q is not in this host's services list", svc)}
	}
	if params.Has("timeout") {
		d, err := time.ParseDuration(params.String("timeout"))
		if err != nil || d <= 0 || d > MaxTimeout {
			return &plugins.ParamError{Action: action, Param: "timeout", Rule: "timeout",
				Msg: fmt.Sprintf("want a duration above 0 and at most %s, got %q", MaxTimeout, params.String("timeout"))}
		}
	}
	return nil
}

// Run performs one action.
func (s *Service) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	if err := s.Validate(req.Action, req.Params); err != nil {
		return nil, err
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	svc := req.Params.String("service")
	timeout := req.Params.Duration("timeout")
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	log = log.With("service", svc, "backend", s.backend.name())

	cur, err := s.backend.status(ctx, svc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", svc, err)
	}
	var (
		verb string
		want target
	)
	switch req.Action {
	case "status":
		return s.result(svc, cur, false), nil
	case "start":
		verb, want = verbStart, target{running: true}
		if cur.State == StateRunning {
			verb = "" // still wait: it may have just started
		}
	case "stop":
		if cur.stopped() {
			return s.result(svc, cur, false), nil
		}
		verb, want = verbStop, target{}
	case "restart":
		verb, want = verbRestart, target{running: true}
		if cur.Active {
			want.notPID = cur.PID
		}
	case "reload":
		if !cur.Active {
			return nil, fmt.Errorf("%s: cannot reload a service that is not running (found %s); start it instead", svc, cur.describe(s.now()))
		}
		verb, want = verbReload, target{running: true}
	}
	if verb != "" {
		log.Info("acting on service", "verb", verb, "state_before", cur.State, "pid_before", cur.PID)
		if err := s.backend.act(ctx, verb, svc); err != nil {
			// Say what state the failure left behind, when it can be read.
			if st, serr := s.backend.status(ctx, svc); serr == nil {
				return nil, fmt.Errorf("%s: %w (found %s)", svc, err, st.describe(s.now()))
			}
			return nil, fmt.Errorf("%s: %w", svc, err)
		}
	}
	st, err := s.wait(ctx, svc, want, timeout)
	if err != nil {
		log.Warn("service did not reach the wanted state", "want", want.String(), "found", st.State, "pid", st.PID, "detail", st.Detail)
		return nil, err
	}
	log.Info("service state reached", "state", st.State, "pid", st.PID, "changed", verb != "")
	return s.result(svc, st, verb != ""), nil
}

// result renders a state as the action's result.
func (s *Service) result(svc string, st Status, changed bool) *plugins.Result {
	data := map[string]any{
		"service": svc,
		"state":   st.State,
		"active":  st.Active,
		"pid":     st.PID,
		"detail":  st.Detail,
		"backend": s.backend.name(),
	}
	if !st.Since.IsZero() {
		data["since"] = st.Since.UTC().Format(time.RFC3339)
	}
	summary := svc + " " + st.State
	if st.PID != 0 {
		summary += fmt.Sprintf(" (pid %d)", st.PID)
	}
	return &plugins.Result{Changed: changed, Summary: summary, Data: data}
}
