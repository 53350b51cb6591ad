// Package stage runs a whole fleet on one machine with real backends, for
// `signet demo` and for end-to-end deploy tests: an in-process lab (embedded
// broker, N signed responders web1..webN in zones a/b/c) whose hosts each
// have a demo web app installed as a real .deb in an isolated dpkg/apt root
// and supervised by a real runit, behind one real HAProxy, with monitoring
// silences in a real Alertmanager.
//
// Where a backend is missing on the machine (no haproxy, no
// prometheus-alertmanager, no dpkg or apt, no runit, not root), the stage
// uses a sandbox backend in its place: an in-process plugin with the same
// agent name, DDL and result data, and says so in Stage.Backends. The bus,
// signatures, policy, audit and the workflow engine are always real.
//
// Per host (hosts/IDENTITY under Options.Dir):
//
//	root/                 the host's dpkg/apt root; the package installs
//	                      root/opt/APP/VERSION, which the app serves
//	service/APP/          the runit service: run (Options.AppCommand), app.json
//	app.log               the app's output (runit)
//
// The app answers GET /version with the installed version ("1.1") and GET /
// with "APP 1.1 on web2"-style text ("demo 1.1 on web2"). Its port is the
// host fact app_port. The deploy's health check reaches it through a small
// router at http://127.0.0.1:PORT/IDENTITY/version, because the app file's
// health URL may template only {{identity}}.
package stage

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/signetbus/signet/internal/command"
	"github.com/signetbus/signet/internal/lab"
	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/haproxy"
	"github.com/signetbus/signet/plugins/health"
	"github.com/signetbus/signet/plugins/maintenance"
	"github.com/signetbus/signet/plugins/packages"
	"github.com/signetbus/signet/plugins/service"
)

// Options configure a stage.
type Options struct {
	// Dir holds everything: the lab's keys and configs, the apt
	// repository, each host's root and service directory, the daemons'
	// configs and logs. Required; Stop does not remove it.
	Dir string
	// Hosts is the number of hosts, web1..webN; default 6.
	Hosts int
	// App names the app, its package, its service and the HAProxy
	// backend: lowercase letters, digits and '-'; default "demo".
	App string
	// Versions are the package versions the repository offers; the first
	// is installed at start. Default 1.0 and 1.1.
	Versions []string
	// Logger receives the responders' logs; default discards.
	Logger *slog.Logger
	// Sandbox forces sandbox backends even where real ones are installed.
	Sandbox bool
	// AppCommand is the program and arguments that run the demo app
	// under runit; the stage appends the path of the app's config, and the
	// program must call AppMain with it. signet passes its own executable
	// with "demo app"; tests use stagetest.AppCommand. Empty sandboxes the
	// service backend: nothing could run the app.
	AppCommand []string
	// CA runs the lab in certificate mode (lab.Options.CA).
	CA bool

	noLab bool // StartBackends: no lab, no app file
}

// Backend names, the keys of Stage.Backends.
const (
	BackendPackage     = "package"
	BackendService     = "service"
	BackendHAProxy     = "haproxy"
	BackendMaintenance = "maintenance"
	BackendHealth      = "health"
)

// Host is one stage host.
type Host struct {
	Identity string
	Zone     string
	// AppURL is the app's base URL, http://127.0.0.1:PORT.
	AppURL string
	// Root is the host's dpkg/apt root.
	Root string
	// ServiceDir is the host's runit service directory (SVDIR).
	ServiceDir string

	port    int
	cfg     appConfig
	runsv   *daemon         // real runit
	sandbox *sandboxService // sandbox service
}

// Stage is a running fleet with its backends.
type Stage struct {
	Lab *lab.Lab
	// App is the app name (package, service and HAProxy backend).
	App string
	// Versions are the versions the repository offers.
	Versions []string
	// AppFile is the deploy app file (YAML) for this stage; deploy with
	// env "lab".
	AppFile string
	// Env is the environment to deploy to: "lab".
	Env string
	// HealthURL is the health URL template of the app file.
	HealthURL string
	// FrontendURL is HAProxy's frontend, http://127.0.0.1:PORT; "" when
	// HAProxy is sandboxed.
	FrontendURL string
	// HAProxySocket is HAProxy's admin socket path; "" when sandboxed.
	HAProxySocket string
	// AlertmanagerURL is Alertmanager's base URL; "" when sandboxed.
	AlertmanagerURL string
	// Backends says, per plugin, "real: ..." or "sandbox: <why>".
	Backends map[string]string
	Hosts    []*Host

	dir       string
	runScript string // the runit run script of every host's app
	log       *slog.Logger
	router    *router
	daemons   []*daemon // haproxy, alertmanager
	sockDir   string    // short directory for the HAProxy socket, removed by Stop
	sandbox   *sandboxState
	pkgCfgs   map[string]json.RawMessage // real package plugin config per host
	client    *http.Client
	stopOnce  sync.Once
	stopErr   error
}

var (
	appNameRE = lazyre.New(`^[a-z][a-z0-9-]{0,39}$`)
	versionRE = lazyre.New(`^[0-9][A-Za-z0-9.+~]{0,31}$`)
)

// alertmanagerBins are where Debian and upstream put Alertmanager.
var alertmanagerBins = []string{"/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager"}

// Start brings the stage up: it returns when every app serves the first
// version, HAProxy sees every server UP and every responder is
// registered. On error everything started is stopped again.
func Start(ctx context.Context, o Options) (_ *Stage, err error) {
	if o.Hosts == 0 {
		o.Hosts = 6
	}
	if o.Hosts < 1 || o.Hosts > 50 {
		return nil, fmt.Errorf("stage: hosts: want 1 to 50, found %d", o.Hosts)
	}
	if o.App == "" {
		o.App = "demo"
	}
	if !appNameRE.MatchString(o.App) {
		return nil, fmt.Errorf("stage: app: want lowercase letters, digits and '-', found %q", o.App)
	}
	if len(o.Versions) == 0 {
		o.Versions = []string{"1.0", "1.1"}
	}
	for _, v := range o.Versions {
		if !versionRE.MatchString(v) {
			return nil, fmt.Errorf("stage: versions: want a version such as 1.1, found %q", v)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		return nil, errors.New("stage: a directory is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(dir, "\"'\n\\ ") {
		return nil, fmt.Errorf("stage: directory %q: want a path without quotes, spaces or backslashes (it goes into apt and haproxy configs)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stage{App: o.App, Versions: o.Versions, Env: "lab", dir: dir, log: o.Logger,
		Backends: Detect(o.Sandbox), client: &http.Client{Timeout: 3 * time.Second}}
	if err := s.useAppCommand(o.AppCommand); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	apps := map[string]string{}
	taken := map[int]bool{}
	for i := 1; i <= o.Hosts; i++ {
		port, err := appPort(taken)
		if err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
		taken[port] = true
		id := fmt.Sprintf("web%d", i)
		hd := filepath.Join(dir, "hosts", id)
		h := &Host{Identity: id, Zone: string(rune('a' + (i-1)%3)), port: port, AppURL: fmt.Sprintf("http://127.0.0.1:%d", port),
			Root: filepath.Join(hd, "root"), ServiceDir: filepath.Join(hd, "service")}
		h.cfg = appConfig{Identity: id, Listen: fmt.Sprintf("127.0.0.1:%d", port),
			VersionFile: filepath.Join(h.Root, "opt", o.App, "VERSION"), BrokenFile: filepath.Join(hd, "health-broken")}
		if err := os.MkdirAll(filepath.Join(h.Root, breakDir), 0o755); err != nil {
			return nil, err
		}
		s.Hosts = append(s.Hosts, h)
		apps[id] = h.cfg.Listen
	}
	if s.router, err = startRouter(apps); err != nil {
		return nil, err
	}
	s.HealthURL = "http://" + s.router.addr + "/{{identity}}/version"
	s.sandbox = newSandboxState(o.App, apps)

	// Alertmanager starts while the packages install.
	amErr := make(chan error, 1)
	go func() { amErr <- s.startAlertmanager(ctx) }()
	pkgCfg, err := s.installPackages(ctx)
	if aerr := <-amErr; err == nil {
		err = aerr
	}
	if err != nil {
		return nil, err
	}
	if err := s.startServices(ctx); err != nil {
		return nil, err
	}
	if err := s.startHAProxy(ctx); err != nil {
		return nil, err
	}
	if err := s.waitServing(ctx, o.Versions[0]); err != nil {
		return nil, err
	}
	s.pkgCfgs = pkgCfg
	if o.noLab {
		return s, nil
	}

	s.Lab, err = lab.Start(ctx, lab.Options{Dir: dir, Hosts: o.Hosts, Version: "stage", Logger: o.Logger, CA: o.CA,
		Plugins: func(h *lab.HostInfo) (map[string]plugins.Plugin, error) {
			return s.plugins(h.Identity, pkgCfg[h.Identity])
		},
		Facts: func(h *lab.HostInfo) map[string]string {
			if sh := s.Host(h.Identity); sh != nil {
				return map[string]string{"app_port": strconv.Itoa(sh.port)}
			}
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	if err := s.writeAppFile(); err != nil {
		return nil, err
	}
	return s, nil
}

// Detect says, per backend, "real: ..." when it is installed here (and
// usable), else "sandbox: <why>"; forceSandbox sandboxes them all.
func Detect(forceSandbox bool) map[string]string {
	b := map[string]string{BackendHealth: "real: health plugin (HTTP from the host)"}
	if forceSandbox {
		for _, k := range []string{BackendPackage, BackendService, BackendHAProxy, BackendMaintenance} {
			b[k] = "sandbox: --sandbox asked for it"
		}
		return b
	}
	missing := func(progs ...string) string {
		var m []string
		for _, p := range progs {
			if _, err := exec.LookPath(p); err != nil {
				m = append(m, p)
			}
		}
		return strings.Join(m, ", ")
	}
	switch m := missing("dpkg", "dpkg-deb", "dpkg-query", "apt-get", "apt-cache", "apt-mark"); {
	case m != "":
		b[BackendPackage] = "sandbox: " + m + " not found (install dpkg and apt)"
	case os.Geteuid() != 0:
		b[BackendPackage] = "sandbox: dpkg needs root, even in an isolated root (it chowns the files it unpacks)"
	default:
		b[BackendPackage] = "real: apt-get and dpkg in an isolated root per host"
	}
	if m := missing("runsvdir", "runsv", "sv"); m != "" {
		b[BackendService] = "sandbox: " + m + " not found (install runit)"
	} else {
		b[BackendService] = "real: runit (runsvdir per host, sv)"
	}
	if m := missing("haproxy"); m != "" {
		b[BackendHAProxy] = "sandbox: haproxy not found (install haproxy)"
	} else {
		b[BackendHAProxy] = "real: " + haproxyVersion()
	}
	if am := alertmanagerBin(); am == "" {
		b[BackendMaintenance] = "sandbox: prometheus-alertmanager not found (install prometheus-alertmanager)"
	} else {
		b[BackendMaintenance] = "real: Alertmanager (" + am + ")"
	}
	return b
}

func haproxyVersion() string {
	out, err := exec.Command("haproxy", "-v").Output()
	if err != nil {
		return "haproxy"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return "haproxy " + f[2]
	}
	return "haproxy"
}

func alertmanagerBin() string {
	for _, b := range alertmanagerBins {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

// Real reports whether the backend is real (not sandboxed).
func (s *Stage) Real(backend string) bool { return strings.HasPrefix(s.Backends[backend], "real") }

// Host returns a host by identity, nil when there is none.
func (s *Stage) Host(id string) *Host {
	for _, h := range s.Hosts {
		if h.Identity == id {
			return h
		}
	}
	return nil
}

// installPackages builds the repository and installs the first version on
// every host, returning each host's package plugin config.
func (s *Stage) installPackages(ctx context.Context) (map[string]json.RawMessage, error) {
	cfgs := map[string]json.RawMessage{}
	if !s.Real(BackendPackage) {
		for _, h := range s.Hosts {
			p := newSandboxPackage(s.App, s.Versions, h.Root)
			if _, err := runAction(ctx, p, &plugins.Request{Action: "install", Identity: h.Identity, Log: s.log}, map[string]any{"package": s.App, "version": s.Versions[0]}); err != nil {
				return nil, fmt.Errorf("stage: %s: %w", h.Identity, err)
			}
		}
		return cfgs, nil
	}
	repo := filepath.Join(s.dir, "repo")
	if err := buildRepo(ctx, repo, s.App, s.Versions); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	var mu sync.Mutex
	errs := make([]error, len(s.Hosts))
	var wg sync.WaitGroup
	for i, h := range s.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := aptRoot(h.Root, repo)
			if err == nil {
				err = s.installFirst(ctx, h, cfg)
			}
			if err != nil {
				errs[i] = fmt.Errorf("stage: %s: install %s %s: %w", h.Identity, s.App, s.Versions[0], err)
				return
			}
			mu.Lock()
			cfgs[h.Identity] = cfg
			mu.Unlock()
		}()
	}
	wg.Wait()
	return cfgs, errors.Join(errs...)
}

func (s *Stage) installFirst(ctx context.Context, h *Host, cfg json.RawMessage) error {
	p, err := packages.New(cfg)
	if err != nil {
		return err
	}
	req := func(action string) *plugins.Request {
		return &plugins.Request{Action: action, Identity: h.Identity, Caller: "stage", Log: s.log.With("identity", h.Identity)}
	}
	if _, err := runAction(ctx, p, req("refresh"), map[string]any{}); err != nil {
		return err
	}
	_, err = runAction(ctx, p, req("install"), map[string]any{"package": s.App, "version": s.Versions[0]})
	return err
}

// useAppCommand prepares the run script of real runit services, or
// sandboxes the service backend when no program can run the app.
func (s *Stage) useAppCommand(argv []string) error {
	if !s.Real(BackendService) {
		return nil
	}
	if len(argv) == 0 {
		s.Backends[BackendService] = "sandbox: no program to run the demo app under runit (Options.AppCommand)"
		return nil
	}
	var err error
	s.runScript, err = appRunScript(argv)
	return err
}

// appRunScript is every host's runit run script: it runs argv with the
// host's ./app.json. Each word is single-quoted for the shell; argv comes
// from the program that started the stage, never from outside.
func appRunScript(argv []string) (string, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nexec 2>&1\nexec")
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, "\x00\n") {
			return "", fmt.Errorf("stage: app command: %q cannot go into a run script", a)
		}
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(" ./app.json\n")
	return b.String(), nil
}

// startServices starts one runsvdir per host (or the sandbox apps).
func (s *Stage) startServices(ctx context.Context) error {
	if !s.Real(BackendService) {
		for _, h := range s.Hosts {
			h.sandbox = newSandboxService(s.App, h.cfg)
			if _, err := runAction(ctx, h.sandbox, &plugins.Request{Action: "start", Identity: h.Identity, Log: s.log}, map[string]any{"service": s.App}); err != nil {
				return fmt.Errorf("stage: %s: %w", h.Identity, err)
			}
		}
		return nil
	}
	for _, h := range s.Hosts {
		sd := filepath.Join(h.ServiceDir, s.App)
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return err
		}
		cfg, _ := json.Marshal(h.cfg)
		if err := os.WriteFile(filepath.Join(sd, "app.json"), cfg, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sd, "run"), []byte(s.runScript), 0o755); err != nil {
			return err
		}
		d, err := startDaemon("runsvdir "+h.Identity, []string{"runsvdir", h.ServiceDir}, filepath.Join(filepath.Dir(h.ServiceDir), "app.log"), syscall.SIGHUP)
		if err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		h.runsv = d
	}
	return nil
}

// waitServing waits until every app answers version.
func (s *Stage) waitServing(ctx context.Context, version string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.Serving(ctx)
		bad := ""
		for _, h := range s.Hosts {
			if got[h.Identity] != version {
				bad = fmt.Sprintf("%s serves %q", h.Identity, got[h.Identity])
				break
			}
		}
		if bad == "" && s.FrontendURL != "" {
			stats, err := s.ShowStat(ctx)
			if err != nil {
				bad = "haproxy: " + err.Error()
			}
			for _, st := range stats {
				if st.Status != "UP" {
					bad = fmt.Sprintf("haproxy sees %s %s", st.Server, st.Status)
				}
			}
		}
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stage: apps not serving %s after 30s: %s (logs: %s/hosts/*/app.log)", version, bad, s.dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// plugins builds one host's plugins.
func (s *Stage) plugins(id string, pkgCfg json.RawMessage) (map[string]plugins.Plugin, error) {
	h := s.Host(id)
	if h == nil {
		return nil, fmt.Errorf("%w: %s", errNoSuchHost, id)
	}
	out := map[string]plugins.Plugin{}
	var err error
	if out[BackendHealth], err = health.New(nil); err != nil {
		return nil, err
	}
	if s.Real(BackendPackage) {
		if out[BackendPackage], err = packages.New(pkgCfg); err != nil {
			return nil, err
		}
	} else {
		out[BackendPackage] = newSandboxPackage(s.App, s.Versions, h.Root)
	}
	if s.Real(BackendService) {
		cfg, _ := json.Marshal(service.Config{Backend: service.BackendRunit, ServiceDir: h.ServiceDir, Services: []string{s.App}})
		if out[BackendService], err = service.New(cfg); err != nil {
			return nil, err
		}
	} else {
		out[BackendService] = h.sandbox
	}
	if s.Real(BackendHAProxy) {
		cfg, _ := json.Marshal(haproxy.Config{Instances: []haproxy.InstanceConfig{{Name: "main", Socket: "unix:" + s.HAProxySocket}}})
		if out[BackendHAProxy], err = haproxy.New(cfg); err != nil {
			return nil, err
		}
	} else {
		out[BackendHAProxy] = &sandboxHAProxy{state: s.sandbox, ddl: realDDL(haproxy.New, `{}`)}
	}
	if s.Real(BackendMaintenance) {
		cfg, _ := json.Marshal(maintenance.Config{Backends: []maintenance.BackendConfig{{Alertmanager: &maintenance.AlertmanagerConfig{
			URL: s.AlertmanagerURL, Matchers: []maintenance.MatcherConfig{{Name: "host", Value: "{{identity}}"}}}}}})
		if out[BackendMaintenance], err = maintenance.New(cfg); err != nil {
			return nil, err
		}
	} else {
		out[BackendMaintenance] = &sandboxMaintenance{state: s.sandbox,
			ddl: realDDL(maintenance.New, `{"backends":[{"alertmanager":{"url":"http://127.0.0.1:9"}}]}`)}
	}
	return out, nil
}

// appFile is the deploy app file of the stage. Batches of two hosts from
// different zones; short health and drain timings for a local fleet. The
// health plugin doubles the interval after each failed attempt (up to
// 10s), so 6 retries from 250ms give up after about 8s of waiting; 20
// retries took two and a half minutes to report a broken app.
const appFile = `# written by signet stage: deploy with env %[4]s
version: 1
name: %[1]s
package: %[1]s
service: %[1]s
hosts: [role=web]
haproxy:
  backend: %[1]s
  lb_filter: [role=web]
  drain_timeout: 10s
health:
  url: %[2]s
  retries: 6
  interval: 250ms
  timeout: 2s
batch_size: "%[3]d"
maintenance: 15m
stop_timeout: 20s
on_failure: hold
`

func (s *Stage) writeAppFile() error {
	batch := 2
	if len(s.Hosts) < 2 {
		batch = 1
	}
	s.AppFile = filepath.Join(s.dir, s.App+".yaml")
	if err := os.WriteFile(s.AppFile, []byte(fmt.Sprintf(appFile, s.App, s.HealthURL, batch, s.Env)), 0o644); err != nil {
		return err
	}
	// The lab's client config, extended so that an operator can run
	// `signet deploy APP VERSION --env lab` against the stage: the app file
	// is found in Dir, run logs go to Dir/runs, and --env lab (which also
	// names a client profile) is an empty profile.
	f, err := os.OpenFile(s.Lab.ClientConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "# added by signet stage\napps: %q\nruns: %q\nenvironments:\n  %s: {}\n", s.dir, filepath.Join(s.dir, "runs"), s.Env)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startHAProxy runs haproxy -f CFG -db with the app's backend over every
// host's app, and waits until its admin socket answers.
func (s *Stage) startHAProxy(ctx context.Context) error {
	if !s.Real(BackendHAProxy) {
		return nil
	}
	hd := filepath.Join(s.dir, "haproxy")
	if err := os.MkdirAll(hd, 0o755); err != nil {
		return err
	}
	// A UNIX socket path is limited to 108 bytes.
	s.HAProxySocket = filepath.Join(hd, "admin.sock")
	if len(s.HAProxySocket) > 100 {
		var err error
		if s.sockDir, err = os.MkdirTemp("", "signet-stage"); err != nil {
			return err
		}
		s.HAProxySocket = filepath.Join(s.sockDir, "admin.sock")
	}
	fe, err := freePort()
	if err != nil {
		return err
	}
	var b strings.Builder
	// Every host's plugin talks to this one socket at once (a broadcast
	// drain polls from N hosts): raise the stats socket's connection limit
	// (default 10) and listen backlog, or connects fail with EAGAIN.
	fmt.Fprintf(&b, "# written by signet stage\nglobal\n    stats maxconn 256\n    stats socket %s mode 600 level admin backlog 256 maxconn 256\n", s.HAProxySocket)
	b.WriteString("defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n")
	fmt.Fprintf(&b, "frontend fe\n    bind 127.0.0.1:%d\n    default_backend %s\n", fe, s.App)
	fmt.Fprintf(&b, "backend %s\n    balance roundrobin\n    option httpchk GET /version\n", s.App)
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "    server %s %s check inter 200ms fall 2 rise 2\n", h.Identity, h.cfg.Listen)
	}
	cfg := filepath.Join(hd, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return err
	}
	bin, _ := exec.LookPath("haproxy")
	d, err := startDaemon("haproxy", []string{bin, "-f", cfg, "-db"}, filepath.Join(hd, "haproxy.log"), syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	s.daemons = append(s.daemons, d)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", s.HAProxySocket); err == nil {
			c.Close()
			break
		}
		if exited, werr := d.exited(); exited {
			return fmt.Errorf("stage: haproxy exited at start (%v); see %s", werr, filepath.Join(hd, "haproxy.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stage: haproxy admin socket %s not answering after 15s", s.HAProxySocket)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.FrontendURL = fmt.Sprintf("http://127.0.0.1:%d", fe)
	return nil
}

// startAlertmanager runs Alertmanager with clustering off on a free
// loopback port and waits until it is ready.
func (s *Stage) startAlertmanager(ctx context.Context) error {
	if !s.Real(BackendMaintenance) {
		return nil
	}
	ad := filepath.Join(s.dir, "alertmanager")
	if err := os.MkdirAll(ad, 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(ad, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n"), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d, err := startDaemon("alertmanager", []string{alertmanagerBin(), "--config.file=" + cfg, "--storage.path=" + filepath.Join(ad, "data"),
		"--web.listen-address=" + addr, "--cluster.listen-address="}, filepath.Join(ad, "alertmanager.log"), syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	s.daemons = append(s.daemons, d)
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := s.client.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.AlertmanagerURL = base
				return nil
			}
		}
		if exited, werr := d.exited(); exited {
			return fmt.Errorf("stage: alertmanager exited at start (%v); see %s", werr, filepath.Join(ad, "alertmanager.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stage: alertmanager at %s not ready after 30s", base)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the responders, the broker, every app, runsvdir, HAProxy and
// Alertmanager (each process group killed), and the router. It leaves
// Dir in place. It is safe to call more than once.
func (s *Stage) Stop() error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.Lab != nil {
			errs = append(errs, s.Lab.Stop())
		}
		herrs := make([]error, len(s.Hosts))
		var wg sync.WaitGroup
		for i, h := range s.Hosts {
			if h.runsv != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					herrs[i] = s.stopRunsvdir(h)
				}()
			}
			if h.sandbox != nil {
				h.sandbox.shutdown()
			}
		}
		wg.Wait()
		errs = append(errs, herrs...)
		for _, d := range s.daemons {
			errs = append(errs, d.stop(5*time.Second))
		}
		if s.router != nil {
			errs = append(errs, s.router.close())
		}
		if s.sockDir != "" {
			os.RemoveAll(s.sockDir)
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// stopRunsvdir stops one host's runit: "sv force-stop" has runsv stop the
// app (TERM, then KILL after 5s) and reap it; then runsvdir's process group
// (runsvdir and the runsv processes) is ended.
func (s *Stage) stopRunsvdir(h *Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := command.Run(ctx, command.Spec{Argv: []string{"sv", "-w", "5", "force-stop", s.App}, ExtraEnv: []string{"SVDIR=" + h.ServiceDir}}); err != nil {
		s.log.Warn("stop the app", "identity", h.Identity, "err", err)
	}
	return h.runsv.stop(time.Second)
}

// Serves returns the version host's app serves (GET /version).
func (s *Stage) Serves(ctx context.Context, host string) (string, error) {
	h := s.Host(host)
	if h == nil {
		return "", fmt.Errorf("%w: %s", errNoSuchHost, host)
	}
	return s.get(ctx, h.AppURL+"/version")
}

// Serving returns what each host's app serves: its version, or
// "error: ..." when it does not answer 200.
func (s *Stage) Serving(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, h := range s.Hosts {
		v, err := s.Serves(ctx, h.Identity)
		if err != nil {
			v = "error: " + err.Error()
		}
		out[h.Identity] = v
	}
	return out
}

// ThroughFrontend sends n requests through the HAProxy frontend and counts
// the answers ("demo 1.1 on web2") by body. Without a real HAProxy it is
// an error.
func (s *Stage) ThroughFrontend(ctx context.Context, n int) (map[string]int, error) {
	if s.FrontendURL == "" {
		return nil, errors.New("stage: no HAProxy frontend (haproxy is sandboxed)")
	}
	out := map[string]int{}
	for range n {
		body, err := s.get(ctx, s.FrontendURL+"/")
		if err != nil {
			return out, fmt.Errorf("through haproxy: %w", err)
		}
		out[body]++
	}
	return out, nil
}

func (s *Stage) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	body := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, nil
}

// ServerStat is one server as HAProxy's "show stat" reports it (or the
// sandbox load balancer).
type ServerStat struct {
	Backend     string
	Server      string
	Status      string // UP, DOWN, DRAIN, MAINT, "UP 1/2"...
	CheckStatus string
	Weight      int64
	Sessions    int64
	AdminState  string // sandbox only: ready, drain or maint
}

// ShowStat returns the servers of the app's backend, from HAProxy's
// "show stat" (or the sandbox load balancer), ordered web1..webN.
func (s *Stage) ShowStat(ctx context.Context) ([]ServerStat, error) {
	if !s.Real(BackendHAProxy) {
		return s.sandbox.servers(ctx, ""), nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.HAProxySocket)
	if err != nil {
		return nil, fmt.Errorf("haproxy show stat: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, fmt.Errorf("haproxy show stat: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("haproxy show stat: %w", err)
	}
	return parseShowStat(string(raw), s.App)
}

// parseShowStat reads "show stat" CSV and keeps backend's servers.
func parseShowStat(raw, backend string) ([]ServerStat, error) {
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(strings.TrimSpace(raw), "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) < 1 {
		return nil, fmt.Errorf("haproxy show stat: want CSV, found %q", raw)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	var out []ServerStat
	for _, rec := range recs[1:] {
		sv := field(rec, "svname")
		if field(rec, "pxname") != backend || sv == "FRONTEND" || sv == "BACKEND" {
			continue
		}
		w, _ := strconv.ParseInt(field(rec, "weight"), 10, 64)
		n, _ := strconv.ParseInt(field(rec, "scur"), 10, 64)
		out = append(out, ServerStat{Backend: backend, Server: sv, Status: field(rec, "status"), CheckStatus: field(rec, "check_status"), Weight: w, Sessions: n})
	}
	slices.SortFunc(out, func(a, b ServerStat) int { return compareHosts(a.Server, b.Server) })
	return out, nil
}

// compareHosts orders web2 before web10.
func compareHosts(a, b string) int {
	na, _ := strconv.Atoi(strings.TrimLeft(a, "abcdefghijklmnopqrstuvwxyz"))
	nb, _ := strconv.Atoi(strings.TrimLeft(b, "abcdefghijklmnopqrstuvwxyz"))
	if na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

// Silence is an active monitoring silence for one host.
type Silence struct {
	ID      string
	Host    string
	EndsAt  time.Time
	Comment string
}

// Silences returns the active silences: from Alertmanager's API v2, or the
// sandbox's records.
func (s *Stage) Silences(ctx context.Context) ([]Silence, error) {
	if !s.Real(BackendMaintenance) {
		return s.sandbox.activeSilences(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.AlertmanagerURL+"/api/v2/silences", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("alertmanager silences: %w", err)
	}
	defer resp.Body.Close()
	var raw []struct {
		ID       string `json:"id"`
		Matchers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"matchers"`
		EndsAt  time.Time `json:"endsAt"`
		Comment string    `json:"comment"`
		Status  struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&raw); err != nil {
		return nil, fmt.Errorf("alertmanager silences: %w", err)
	}
	var out []Silence
	for _, r := range raw {
		if r.Status.State != "active" {
			continue
		}
		sl := Silence{ID: r.ID, EndsAt: r.EndsAt, Comment: r.Comment}
		for _, m := range r.Matchers {
			if m.Name == "host" {
				sl.Host = m.Value
			}
		}
		out = append(out, sl)
	}
	slices.SortFunc(out, func(a, b Silence) int { return compareHosts(a.Host, b.Host) })
	return out, nil
}

// BreakMarker is the file whose presence makes version fail to install on
// host ("" for an unknown host); BreakPackage creates it.
func (s *Stage) BreakMarker(host, version string) string {
	h := s.Host(host)
	if h == nil {
		return ""
	}
	return filepath.Join(h.Root, breakDir, "break-"+s.App+"-"+version)
}

// BreakPackage makes version fail to install on host: the package's
// preinst (or the sandbox package) finds a marker in the host's root and
// exits 1, so package update fails with dpkg's error.
func (s *Stage) BreakPackage(host, version string) error {
	if !versionRE.MatchString(version) {
		return fmt.Errorf("stage: break package: want a version such as 1.1, found %q", version)
	}
	return s.marker(host, func(h *Host) string { return s.BreakMarker(h.Identity, version) }, true)
}

// FixPackage undoes BreakPackage.
func (s *Stage) FixPackage(host, version string) error {
	if !versionRE.MatchString(version) {
		return fmt.Errorf("stage: fix package: want a version such as 1.1, found %q", version)
	}
	return s.marker(host, func(h *Host) string { return s.BreakMarker(h.Identity, version) }, false)
}

// BreakHealth makes the app on host answer 500 on every path, so the
// deploy's health check and HAProxy's check fail.
func (s *Stage) BreakHealth(host string) error {
	return s.marker(host, func(h *Host) string { return h.cfg.BrokenFile }, true)
}

// FixHealth undoes BreakHealth.
func (s *Stage) FixHealth(host string) error {
	return s.marker(host, func(h *Host) string { return h.cfg.BrokenFile }, false)
}

func (s *Stage) marker(host string, path func(*Host) string, set bool) error {
	h := s.Host(host)
	if h == nil {
		return fmt.Errorf("%w: %s", errNoSuchHost, host)
	}
	p := path(h)
	if set {
		return os.WriteFile(p, []byte("signet stage\n"), 0o644)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
