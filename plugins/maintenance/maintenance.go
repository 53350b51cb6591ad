// Package maintenance is signet's "maintenance" plugin: it mutes this host's
// alerts for a bounded time while a workflow works on it, and unmutes them
// afterwards.
//
// Three actions exist: start (mute for a duration), end (unmute) and status.
// Each runs against every backend the host config enables:
//
//   - alertmanager: Prometheus Alertmanager silences through API v2
//   - icinga2: Icinga 2 host and service downtimes through its REST API
//
// Maintenance is always time-bounded: start takes a duration, defaulting to
// 30 minutes and capped by the config (4 hours unless set), so a workflow that
// crashes between start and end cannot mute a host forever.
//
// signet marks what it creates so that it never touches what a person made:
// an Alertmanager silence carries createdBy "signet/<caller>", a comment
// starting "signet:" and exactly the matchers configured for this host; an
// Icinga 2 downtime carries author "signet/<caller>" and a comment starting
// "signet:". end removes only what carries those marks, whoever of the
// operators started it; start replaces (Alertmanager: updates) an existing
// signet maintenance for this host rather than stacking another.
package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/signetbus/signet/internal/grammar"
	"github.com/signetbus/signet/plugins"
)

func init() { plugins.Register(plugins.Info{Name: Name, New: New}) }

// Name is the agent name operators use.
const Name = "maintenance"

// Marks that identify what signet created in a backend.
const (
	// CommentPrefix starts the comment of every silence and downtime
	// signet creates.
	CommentPrefix = "signet:"
	// AuthorPrefix starts the author (Alertmanager createdBy, Icinga
	// author) of every silence and downtime signet creates; the caller's
	// name follows.
	AuthorPrefix = "signet/"
)

// Defaults for Config.
const (
	DefaultDuration    = 30 * time.Minute
	DefaultMaxDuration = 4 * time.Hour
	// MinDuration is the shortest maintenance start accepts.
	MinDuration = time.Minute
)

// Config is the plugin's section of the host config.
type Config struct {
	// MaxDuration caps the duration start accepts, as a Go duration such
	// as "4h". Empty means 4h. It cannot exceed 168h: maintenance is
	// meant for a deploy, not for a decommission.
	MaxDuration string `json:"max_duration,omitempty"`

	// DefaultDuration is the duration of a start that names none, such
	// as "30m". Empty means 30m, or MaxDuration when that is shorter.
	DefaultDuration string `json:"default_duration,omitempty"`

	// Backends are the monitoring systems to mute, at least one. Each
	// entry sets exactly one of its keys. Every action runs against all
	// of them, in order.
	Backends []BackendConfig `json:"backends"`
}

// BackendConfig is one entry of Config.Backends: exactly one key is set.
type BackendConfig struct {
	// Alertmanager mutes the host with an Alertmanager silence.
	Alertmanager *AlertmanagerConfig `json:"alertmanager,omitempty"`
	// Icinga2 mutes the host with an Icinga 2 downtime on the host and
	// all its services.
	Icinga2 *IcingaConfig `json:"icinga2,omitempty"`
}

// maxMaxDuration bounds Config.MaxDuration.
const maxMaxDuration = 168 * time.Hour

// maxCommentLen bounds the comment input, in bytes.
const maxCommentLen = 512

// window is one maintenance start, handed to every backend.
type window struct {
	identity  string
	caller    string
	comment   string // already prefixed with CommentPrefix
	requestID string
	from      time.Time
	until     time.Time
}

// state is what one backend reports after an action.
type state struct {
	// active reports whether signet maintenance is in force (or pending)
	// for this host afterwards.
	active bool
	// until is the end of the maintenance; zero when not active.
	until time.Time
	// ids are the backend's ids of the silences or downtimes created,
	// updated, found or removed.
	ids []string
	// changed reports whether the action changed the backend.
	changed bool
	// replaced counts signet silences or downtimes that start updated or
	// replaced instead of creating anew.
	replaced int
}

// backend is one monitoring system.
type backend interface {
	// name is "alertmanager" or "icinga2", used in messages and data.
	name() string
	// start mutes the host until w.until, replacing any signet maintenance
	// already there for it.
	start(ctx context.Context, log *slog.Logger, w window) (state, error)
	// end removes the signet maintenance for the host.
	end(ctx context.Context, log *slog.Logger, identity, caller string) (state, error)
	// status reports the signet maintenance for the host.
	status(ctx context.Context, identity string) (state, error)
}

// Maintenance is the "maintenance" plugin.
type Maintenance struct {
	backends    []backend
	maxDuration time.Duration
	defDuration time.Duration
	// now is time.Now, replaceable in tests.
	now func() time.Time
	// mu serialises actions, so that two starts cannot both find nothing
	// and both create a silence.
	mu sync.Mutex
}

var (
	_ plugins.Plugin    = (*Maintenance)(nil)
	_ plugins.Validator = (*Maintenance)(nil)
)

// New builds the plugin from its config (see Config).
func New(config json.RawMessage) (plugins.Plugin, error) {
	var cfg Config
	if err := plugins.DecodeConfig(Name, config, &cfg); err != nil {
		return nil, err
	}
	m := &Maintenance{maxDuration: DefaultMaxDuration, now: time.Now}
	if cfg.MaxDuration != "" {
		d, err := time.ParseDuration(cfg.MaxDuration)
		if err != nil || d < MinDuration || d > maxMaxDuration {
			return nil, fmt.Errorf("plugin %s: config: max_duration must be a duration from %v to %v, got %q", Name, MinDuration, maxMaxDuration, cfg.MaxDuration)
		}
		m.maxDuration = d
	}
	m.defDuration = min(DefaultDuration, m.maxDuration)
	if cfg.DefaultDuration != "" {
		d, err := time.ParseDuration(cfg.DefaultDuration)
		if err != nil || d < MinDuration || d > m.maxDuration {
			return nil, fmt.Errorf("plugin %s: config: default_duration must be a duration from %v to max_duration %v, got %q", Name, MinDuration, m.maxDuration, cfg.DefaultDuration)
		}
		m.defDuration = d
	}
	if len(cfg.Backends) == 0 {
		return nil, fmt.Errorf("plugin %s: config: backends: want at least one of alertmanager or icinga2, got none", Name)
	}
	for i, bc := range cfg.Backends {
		var (
			b   backend
			err error
		)
		switch {
		case bc.Alertmanager != nil && bc.Icinga2 != nil:
			err = errors.New("set exactly one of alertmanager or icinga2, got both")
		case bc.Alertmanager != nil:
			b, err = newAlertmanager(*bc.Alertmanager)
		case bc.Icinga2 != nil:
			b, err = newIcinga(*bc.Icinga2)
		default:
			err = errors.New("set exactly one of alertmanager or icinga2, got neither")
		}
		if err != nil {
			return nil, fmt.Errorf("plugin %s: config: backends[%d]: %w", Name, i, err)
		}
		m.backends = append(m.backends, b)
	}
	return m, nil
}

// Describe returns the plugin's DDL. start's duration bound comes from the
// config.
func (m *Maintenance) Describe() plugins.DDL {
	out := []plugins.Output{
		{Name: "active", Description: "whether signet maintenance is in force for this host afterwards", Type: plugins.TypeBoolean},
		{Name: "until", Description: "RFC 3339 time the maintenance ends; empty when not active", Type: plugins.TypeString},
		{Name: "ids", Description: "backend ids of the silences or downtimes created, found or removed", Type: "list"},
		{Name: "backend", Description: "the backends acted on, comma separated", Type: plugins.TypeString},
	}
	return plugins.DDL{
		Name:        Name,
		Description: "mute this host's alerts for a bounded time (" + m.backendNames() + ")",
		Actions: []plugins.Action{
			{Name: "start", Description: "mute this host's alerts for a duration; starting again replaces the previous signet maintenance", Timeout: time.Minute,
				Inputs: []plugins.Input{
					{Name: "duration", Description: "how long to mute, such as 45m; capped by the host config", Type: plugins.TypeDuration,
						Default: m.defDuration.String(), Min: plugins.Float(MinDuration.Seconds()), Max: plugins.Float(m.maxDuration.Seconds()), MaxLength: 32},
					{Name: "comment", Description: "why, shown in the monitoring system after \"signet:\"", Type: plugins.TypeString, MaxLength: maxCommentLen},
				},
				Outputs: out},
			{Name: "end", Description: "unmute this host: remove the silences and downtimes signet created for it, and only those", Timeout: time.Minute, Outputs: out},
			{Name: "status", Description: "report signet maintenance in force for this host", Timeout: time.Minute, Outputs: out},
		},
	}
}

// Validate checks start's duration against the configured cap and the
// comment for control characters.
func (m *Maintenance) Validate(action string, params plugins.Params) error {
	switch action {
	case "end", "status":
		return nil
	case "start":
	default:
		return fmt.Errorf("maintenance: unknown action %q", action)
	}
	d := m.defDuration
	if params.Has("duration") {
		var err error
		if d, err = time.ParseDuration(params.String("duration")); err != nil {
			return &plugins.ParamError{Action: action, Param: "duration", Rule: "type", Msg: fmt.Sprintf("want a duration such as 30m, got %q", params.String("duration"))}
		}
	}
	if d < MinDuration || d > m.maxDuration {
		return &plugins.ParamError{Action: action, Param: "duration", Rule: "max",
			Msg: fmt.Sprintf("want a duration from %v to %v (the host's cap), got %v", MinDuration, m.maxDuration, d)}
	}
	c := params.String("comment")
	if len(c) > maxCommentLen {
		return &plugins.ParamError{Action: action, Param: "comment", Rule: "max_length", Msg: fmt.Sprintf("longer than %d bytes", maxCommentLen)}
	}
	if i := strings.IndexFunc(c, isControl); i >= 0 {
		return &plugins.ParamError{Action: action, Param: "comment", Rule: "control", Msg: fmt.Sprintf("control character %q at byte %d", c[i], i)}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// Run performs one action against every backend.
func (m *Maintenance) Run(ctx context.Context, req *plugins.Request) (*plugins.Result, error) {
	// Validate again: Run must be safe even if a caller skipped Validate.
	if err := m.Validate(req.Action, req.Params); err != nil {
		return nil, err
	}
	// A host identity goes into a matcher or a filter.
	if err := grammar.CheckIdentity(req.Identity); err != nil {
		return nil, fmt.Errorf("maintenance: bad host identity: %w", err)
	}
	if req.Caller == "" || strings.IndexFunc(req.Caller, isControl) >= 0 || len(req.Caller) > 256 {
		return nil, fmt.Errorf("maintenance: caller must be a non-empty name without control characters, got %q", req.Caller)
	}
	log := req.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	var w window
	if req.Action == "start" {
		d := m.defDuration
		if req.Params.Has("duration") {
			d = req.Params.Duration("duration")
		}
		now := m.now().UTC()
		comment := req.Params.String("comment")
		if comment == "" {
			comment = "maintenance by " + req.Caller
		}
		if req.RequestID != "" {
			comment += " (request " + req.RequestID + ")"
		}
		w = window{identity: req.Identity, caller: req.Caller, comment: CommentPrefix + " " + comment,
			requestID: req.RequestID, from: now, until: now.Add(d).Truncate(time.Second)}
	}

	var (
		states []state
		errs   []error
	)
	for _, b := range m.backends {
		var (
			st  state
			err error
		)
		switch req.Action {
		case "start":
			st, err = b.start(ctx, log, w)
		case "end":
			st, err = b.end(ctx, log, req.Identity, req.Caller)
		case "status":
			st, err = b.status(ctx, req.Identity)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		states = append(states, st)
	}
	if len(errs) > 0 {
		// Backends that succeeded are not rolled back: a start that half
		// worked still ends by itself, and an end that half worked can
		// be run again.
		return nil, fmt.Errorf("maintenance %s for %s: %w", req.Action, req.Identity, errors.Join(errs...))
	}
	return m.result(log, req, states), nil
}

func (m *Maintenance) result(log *slog.Logger, req *plugins.Request, states []state) *plugins.Result {
	res := &plugins.Result{}
	active := false
	var until time.Time
	ids := []string{}
	replaced := 0
	for _, st := range states {
		res.Changed = res.Changed || st.changed
		active = active || st.active
		if st.active && st.until.After(until) {
			until = st.until
		}
		ids = append(ids, st.ids...)
		replaced += st.replaced
	}
	untilStr := ""
	if active {
		untilStr = until.UTC().Format(time.RFC3339)
	}
	res.Data = map[string]any{"active": active, "until": untilStr, "ids": ids, "backend": m.backendNames()}
	switch req.Action {
	case "start":
		verb := "started"
		if replaced > 0 {
			verb = "replaced"
		}
		res.Summary = fmt.Sprintf("maintenance for %s %s until %s (%s)", req.Identity, verb, untilStr, m.backendNames())
		log.Info("maintenance started", "identity", req.Identity, "until", untilStr, "ids", ids, "replaced", replaced)
	case "end":
		if res.Changed {
			res.Summary = fmt.Sprintf("maintenance for %s ended: removed %d (%s)", req.Identity, len(ids), m.backendNames())
			log.Info("maintenance ended", "identity", req.Identity, "ids", ids)
		} else {
			res.Summary = fmt.Sprintf("no signet maintenance for %s to end (%s)", req.Identity, m.backendNames())
		}
	case "status":
		res.Summary = fmt.Sprintf("no signet maintenance for %s (%s)", req.Identity, m.backendNames())
		if active {
			res.Summary = fmt.Sprintf("%s is in maintenance until %s (%s)", req.Identity, untilStr, m.backendNames())
		}
	}
	return res
}

func (m *Maintenance) backendNames() string {
	names := make([]string, len(m.backends))
	for i, b := range m.backends {
		names[i] = b.name()
	}
	return strings.Join(names, ",")
}
