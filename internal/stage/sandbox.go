package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signetbus/signet/plugins"
	"github.com/signetbus/signet/plugins/haproxy"
	"github.com/signetbus/signet/plugins/maintenance"
	"github.com/signetbus/signet/plugins/packages"
	"github.com/signetbus/signet/plugins/service"
)

// Sandbox backends stand in for a real backend that is missing on this
// machine. Each has the real plugin's agent name and DDL (taken from the
// real plugin, so actions, inputs and defaults are the same) and answers
// with the same data keys; only the work behind it is simulated. The bus,
// signatures, policy, audit and workflow engine around them stay real.

// realDDL returns the DDL of a real plugin built with a config that needs
// nothing from the machine.
func realDDL(newPlugin func(json.RawMessage) (plugins.Plugin, error), config string) plugins.DDL {
	p, err := newPlugin(json.RawMessage(config))
	if err != nil {
		panic(fmt.Sprintf("stage: build a plugin for its DDL: %v", err)) // a bug: the configs below are constants
	}
	return p.Describe()
}

// sandboxPackage installs a version by writing the file the .deb would
// install, from the versions the stage offers.
type sandboxPackage struct {
	app         string
	versions    []string
	versionFile string
	breakDir    string // markers of BreakPackage, as for the real preinst
	mu          sync.Mutex
	ddl         plugins.DDL
}

func newSandboxPackage(app string, versions []string, root string) *sandboxPackage {
	return &sandboxPackage{app: app, versions: versions, versionFile: filepath.Join(root, "opt", app, "VERSION"),
		breakDir: filepath.Join(root, breakDir), ddl: realDDL(packages.New, `{"backend":"apt"}`)}
}

func (p *sandboxPackage) Describe() plugins.DDL { return p.ddl }

func (p *sandboxPackage) installed() string {
	b, err := os.ReadFile(p.versionFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (p *sandboxPackage) data(v string) map[string]any {
	return map[string]any{"package": p.app, "installed": v != "", "version": v}
}

func (p *sandboxPackage) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, want := req.Params.String("package"), req.Params.String("version")
	if req.Action != "refresh" && name != p.app {
		return nil, fmt.Errorf("%s %s: %w", req.Action, name, packages.ErrNoCandidate)
	}
	cur := p.installed()
	switch req.Action {
	case "refresh":
		return &plugins.Result{Summary: "sandbox package indexes refreshed", Data: map[string]any{"backend": "sandbox"}}, nil
	case "status":
		d := p.data(cur)
		d["held"], d["state"] = false, map[bool]string{true: "installed", false: "not-installed"}[cur != ""]
		return &plugins.Result{Summary: fmt.Sprintf("%s %s", name, cur), Data: d}, nil
	case "check_version":
		if cur == want {
			return &plugins.Result{Summary: fmt.Sprintf("%s %s is installed as wanted", name, cur), Data: p.data(cur)}, nil
		}
		return nil, &packages.VersionError{Package: name, Want: want, Installed: cur}
	case "install", "update":
		if want == "" {
			want = p.versions[len(p.versions)-1]
		}
		if cur == want || (req.Action == "install" && cur != "" && req.Params.String("version") == "") {
			return &plugins.Result{Summary: fmt.Sprintf("%s is already at %s", name, cur), Data: p.data(cur)}, nil
		}
		if !slices.Contains(p.versions, want) {
			return nil, fmt.Errorf("%s %s %s: version %s is not available (the sandbox repository offers %s)", req.Action, name, want, want, strings.Join(p.versions, ", "))
		}
		if _, err := os.Stat(filepath.Join(p.breakDir, "break-"+p.app+"-"+want)); err == nil {
			return nil, fmt.Errorf("%s %s %s: %s %s: preinst refused to install (signet stage BreakPackage)", req.Action, name, want, p.app, want)
		}
		if err := os.MkdirAll(filepath.Dir(p.versionFile), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p.versionFile, []byte(want+"\n"), 0o644); err != nil {
			return nil, err
		}
		d := p.data(want)
		d["previous"] = cur
		return &plugins.Result{Changed: true, Summary: fmt.Sprintf("%s %s -> %s", name, cur, want), Data: d}, nil
	case "remove":
		if cur == "" {
			return &plugins.Result{Summary: name + " is not installed", Data: p.data("")}, nil
		}
		if err := os.Remove(p.versionFile); err != nil {
			return nil, err
		}
		d := p.data("")
		d["previous"] = cur
		return &plugins.Result{Changed: true, Summary: fmt.Sprintf("%s %s removed", name, cur), Data: d}, nil
	}
	return nil, fmt.Errorf("package: unknown action %q", req.Action)
}

// sandboxService runs the demo app as an in-process HTTP server.
type sandboxService struct {
	cfg   appConfig
	name  string
	mu    sync.Mutex
	srv   *http.Server
	since time.Time
	ddl   plugins.DDL
}

func newSandboxService(name string, cfg appConfig) *sandboxService {
	return &sandboxService{name: name, cfg: cfg, ddl: realDDL(service.New, `{"backend":"runit","service_dir":"/nonexistent"}`)}
}

func (s *sandboxService) Describe() plugins.DDL { return s.ddl }

func (s *sandboxService) data() map[string]any {
	d := map[string]any{"service": s.name, "active": s.srv != nil, "pid": int64(0), "backend": "sandbox"}
	if s.srv != nil {
		d["state"], d["detail"], d["since"] = "running", "in-process (sandbox)", s.since.UTC().Format(time.RFC3339)
	} else {
		d["state"], d["detail"] = "stopped", "down (sandbox)"
	}
	return d
}

func (s *sandboxService) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name := req.Params.String("service"); name != s.name {
		return nil, fmt.Errorf("%s: %w: the sandbox has only %s", name, service.ErrNotFound, s.name)
	}
	changed := false
	switch req.Action {
	case "status":
	case "start":
		if s.srv == nil {
			if err := s.start(); err != nil {
				return nil, err
			}
			changed = true
		}
	case "stop":
		if s.srv != nil {
			s.stop()
			changed = true
		}
	case "restart":
		s.stop()
		if err := s.start(); err != nil {
			return nil, err
		}
		changed = true
	case "reload":
		if s.srv == nil {
			return nil, fmt.Errorf("%s: cannot reload a service that is not running (found stopped); start it instead", s.name)
		}
		changed = true
	default:
		return nil, fmt.Errorf("service: unknown action %q", req.Action)
	}
	d := s.data()
	return &plugins.Result{Changed: changed, Summary: fmt.Sprintf("%s %s", s.name, d["state"]), Data: d}, nil
}

func (s *sandboxService) start() error {
	srv, err := serveApp(s.cfg)
	if err != nil {
		return fmt.Errorf("%s: start: %w", s.name, err)
	}
	s.srv, s.since = srv, time.Now()
	return nil
}

func (s *sandboxService) stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
	s.srv = nil
}

// shutdown stops the app; the stage calls it at Stop. It is not Close: a
// responder that stops (lab.StopHost) must not take the app down with it.
func (s *sandboxService) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop()
}

// sandboxMaintenance keeps one in-memory maintenance record per host, with
// its expiry.
type sandboxMaintenance struct {
	state *sandboxState
	ddl   plugins.DDL
}

func (m *sandboxMaintenance) Describe() plugins.DDL { return m.ddl }

func (m *sandboxMaintenance) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	st := m.state
	st.mu.Lock()
	defer st.mu.Unlock()
	until, active := st.silences[req.Identity]
	if active && time.Now().After(until) {
		delete(st.silences, req.Identity)
		active = false
	}
	changed := false
	switch req.Action {
	case "status":
	case "start":
		d := req.Params.Duration("duration")
		if d <= 0 {
			d = maintenance.DefaultDuration
		}
		until, active, changed = time.Now().Add(d), true, true
		st.silences[req.Identity] = until
	case "end":
		changed = active
		delete(st.silences, req.Identity)
		active = false
	default:
		return nil, fmt.Errorf("maintenance: unknown action %q", req.Action)
	}
	data := map[string]any{"active": active, "until": "", "ids": []any{}, "backend": "sandbox"}
	summary := req.Identity + " not in maintenance"
	if active {
		data["until"] = until.UTC().Format(time.RFC3339)
		data["ids"] = []any{"sandbox-" + req.Identity}
		summary = req.Identity + " in maintenance until " + data["until"].(string)
	}
	return &plugins.Result{Changed: changed, Summary: summary, Data: data}, nil
}

// sandboxHAProxy is one in-memory load balancer shared by every host: the
// admin state of each server is kept here, and a server is UP when its app
// answers /version with 200, as HAProxy's check would find.
type sandboxHAProxy struct {
	state *sandboxState
	ddl   plugins.DDL
}

func (h *sandboxHAProxy) Describe() plugins.DDL { return h.ddl }

func (h *sandboxHAProxy) Validate(action string, params plugins.Params) error {
	for _, p := range []string{"backend", "server"} {
		if params.Has(p) {
			if err := haproxy.CheckName(p, params.String(p)); err != nil {
				return &plugins.ParamError{Action: action, Param: p, Rule: "name", Msg: err.Error()}
			}
		}
	}
	return nil
}

func (h *sandboxHAProxy) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	st := h.state
	backend, server := req.Params.String("backend"), req.Params.String("server")
	if server == "" && req.Action != "status" {
		server = req.Identity
	}
	st.mu.Lock()
	_, known := st.admin[server]
	matched := int64(0)
	if (backend == "" || backend == st.backend) && (server == "" || known) {
		matched = 1
	}
	changed := false
	if matched == 1 {
		switch req.Action {
		case "status":
		case "drain":
			changed = st.admin[server] != "drain"
			st.admin[server] = "drain"
		case "disable":
			changed = st.admin[server] != "maint"
			st.admin[server] = "maint"
		case "enable":
			changed = st.admin[server] != "ready"
			st.admin[server] = "ready"
		case "weight":
			st.weight[server] = req.Params.Int("weight")
			changed = true
		default:
			st.mu.Unlock()
			return nil, fmt.Errorf("haproxy: unknown action %q", req.Action)
		}
	}
	st.mu.Unlock()
	if matched == 1 && req.Action == "enable" && req.Params.Bool("wait") {
		timeout := req.Params.Duration("timeout")
		if timeout <= 0 {
			timeout = haproxy.DefaultEnableTimeout
		}
		deadline := time.Now().Add(timeout)
		for {
			s := st.server(ctx, server)
			if s.Status == "UP" {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("enable %s/%s: wanted UP, found %s after %s", st.backend, server, s.Status, timeout)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	var servers []any
	if matched == 1 {
		for _, s := range st.servers(ctx, server) {
			servers = append(servers, map[string]any{"instance": "sandbox", "backend": s.Backend, "server": s.Server,
				"status": s.Status, "weight": s.Weight, "sessions": int64(0), "admin_state": s.AdminState})
		}
	}
	summary := fmt.Sprintf("%s %s/%s on %d instance(s)", req.Action, st.backend, server, matched)
	return &plugins.Result{Changed: changed, Summary: summary, Data: map[string]any{"matched": matched, "servers": servers}}, nil
}

// sandboxState is what the sandbox backends of all hosts share.
type sandboxState struct {
	mu       sync.Mutex
	silences map[string]time.Time // identity -> end of maintenance
	backend  string
	admin    map[string]string // server -> ready, drain or maint
	weight   map[string]int64
	apps     map[string]string // server -> 127.0.0.1:port
	client   *http.Client
}

func newSandboxState(backend string, apps map[string]string) *sandboxState {
	st := &sandboxState{silences: map[string]time.Time{}, backend: backend, admin: map[string]string{},
		weight: map[string]int64{}, apps: apps, client: &http.Client{Timeout: 500 * time.Millisecond}}
	for id := range apps {
		st.admin[id], st.weight[id] = "ready", 1
	}
	return st
}

// server reports one server's status as HAProxy would.
func (st *sandboxState) server(ctx context.Context, id string) ServerStat {
	st.mu.Lock()
	s := ServerStat{Backend: st.backend, Server: id, AdminState: st.admin[id], Weight: st.weight[id]}
	addr := st.apps[id]
	st.mu.Unlock()
	up := false
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/version", nil); err == nil {
		if resp, err := st.client.Do(req); err == nil {
			resp.Body.Close()
			up = resp.StatusCode == http.StatusOK
		}
	}
	switch {
	case s.AdminState == "maint":
		s.Status = "MAINT"
	case !up:
		s.Status = "DOWN"
	case s.AdminState == "drain":
		s.Status = "DRAIN"
	default:
		s.Status = "UP"
	}
	return s
}

// servers reports one server, or all when id is "".
func (st *sandboxState) servers(ctx context.Context, id string) []ServerStat {
	if id != "" {
		return []ServerStat{st.server(ctx, id)}
	}
	st.mu.Lock()
	ids := make([]string, 0, len(st.apps))
	for k := range st.apps {
		ids = append(ids, k)
	}
	st.mu.Unlock()
	slices.SortFunc(ids, compareHosts)
	out := make([]ServerStat, 0, len(ids))
	for _, k := range ids {
		out = append(out, st.server(ctx, k))
	}
	return out
}

func (st *sandboxState) activeSilences() []Silence {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []Silence
	for id, until := range st.silences {
		if time.Now().Before(until) {
			out = append(out, Silence{ID: "sandbox-" + id, Host: id, EndsAt: until})
		}
	}
	slices.SortFunc(out, func(a, b Silence) int { return compareHosts(a.Host, b.Host) })
	return out
}

var errNoSuchHost = errors.New("stage: no such host")
