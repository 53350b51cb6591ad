package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/signetbus/signet/internal/grammar"
)

// Plugin is one whitelisted agent on a host, such as "package" or "haproxy".
type Plugin interface {
	// Describe returns the plugin's declaration: its actions and their
	// inputs. It must return the same declaration every time: signetd reads
	// it once, at start-up.
	Describe() DDL
	// Run performs one action. Params have already been validated against the
	// DDL (and by Validate, when the plugin implements Validator). The context
	// carries the action's deadline.
	Run(ctx context.Context, req *Request) (*Result, error)
}

// Validator is implemented by plugins that check parameters beyond what the
// DDL can express. It runs after DDL validation and before Run, and must not
// have side effects.
type Validator interface {
	Validate(action string, params Params) error
}

// Closer is implemented by plugins that hold resources (connections, files)
// that must be released when signetd stops or reloads.
type Closer interface {
	Close() error
}

// Request is what a plugin receives for one action.
type Request struct {
	// Action is the name of the action, one of those in the DDL.
	Action string
	// Params are the validated parameters, coerced to the DDL types:
	// string, int64, float64 or bool.
	Params Params
	// Identity is this host's identity, the default target of actions that
	// act on "this host" (the HAProxy server name, for example).
	Identity string
	// Caller is the authenticated name of the operator who signed the request.
	Caller string
	// RequestID is the id of the signed request, for audit trails in backends.
	RequestID string
	// Facts are this host's facts.
	Facts map[string]string
	// Log is a logger already carrying request_id, agent, action and sender.
	Log *slog.Logger
}

// Result is the outcome of one action.
type Result struct {
	// Changed reports whether the action changed the host.
	Changed bool `json:"changed"`
	// Summary is one human-readable line, such as "nginx 1.4.2 installed".
	Summary string `json:"summary,omitempty"`
	// Data is structured output, shaped as the DDL's outputs describe.
	Data map[string]any `json:"data,omitempty"`
}

// Info registers a plugin.
type Info struct {
	// Name is the agent name operators use: "package", "service", ...
	Name string
	// New builds the plugin from its section of the host config. config is
	// JSON (converted from the host's YAML); decode it with DecodeConfig so
	// that an unknown key is an error. config is nil when the host enables
	// the plugin without settings.
	New func(config json.RawMessage) (Plugin, error)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Info{}
)

// Register adds a plugin to the whitelist. It panics on a duplicate name or
// one outside the agent name grammar (internal/grammar.CheckName), which
// signetd would refuse: both are bugs that must be found at start-up.
func Register(info Info) {
	regMu.Lock()
	defer regMu.Unlock()
	if info.Name == "" || info.New == nil {
		panic("plugins: Register needs a name and a constructor")
	}
	if err := grammar.CheckName("plugin", info.Name); err != nil {
		panic("plugins: Register: " + err.Error())
	}
	if _, dup := registry[info.Name]; dup {
		panic(fmt.Sprintf("plugins: plugin %q registered twice", info.Name))
	}
	registry[info.Name] = info
}

// Lookup returns the registered plugin with that name.
func Lookup(name string) (Info, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	info, ok := registry[name]
	return info, ok
}

// Names returns the registered plugin names, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DecodeConfig decodes a plugin's config strictly: an unknown key or a
// trailing value is an error that names the plugin. A nil config leaves v
// untouched, so callers set defaults before decoding.
func DecodeConfig(name string, config json.RawMessage, v any) error {
	if len(bytes.TrimSpace(config)) == 0 || string(bytes.TrimSpace(config)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("plugin %s: config: %w", name, err)
	}
	if dec.More() {
		return fmt.Errorf("plugin %s: config: trailing data", name)
	}
	return nil
}

// UnknownActionError is returned by Prepare for an action the plugin does
// not declare.
type UnknownActionError struct {
	Plugin  string
	Action  string
	Actions []string
}

func (e *UnknownActionError) Error() string {
	return fmt.Sprintf("agent %s has no action %q (actions: %s)", e.Plugin, e.Action, strings.Join(e.Actions, ", "))
}

// Prepare checks raw parameters exactly as signetd does before a plugin
// runs: the action must be declared, the parameters must pass the DDL
// (which coerces them to their declared types and fills in defaults), then
// the plugin's own Validator, if it has one. It returns the parameters to
// put in Request.Params, an *UnknownActionError, a *ParamError, or the
// Validator's error.
func Prepare(p Plugin, action string, raw map[string]any) (Params, error) {
	ddl := p.Describe()
	a, ok := ddl.Action(action)
	if !ok {
		return nil, &UnknownActionError{Plugin: ddl.Name, Action: action, Actions: ddl.ActionNames()}
	}
	return PrepareAction(p, a, raw)
}

// PrepareAction is Prepare for an action already looked up in the
// plugin's declaration (signetd keeps the declarations it read at start-up).
func PrepareAction(p Plugin, a Action, raw map[string]any) (Params, error) {
	params, err := a.Validate(raw)
	if err != nil {
		return nil, err
	}
	if v, ok := p.(Validator); ok {
		if err := v.Validate(a.Name, params); err != nil {
			return nil, err
		}
	}
	return params, nil
}
