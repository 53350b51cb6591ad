package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signetbus/signet/bus"
	"github.com/signetbus/signet/internal/keys"
	"github.com/signetbus/signet/internal/policy"
	"github.com/signetbus/signet/internal/redact"
	"github.com/signetbus/signet/plugins"
)

// Host answers authenticated calls for one host: it is the bus.Handler,
// bus.Trust and node description signetd's responder uses.
type Host struct {
	identity      string
	collective    string
	version       string
	started       time.Time
	log           *slog.Logger
	actionTimeout time.Duration
	authPath      string
	policyPath    string
	// ctl holds revocations and locks (control.go).
	ctl controlState

	node    atomic.Pointer[bus.Node]
	trust   atomic.Pointer[trustStore]
	policy  atomic.Pointer[policy.Policy]
	plugins map[string]plugins.Plugin
	// ddls are the plugins' declarations, read once at start-up.
	ddls map[string]plugins.DDL
}

// HostOptions are what a Host is built from.
type HostOptions struct {
	Identity   string
	Collective string
	Version    string
	Facts      map[string]string
	Classes    []string
	// Plugins are the enabled plugins by agent name; rpcutil is added.
	Plugins        map[string]plugins.Plugin
	AuthorizedKeys string
	Policy         string
	ActionTimeout  time.Duration
	Logger         *slog.Logger
	// RevokedKeys, RevocationMaxAge and ClockSkew configure revocations
	// and locks (see Config and control.go).
	RevokedKeys      string
	RevocationMaxAge time.Duration
	ClockSkew        time.Duration
	// ControlState, when set, is the file that keeps accepted control
	// documents across restarts.
	ControlState string
}

type trustStore struct {
	byKey map[string]*bus.Principal
	byCA  map[string]*bus.CertAuthority
}

// NewHost loads the trust file and the policy and assembles the host.
func NewHost(o HostOptions) (*Host, error) {
	log := redact.Logger(o.Logger)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.ActionTimeout <= 0 {
		o.ActionTimeout = 5 * time.Minute
	}
	h := &Host{
		identity: o.Identity, collective: o.Collective, version: o.Version, started: time.Now(),
		log: log, actionTimeout: o.ActionTimeout, authPath: o.AuthorizedKeys, policyPath: o.Policy,
		plugins: map[string]plugins.Plugin{},
		ddls:    map[string]plugins.DDL{},
	}
	h.ctl.init(o)
	for name, p := range o.Plugins {
		if name == "rpcutil" {
			return nil, errors.New("plugin name rpcutil is reserved for the built-in agent")
		}
		if err := bus.CheckName("agent", name); err != nil {
			return nil, err
		}
		h.plugins[name] = guard(p)
	}
	h.plugins["rpcutil"] = &rpcutil{host: h}
	for name, p := range h.plugins {
		d := p.Describe()
		if err := d.Check(); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", name, err)
		}
		h.ddls[name] = d
	}
	agents := slices.Sorted(maps.Keys(h.plugins))
	facts := map[string]string{}
	for k, v := range o.Facts {
		facts[k] = v
	}
	h.node.Store(&bus.Node{Identity: o.Identity, Facts: facts, Agents: agents, Classes: append([]string(nil), o.Classes...)})
	if err := h.Reload(); err != nil {
		return nil, err
	}
	if err := h.loadControlState(); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload re-reads the trust file and the policy. Either both load or
// neither changes; requests in flight keep the ones they started with.
func (h *Host) Reload() error {
	auth, err := keys.LoadAuthorizedKeys(h.authPath)
	if err != nil {
		return fmt.Errorf("authorized keys: %w", err)
	}
	pol, err := policy.Load(h.policyPath)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	warnings, err := pol.CheckAgents(append(plugins.Names(), "rpcutil"), slices.Collect(maps.Keys(h.plugins)))
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	for _, w := range warnings {
		h.log.Warn("policy names an agent this host does not offer", "where", w)
	}
	var held []string
	for _, a := range auth {
		held = append(held, a.Roles...)
	}
	for _, w := range pol.CheckRoles(held) {
		h.log.Warn("policy grants a role no key holds", "where", w)
	}
	revoked, err := loadRevokedKeys(h.ctl.revokedPath)
	if err != nil {
		return err
	}
	ts := &trustStore{byKey: make(map[string]*bus.Principal, len(auth)), byCA: map[string]*bus.CertAuthority{}}
	for _, a := range auth {
		if a.CA {
			ts.byCA[a.KeyBlob] = &bus.CertAuthority{Name: a.Name, Roles: a.Roles, Fingerprint: a.Fingerprint, Key: a.Key}
			continue
		}
		ts.byKey[a.KeyBlob] = &bus.Principal{Name: a.Name, Roles: a.Roles, Fingerprint: a.Fingerprint, Key: a.Key}
	}
	h.trust.Store(ts)
	h.policy.Store(pol)
	h.ctl.fileRevoked.Store(revoked)
	h.log.Info("loaded trust and policy", "keys", len(ts.byKey), "cert_authorities", len(ts.byCA), "authorized_keys", h.authPath, "policy", h.policyPath)
	return nil
}

// Node describes the host for filters and the registry.
func (h *Host) Node() *bus.Node { return h.node.Load() }

// LookupKey implements bus.Trust.
func (h *Host) LookupKey(blob []byte) (*bus.Principal, bool) {
	p, ok := h.trust.Load().byKey[string(blob)]
	return p, ok
}

// LookupCA implements bus.CertTrust: the cert-authority lines of the
// trust file.
func (h *Host) LookupCA(blob []byte) (*bus.CertAuthority, bool) {
	ca, ok := h.trust.Load().byCA[string(blob)]
	return ca, ok
}

// Plugins returns the enabled agents, rpcutil included.
func (h *Host) Plugins() map[string]plugins.Plugin { return h.plugins }

// Close releases plugins that hold resources.
func (h *Host) Close() error {
	var errs []error
	for _, p := range h.plugins {
		if c, ok := p.(plugins.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// authorized is what Authorize hands to Handle: the plugin, its declared
// action and the validated parameters.
type authorized struct {
	plugin plugins.Plugin
	action plugins.Action
	params plugins.Params
}

var _ bus.Authorizer = (*Host)(nil)

// Authorize implements bus.Authorizer: the agent and action exist, the
// policy allows the caller, and the parameters are valid. The responder
// asks it before the request takes replay-cache space.
func (h *Host) Authorize(_ context.Context, call *bus.Call) *bus.Reply {
	req := call.Request
	// The responder logs and audits the refusal (once per frame: copies of
	// a refused frame are only counted), so nothing is logged here.
	refuse := func(code, msg string) *bus.Reply {
		return &bus.Reply{Status: bus.StatusRefused, Code: code, Error: msg}
	}
	if rep, done := h.authorizeControlRead(call); done { // an admin's control_state
		return rep
	}
	if rep := h.checkControl(call); rep != nil { // revocations and locks
		return rep
	}
	p, ok := h.plugins[req.Agent]
	if !ok {
		return refuse(bus.CodeUnknownAgent, fmt.Sprintf("agent %q is not enabled on this host (enabled: %s)", req.Agent, strings.Join(h.Node().Agents, ", ")))
	}
	ddl := h.ddls[req.Agent]
	action, ok := ddl.Action(req.Action)
	if !ok {
		return refuse(bus.CodeUnknownAction, (&plugins.UnknownActionError{Plugin: req.Agent, Action: req.Action, Actions: ddl.ActionNames()}).Error())
	}
	if d := h.policy.Load().Authorize(call.Principal.Roles, req.Agent, req.Action, h.Node().Facts); !d.Allowed {
		return refuse(bus.CodeDenied, "policy denies "+call.Principal.Name+": "+d.Reason)
	}
	if rep := h.checkApprovals(call); rep != nil { // the two-person rule
		return rep
	}
	params, err := plugins.PrepareAction(p, action, req.Params)
	if err != nil {
		return refuse(bus.CodeInvalidParams, err.Error())
	}
	call.Authorized = &authorized{plugin: p, action: action, params: params}
	return nil
}

// Handle implements bus.Handler. It runs what Authorize allowed; called
// without Authorize first (not through a responder), it authorizes itself.
func (h *Host) Handle(ctx context.Context, call *bus.Call) *bus.Reply {
	a, ok := call.Authorized.(*authorized)
	if !ok {
		if rep := h.Authorize(ctx, call); rep != nil {
			return rep
		}
		a = call.Authorized.(*authorized)
	}
	req := call.Request
	log := h.log.With("request_id", req.ID, "agent", req.Agent, "action", req.Action, "sender", call.Principal.Name)
	p, action, params := a.plugin, a.action, a.params
	node := h.Node()
	timeout := h.actionTimeout
	if action.Timeout > 0 {
		timeout = action.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log.Info("running action")
	res, err := p.Run(ctx, &plugins.Request{
		Action: req.Action, Params: params, Identity: h.identity, Caller: call.Principal.Name,
		RequestID: req.ID, Facts: node.Facts, Log: log,
	})
	if err != nil {
		code := bus.CodeFailed
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			code = bus.CodeTimeout
		}
		log.Warn("action failed", "err", redact.String(err.Error()))
		rep := &bus.Reply{Status: bus.StatusFailed, Code: code, Error: err.Error()}
		if res != nil {
			rep.Changed, rep.Summary, rep.Data = res.Changed, res.Summary, res.Data
		}
		return rep
	}
	if res == nil {
		res = &plugins.Result{}
	}
	return &bus.Reply{Status: bus.StatusOK, Changed: res.Changed, Summary: res.Summary, Data: res.Data}
}
