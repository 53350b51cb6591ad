// Package haproxy is signet's "haproxy" plugin: it takes a server out of
// HAProxy load balancing and puts it back, through HAProxy's runtime API
// (the stats socket, which must be configured "level admin").
//
// Actions:
//
//   - status: report servers, their health, weight, open sessions and
//     admin state
//   - drain: "set server <backend>/<server> state drain", then wait until
//     the server's open sessions reach zero
//   - disable: "set server <backend>/<server> state maint"
//   - enable: "set server <backend>/<server> state ready", then wait until
//     health checks report the server UP
//   - weight: "set server <backend>/<server> weight <n>"
//
// The server defaults to the host's identity, so an operator can broadcast
// "haproxy drain backend=app" and every web host drains itself. One host
// may run several HAProxy instances (Config.Instances); every action runs
// on each instance that has the backend and server, and data.matched counts
// them. A host where no instance has them answers ok with changed=false and
// matched=0: a broadcast reaches hosts that are not behind that backend.
//
// The runtime API is line-based and ';' separates commands, so backend and
// server names are checked against a strict grammar (see Validate) before
// they go near the socket, and the socket client refuses any command with a
// newline, ';' or control character as a second line of defence.
package haproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/signetbus/signet/internal/lazyre"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: Name, New: New}) }

// Name is the agent name operators use.
const Name = "haproxy"

// Defaults.
const (
	// DefaultInstance and DefaultSocket make up the instance used when the
	// config lists none: Debian's and Ubuntu's packaged HAProxy socket.
	DefaultInstance = "main"
	DefaultSocket   = "unix:/run/haproxy/admin.sock"
	// DefaultSocketTimeout bounds each runtime API command.
	DefaultSocketTimeout = 10 * time.Second
	// DefaultDrainTimeout and DefaultEnableTimeout are how long drain
	// and enable wait when the request gives no timeout.
	DefaultDrainTimeout  = 60 * time.Second
	DefaultEnableTimeout = 30 * time.Second
	// MaxDrainTimeout and MaxEnableTimeout bound the timeout parameter.
	MaxDrainTimeout  = time.Hour
	MaxEnableTimeout = 30 * time.Minute
	// MaxWeight is HAProxy's largest server weight.
	MaxWeight = 256
)

// Config is the plugin's section of the host config.
type Config struct {
	// Instances are the HAProxy processes on this host, each with its own
	// runtime API socket. Empty means one instance named "main" at
	// unix:/run/haproxy/admin.sock. Names and sockets must be unique.
	Instances []InstanceConfig `json:"instances,omitempty"`

	// SocketTimeout bounds each runtime API command (connect, send,
	// read the answer), as a Go duration such as "10s". Empty means 10s.
	SocketTimeout string `json:"socket_timeout,omitempty"`
}

// InstanceConfig is one entry of Config.Instances.
type InstanceConfig struct {
	// Name identifies the instance in results and messages, such as
	// "main" or "public": letters, digits, '_', '.', '-', at most 64.
	Name string `json:"name"`

	// Socket is the instance's runtime API socket, declared in haproxy.cfg
	// with "stats socket ... level admin": "unix:/run/haproxy/admin.sock"
	// for a UNIX socket (an absolute path), or "tcp:127.0.0.1:9999" for a
	// TCP one. The runtime API has no authentication: a TCP socket should
	// listen on loopback only.
	Socket string `json:"socket"`
}

// ServerStatus is one server as actions report it, in data.servers.
type ServerStatus struct {
	// Instance is the configured name of the HAProxy instance.
	Instance string `json:"instance"`
	Backend  string `json:"backend"`
	Server   string `json:"server"`
	// Status is HAProxy's status column: "UP", "DOWN", "MAINT", "DRAIN",
	// "no check", or a transition such as "UP 1/3" or "DOWN 1/2".
	Status string `json:"status"`
	// CheckStatus is the last health check's result, such as "L7OK" (the
	// "* " HAProxy puts in front while a check is running is removed),
	// "L4CON" or "L7STS"; empty for servers without checks.
	CheckStatus string `json:"check_status,omitempty"`
	// Weight is the server's user weight, which the weight action sets.
	Weight int64 `json:"weight"`
	// Sessions are the sessions open on the server (scur).
	Sessions int64 `json:"sessions"`
	// AdminState is "ready", "drain" or "maint", from "show servers
	// state"; empty if the server appeared between the two reads.
	AdminState string `json:"admin_state,omitempty"`
}

// describeStatus renders the status with the check result when the server
// is not plainly up, such as "DOWN (L4CON)".
func (s ServerStatus) describeStatus() string {
	if s.CheckStatus != "" && s.Status != "UP" && s.Status != "MAINT" && s.Status != "DRAIN" {
		return s.Status + " (" + s.CheckStatus + ")"
	}
	return s.Status
}

// isUp reports whether HAProxy balances traffic to the server as a settled,
// healthy server: "UP", or "no check" for a server without health checks.
// Transitions such as "UP 1/3" (failing checks) do not count.
func (s ServerStatus) isUp() bool { return s.Status == "UP" || s.Status == "no check" }

// Haproxy is the "haproxy" plugin.
type Haproxy struct {
	instances []*instance
	// poll is the interval between reads while drain and enable wait.
	poll time.Duration
}

var (
	_ plugins.Plugin    = (*Haproxy)(nil)
	_ plugins.Validator = (*Haproxy)(nil)
)

var instanceNameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// New builds the plugin from its config (see Config). It does not connect:
// HAProxy may start after signetd.
func New(config json.RawMessage) (plugins.Plugin, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, config, &cfg); err != nil {
		return nil, err
	}
	timeout := DefaultSocketTimeout
	if cfg.SocketTimeout != "" {
		d, err := time.ParseDuration(cfg.SocketTimeout)
		if err != nil || d < 100*time.Millisecond || d > 5*time.Minute {
			return nil, fmt.Errorf("plugin %s: config: socket_timeout must be a duration from 100ms to 5m, got %q", Name, cfg.SocketTimeout)
		}
		timeout = d
	}
	if cfg.Instances == nil {
		cfg.Instances = []InstanceConfig{{Name: DefaultInstance, Socket: DefaultSocket}}
	}
	if len(cfg.Instances) == 0 {
		return nil, fmt.Errorf("plugin %s: config: instances: want at least one, got an empty list (omit the key for %s at %s)", Name, DefaultInstance, DefaultSocket)
	}
	h := &Haproxy{poll: 250 * time.Millisecond}
	names, sockets := map[string]bool{}, map[string]bool{}
	for i, ic := range cfg.Instances {
		if !instanceNameRE.MatchString(ic.Name) {
			return nil, fmt.Errorf("plugin %s: config: instances[%d]: name must be letters, digits, '_', '.', '-' (at most 64), got %q", Name, i, ic.Name)
		}
		if names[ic.Name] {
			return nil, fmt.Errorf("plugin %s: config: instances[%d]: name %q is used twice", Name, i, ic.Name)
		}
		network, address, err := parseSocket(ic.Socket)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: config: instances[%d] (%s): socket: %w", Name, i, ic.Name, err)
		}
		key := network + ":" + address
		if sockets[key] {
			return nil, fmt.Errorf("plugin %s: config: instances[%d] (%s): socket %q is used by another instance", Name, i, ic.Name, ic.Socket)
		}
		names[ic.Name], sockets[key] = true, true
		h.instances = append(h.instances, &instance{name: ic.Name, addr: ic.Socket,
			sock: socket{network: network, address: address, timeout: timeout}})
	}
	return h, nil
}

// namePattern is the grammar of backend and server names in requests: what
// HAProxy allows in proxy and server names, and nothing that could end or
// chain a runtime API command.
const namePattern = `[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}`

var nameRE = lazyre.New(`^` + namePattern + `$`)

// Describe returns the plugin's DDL.
func (h *Haproxy) Describe() plugins.DDL {
	backendIn := func(required bool) plugins.Input {
		return plugins.Input{Name: "backend", Type: plugins.TypeString, Required: required, Pattern: namePattern, MaxLength: 100,
			Description: "HAProxy backend name, such as app"}
	}
	serverIn := plugins.Input{Name: "server", Type: plugins.TypeString, Pattern: namePattern, MaxLength: 100,
		Description: "HAProxy server name in the backend; defaults to this host's identity"}
	waitIn := plugins.Input{Name: "wait", Type: plugins.TypeBoolean, Default: true}
	timeoutIn := plugins.Input{Name: "timeout", Type: plugins.TypeDuration, MaxLength: 32, Min: plugins.Float(1)}
	out := []plugins.Output{
		{Name: "matched", Description: "number of HAProxy instances that have the backend and server and were acted on", Type: plugins.TypeInteger},
		{Name: "servers", Description: "the servers afterwards: instance, backend, server, status, check_status, weight, sessions, admin_state", Type: "list"},
	}

	drainWait, drainTimeout := waitIn, timeoutIn
	drainWait.Description = "wait until the server's open sessions reach zero"
	drainTimeout.Description = "how long to wait for sessions to end; running out is an error"
	drainTimeout.Default, drainTimeout.Max = DefaultDrainTimeout.String(), plugins.Float(MaxDrainTimeout.Seconds())
	enableWait, enableTimeout := waitIn, timeoutIn
	enableWait.Description = "wait until health checks report the server UP"
	enableTimeout.Description = "how long to wait for UP; running out is an error that reports the status found"
	enableTimeout.Default, enableTimeout.Max = DefaultEnableTimeout.String(), plugins.Float(MaxEnableTimeout.Seconds())

	return plugins.DDL{
		Name:        Name,
		Description: "drain, disable, enable and weigh servers in HAProxy through its runtime API (" + h.instanceNames() + ")",
		Actions: []plugins.Action{
			{Name: "status", Description: "report servers: status, weight, open sessions, admin state; without server, every server of the backend (or of all backends)",
				Timeout: time.Minute,
				Inputs: []plugins.Input{backendIn(false),
					{Name: "server", Type: plugins.TypeString, Pattern: namePattern, MaxLength: 100, Description: "only this server; default all"}},
				Outputs: out},
			{Name: "drain", Description: "stop sending new sessions to the server (state drain) and wait for open ones to end",
				Timeout: MaxDrainTimeout + time.Minute,
				Inputs:  []plugins.Input{backendIn(true), serverIn, drainWait, drainTimeout}, Outputs: out},
			{Name: "disable", Description: "put the server in maintenance (state maint): no traffic, no health checks",
				Timeout: time.Minute,
				Inputs:  []plugins.Input{backendIn(true), serverIn}, Outputs: out},
			{Name: "enable", Description: "put the server back in service (state ready) and wait until it is UP",
				Timeout: MaxEnableTimeout + time.Minute,
				Inputs:  []plugins.Input{backendIn(true), serverIn, enableWait, enableTimeout}, Outputs: out},
			{Name: "weight", Description: "set the server's weight (0 stops new traffic without draining persistent sessions)",
				Timeout: time.Minute,
				Inputs: []plugins.Input{backendIn(true), serverIn,
					{Name: "weight", Type: plugins.TypeInteger, Required: true, Min: plugins.Float(0), Max: plugins.Float(MaxWeight),
						Description: "the new weight, 0 to 256"}},
				Outputs: out},
		},
	}
}

// CheckName checks a backend or server name against the grammar the plugin
// accepts, and says which rule a refused name breaks. kind ("backend" or
// "server") names it in the message.
func CheckName(kind, name string) error {
	var msg string
	switch {
	case name == "":
		msg = "is empty"
	case strings.ContainsAny(name, "\r\n"):
		msg = "contains a newline, which ends a runtime API command"
	case strings.Contains(name, ";"):
		msg = "contains ';', which separates runtime API commands"
	case strings.ContainsAny(name, " \t"):
		msg = "contains a space, which separates runtime API arguments"
	case strings.Contains(name, "/"):
		msg = "contains '/', which separates backend and server; pass them as backend= and server="
	case strings.HasPrefix(name, "-"):
		msg = "starts with '-'"
	case len(name) > 100:
		msg = fmt.Sprintf("is %d bytes long, more than 100", len(name))
	case !nameRE.MatchString(name):
		msg = "may hold only letters, digits, '_', '.', ':' and '-', starting with a letter or digit"
	default:
		return nil
	}
	return fmt.Errorf("%s name %q %s", kind, name, msg)
}

// Validate checks names, the weight and the timeout. It runs without side
// effects; Run calls it again.
func (h *Haproxy) Validate(action string, params plugins.Params) error {
	var maxWait time.Duration
	switch action {
	case "status", "disable", "weight":
	case "drain":
		maxWait = MaxDrainTimeout
	case "enable":
		maxWait = MaxEnableTimeout
	default:
		return fmt.Errorf("haproxy: unknown action %q (want status, drain, disable, enable or weight)", action)
	}
	if !params.Has("backend") && action != "status" {
		return &plugins.ParamError{Action: action, Param: "backend", Rule: "required", Msg: "required parameter is missing"}
	}
	for _, p := range []string{"backend", "server"} {
		if !params.Has(p) {
			continue
		}
		v, ok := params[p].(string)
		if !ok {
			return &plugins.ParamError{Action: action, Param: p, Rule: "type", Msg: fmt.Sprintf("want a string, got %T", params[p])}
		}
		if err := CheckName(p, v); err != nil {
			return &plugins.ParamError{Action: action, Param: p, Rule: "name", Msg: err.Error()}
		}
	}
	if action == "weight" {
		w, ok := params["weight"].(int64)
		if !ok {
			return &plugins.ParamError{Action: action, Param: "weight", Rule: "required", Msg: "want an integer weight from 0 to 256"}
		}
		if w < 0 || w > MaxWeight {
			return &plugins.ParamError{Action: action, Param: "weight", Rule: "max", Msg: fmt.Sprintf("want a weight from 0 to %d, got %d", MaxWeight, w)}
		}
	}
	if maxWait > 0 && params.Has("timeout") {
		s := params.String("timeout")
		d, err := time.ParseDuration(s)
		if err != nil {
			return &plugins.ParamError{Action: action, Param: "timeout", Rule: "type", Msg: fmt.Sprintf("want a duration such as 60s, got %q", s)}
		}
		if d < time.Second || d > maxWait {
			return &plugins.ParamError{Action: action, Param: "timeout", Rule: "max", Msg: fmt.Sprintf("want a duration from 1s to %v, got %v", maxWait, d)}
		}
	}
	return nil
}

// Run performs one action on every configured instance.
func (h *Haproxy) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	// Validate again: Run must be safe even if a caller skipped Validate.
	if err := h.Validate(req.Action, req.Params); err != nil {
		return nil, err
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backend := req.Params.String("backend")
	if req.Action == "status" {
		return h.status(ctx, backend, req.Params.String("server"))
	}
	server := req.Params.String("server")
	if !req.Params.Has("server") {
		server = req.Identity
		if err := CheckName("server", server); err != nil {
			return nil, fmt.Errorf("haproxy %s: server defaults to this host's identity, which is not a usable name (%w); pass server=", req.Action, err)
		}
	}
	a := change{backend: backend, server: server, action: req.Action, wait: true}
	if req.Params.Has("wait") {
		a.wait = req.Params.Bool("wait")
	}
	switch req.Action {
	case "drain":
		a.state, a.timeout = stateDrain, DefaultDrainTimeout
	case "disable":
		a.state, a.wait = stateMaint, false
	case "enable":
		a.state, a.timeout = stateReady, DefaultEnableTimeout
	case "weight":
		a.weight, a.wait = req.Params.Int("weight"), false
	}
	if req.Params.Has("timeout") {
		a.timeout = req.Params.Duration("timeout")
	}
	return h.change(ctx, log.With("backend", backend, "server", server), a)
}

// status reports the servers matching the filters on every instance.
func (h *Haproxy) status(ctx context.Context, backend, server string) (*plugins.Result, error) {
	servers := []ServerStatus{}
	matched := 0
	for _, in := range h.instances {
		views, err := in.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("haproxy status: %w", err)
		}
		found := false
		for _, v := range views {
			if (backend == "" || v.Backend == backend) && (server == "" || v.Server == server) {
				servers = append(servers, v.ServerStatus)
				found = true
			}
		}
		if found {
			matched++
		}
	}
	what := "servers"
	switch {
	case backend != "" && server != "":
		what = "server " + backend + "/" + server
	case backend != "":
		what = "servers of backend " + backend
	case server != "":
		what = "servers named " + server
	}
	summary := fmt.Sprintf("%d %s on %s", len(servers), what, h.instanceNames())
	if len(servers) == 0 {
		summary = fmt.Sprintf("no %s on this host's haproxy (%s)", what, h.instanceNames())
	} else if len(servers) == 1 {
		summary = fmt.Sprintf("%s/%s on %s: %s, weight %d, %d sessions", servers[0].Backend, servers[0].Server,
			servers[0].Instance, servers[0].describeStatus(), servers[0].Weight, servers[0].Sessions)
	}
	return &plugins.Result{Summary: summary, Data: map[string]any{"matched": matched, "servers": servers}}, nil
}

// change is one drain, disable, enable or weight.
type change struct {
	action          string
	backend, server string
	state           string // wanted admin state; empty for weight
	weight          int64
	wait            bool
	timeout         time.Duration
}

func (a change) target() string { return a.backend + "/" + a.server }

// target is a server found on one instance.
type target struct {
	in  *instance
	cur view
}

func (h *Haproxy) change(ctx context.Context, log *slog.Logger, a change) (*plugins.Result, error) {
	// Read every instance before changing any: an instance that cannot be
	// reached fails the action while nothing has changed yet.
	var targets []target
	for _, in := range h.instances {
		views, err := in.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("haproxy %s %s: %w", a.action, a.target(), err)
		}
		for _, v := range views {
			if v.Backend == a.backend && v.Server == a.server {
				targets = append(targets, target{in: in, cur: v})
			}
		}
	}
	if len(targets) == 0 {
		return &plugins.Result{
			Summary: fmt.Sprintf("no server %s on this host's haproxy (%s): nothing to %s", a.target(), h.instanceNames(), a.action),
			Data:    map[string]any{"matched": 0, "servers": []ServerStatus{}},
		}, nil
	}

	changed := false
	var done []string
	for _, t := range targets {
		var cmd string
		switch {
		case a.state != "" && t.cur.forced != a.state:
			cmd = "set server " + a.target() + " state " + a.state
		case a.state == "" && t.cur.Weight != a.weight:
			cmd = "set server " + a.target() + " weight " + strconv.FormatInt(a.weight, 10)
		default:
			continue
		}
		if err := t.in.set(ctx, cmd); err != nil {
			if len(done) > 0 {
				return nil, fmt.Errorf("haproxy %s %s: %w (already changed on %s)", a.action, a.target(), err, strings.Join(done, ", "))
			}
			return nil, fmt.Errorf("haproxy %s %s: %w", a.action, a.target(), err)
		}
		changed = true
		done = append(done, t.in.name)
		if a.state != "" {
			log.Info("haproxy server state changed", "instance", t.in.name, "from", t.cur.forced, "to", a.state)
		} else {
			log.Info("haproxy server weight changed", "instance", t.in.name, "from", t.cur.Weight, "to", a.weight)
		}
	}

	var (
		final []ServerStatus
		err   error
	)
	if a.wait {
		final, err = h.wait(ctx, log, a, targets)
	} else {
		final, err = h.reread(ctx, a, targets)
	}
	if err != nil {
		return nil, err
	}
	return &plugins.Result{
		Changed: changed,
		Summary: summarize(a, changed, final),
		Data:    map[string]any{"matched": len(targets), "servers": final},
	}, nil
}

// reread reads the targets' current status once.
func (h *Haproxy) reread(ctx context.Context, a change, targets []target) ([]ServerStatus, error) {
	out := make([]ServerStatus, 0, len(targets))
	for _, t := range targets {
		v, err := t.in.find(ctx, a.backend, a.server)
		if err != nil {
			return nil, fmt.Errorf("haproxy %s %s: read back: %w", a.action, a.target(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// wait polls the targets until each is settled (drain: no open sessions;
// enable: UP), the timeout passes or the request's deadline comes. Running
// out is an error that says what was found.
func (h *Haproxy) wait(ctx context.Context, log *slog.Logger, a change, targets []target) ([]ServerStatus, error) {
	settled := func(s ServerStatus) bool { return s.isUp() }
	if a.state == stateDrain {
		settled = func(s ServerStatus) bool { return s.Sessions == 0 }
	}
	wctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	tick := time.NewTicker(h.poll)
	defer tick.Stop()
	deadline, _ := wctx.Deadline()
	var last []ServerStatus
	for {
		cur, err := h.reread(wctx, a, targets)
		if err != nil {
			// A read cut short by the end of the wait is the wait
			// running out; the dialer may notice a moment before wctx.
			if wctx.Err() != nil || !time.Now().Before(deadline) {
				return nil, h.waitError(ctx, log, a, last)
			}
			return nil, err
		}
		last = cur
		all := true
		for _, s := range cur {
			all = all && settled(s)
		}
		if all {
			return cur, nil
		}
		select {
		case <-wctx.Done():
			return nil, h.waitError(ctx, log, a, last)
		case <-tick.C:
		}
	}
}

func (h *Haproxy) waitError(ctx context.Context, log *slog.Logger, a change, last []ServerStatus) error {
	why := fmt.Sprintf("after %v", a.timeout)
	if ctx.Err() != nil {
		why = "before the request's deadline, which came before the timeout"
	}
	var parts []string
	var sessions int64
	for _, s := range last {
		if a.state == stateDrain {
			sessions += s.Sessions
			parts = append(parts, fmt.Sprintf("%s: %d", s.Instance, s.Sessions))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %s", s.Instance, s.describeStatus()))
		}
	}
	found := strings.Join(parts, ", ")
	if found == "" {
		found = "no status could be read"
	}
	var err error
	if a.state == stateDrain {
		err = fmt.Errorf("haproxy drain %s: %d sessions still open %s (%s); the server stays in drain", a.target(), sessions, why, found)
	} else {
		err = fmt.Errorf("haproxy enable %s: not UP %s, found %s; the server stays in state ready", a.target(), why, found)
	}
	log.Warn("haproxy wait ran out", "action", a.action, "found", found)
	return err
}

func summarize(a change, changed bool, final []ServerStatus) string {
	names := make([]string, len(final))
	var sessions int64
	for i, s := range final {
		names[i] = s.Instance
		sessions += s.Sessions
	}
	on := strings.Join(names, ", ")
	prefix := ""
	if !changed {
		prefix = "already "
	}
	switch a.action {
	case "drain":
		if a.wait {
			return fmt.Sprintf("%s %sdraining on %s, no sessions left", a.target(), prefix, on)
		}
		return fmt.Sprintf("%s %sdraining on %s, %d sessions open (not waiting)", a.target(), prefix, on, sessions)
	case "disable":
		return fmt.Sprintf("%s %sin maintenance on %s", a.target(), prefix, on)
	case "enable":
		if a.wait {
			return fmt.Sprintf("%s %sready and UP on %s", a.target(), prefix, on)
		}
		states := make([]string, len(final))
		for i, s := range final {
			states[i] = s.describeStatus()
		}
		return fmt.Sprintf("%s %sready on %s (%s, not waiting)", a.target(), prefix, on, strings.Join(states, ", "))
	case "weight":
		if changed {
			return fmt.Sprintf("%s weight set to %d on %s", a.target(), a.weight, on)
		}
		return fmt.Sprintf("%s weight already %d on %s", a.target(), a.weight, on)
	}
	return ""
}

func (h *Haproxy) instanceNames() string {
	n := make([]string, len(h.instances))
	for i, in := range h.instances {
		n[i] = in.name
	}
	return strings.Join(n, ", ")
}

// instance is one configured HAProxy process.
type instance struct {
	name string
	addr string // as configured, for messages
	sock socket
}

// view is a server as read from one instance.
type view struct {
	ServerStatus
	// forced is the state last set through the runtime API ("ready" when
	// none), which actions compare with what they ask for.
	forced string
}

// read returns every server of the instance, joining "show stat" (status,
// sessions, weight) with "show servers state" (admin state).
func (in *instance) read(ctx context.Context) ([]view, error) {
	raw, err := in.sock.do(ctx, "show stat")
	if err != nil {
		return nil, in.unreachable(err)
	}
	tbl, err := parseStat([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("haproxy instance %s (%s): %w", in.name, in.addr, err)
	}
	stats, err := tbl.servers()
	if err != nil {
		return nil, fmt.Errorf("haproxy instance %s (%s): %w", in.name, in.addr, err)
	}
	raw, err = in.sock.do(ctx, "show servers state")
	if err != nil {
		return nil, in.unreachable(err)
	}
	states, err := parseServersState([]byte(raw))
	if err != nil {
		return nil, fmt.Errorf("haproxy instance %s (%s): %w", in.name, in.addr, err)
	}
	type key struct{ b, s string }
	admin := make(map[key]serverState, len(states))
	for _, s := range states {
		admin[key{s.backend, s.server}] = s
	}
	out := make([]view, 0, len(stats))
	for _, s := range stats {
		v := view{ServerStatus: ServerStatus{Instance: in.name, Backend: s.backend, Server: s.server, Status: s.status,
			CheckStatus: strings.TrimPrefix(s.checkStatus, "* "), Weight: s.weight, Sessions: s.sessions}, forced: stateReady}
		if st, ok := admin[key{s.backend, s.server}]; ok {
			v.AdminState, v.forced = st.effective(), st.forced()
		}
		out = append(out, v)
	}
	return out, nil
}

// find reads one server of the instance.
func (in *instance) find(ctx context.Context, backend, server string) (ServerStatus, error) {
	views, err := in.read(ctx)
	if err != nil {
		return ServerStatus{}, err
	}
	for _, v := range views {
		if v.Backend == backend && v.Server == server {
			return v.ServerStatus, nil
		}
	}
	return ServerStatus{}, fmt.Errorf("haproxy instance %s (%s): server %s/%s is gone (was haproxy reloaded?)", in.name, in.addr, backend, server)
}

// set sends a command that answers nothing on success.
func (in *instance) set(ctx context.Context, cmd string) error {
	answer, err := in.sock.do(ctx, cmd)
	if err != nil {
		return in.unreachable(err)
	}
	if msg := strings.TrimSpace(answer); msg != "" {
		return &APIError{Instance: in.name, Command: cmd, Message: msg}
	}
	return nil
}

func (in *instance) unreachable(err error) error {
	hint := ""
	if !errors.Is(err, ErrUnsafeCommand) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		hint = "; is haproxy running, with \"stats socket ... level admin\" at that address?"
	}
	return fmt.Errorf("haproxy instance %s (%s): %w%s", in.name, in.addr, err, hint)
}
